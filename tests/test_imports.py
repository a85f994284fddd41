"""Reading specs and planning jobs load no torch (issue 12): the service's planner, `afx spec check` and
`afx status` stay light, and the CPPN's settings live in the torch-free daemon.cppn_config."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("module", ["daemon.spec", "daemon.service.planner", "daemon.service.status"])
def test_importing_loads_no_torch(module: str) -> None:
    code = (f"import sys, {module}\n"
            "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'open_clip', 'tensorflow'))\n"
            "print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert out.stdout.strip() == "", f"importing {module} loads {out.stdout.strip()}"


def test_the_cppn_settings_are_the_same_classes_from_either_module() -> None:
    from daemon import cppn, cppn_config

    assert cppn.CPPNConfig is cppn_config.CPPNConfig and cppn.EncoderConfig is cppn_config.EncoderConfig
    assert tuple(cppn.ACTIVATIONS) == cppn_config.ACTIVATION_NAMES
