"""systemd/afx.service: `systemd-analyze verify` says nothing, and `security --offline` stays under a threshold.

Skipped where systemd-analyze is absent. `verify` checks that ExecStart's binary exists, and
/opt/afx/.venv/bin/afx exists only on an installed machine, so the unit is checked from a copy whose
ExecStart is /bin/true; everything else is the shipped file.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[1] / "systemd" / "afx.service"
ANALYZE = shutil.which("systemd-analyze")
# exposure ×10 that `systemd-analyze security` may report at most; the unit scores 1.8 ("OK") with systemd 252.
# GPU access (no PrivateDevices), network for weight downloads and W+X memory for JIT compilers cost the rest.
THRESHOLD = 20

pytestmark = pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed")


@pytest.fixture
def unit(tmp_path: Path) -> Path:
    text = UNIT.read_text()
    assert re.search(r"^ExecStart=/opt/afx/\.venv/bin/afx --config /etc/afx/afx\.toml run$", text, re.M)
    copy = tmp_path / "afx.service"
    copy.write_text(re.sub(r"^ExecStart=.*$", "ExecStart=/bin/true", text, flags=re.M))
    return copy


def _analyze(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(ANALYZE), *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_the_unit_verifies_without_any_warning(unit: Path) -> None:
    result = _analyze("verify", unit.name, cwd=unit.parent)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "" and result.stderr.strip() == "", result.stdout + result.stderr


def test_the_unit_is_hardened(unit: Path) -> None:
    result = _analyze("security", "--offline=yes", f"--threshold={THRESHOLD}", unit.name, cwd=unit.parent)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    exposure = re.search(r"Overall exposure level for afx\.service: ([0-9.]+)", result.stdout)
    assert exposure and float(exposure.group(1)) * 10 <= THRESHOLD


def test_the_unit_keeps_what_afx_needs() -> None:
    """The settings the issue asks for, and none that would break PyTorch or the GPUs."""
    settings = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            settings.setdefault(key, []).append(value)
    for key, value in {"Type": "notify", "NotifyAccess": "main", "User": "afx", "ProtectSystem": "strict",
                       "NoNewPrivileges": "yes", "PrivateTmp": "yes", "KillMode": "mixed",
                       "Restart": "on-failure", "DevicePolicy": "closed"}.items():
        assert settings.get(key) == [value], key
    assert settings["WatchdogSec"] and settings["ReadWritePaths"] == ["/srv/afx"]
    assert any("nvidia" in v for v in settings["DeviceAllow"])
    assert int(settings["TimeoutStopSec"][0]) > 60  # afx's default stop_timeout_s, plus room to exit
    for forbidden in ("MemoryDenyWriteExecute", "PrivateDevices", "ProcSubset"):  # JIT, GPUs, /proc/driver
        assert forbidden not in settings, forbidden


def test_the_unit_lets_afx_bind_the_dashboard_port_and_nothing_else() -> None:
    from daemon.config import WebSettings
    from daemon.web.security import parse_listen

    lines = UNIT.read_text().splitlines()
    _, port = parse_listen(WebSettings().listen)
    assert f"SocketBindAllow=tcp:{port}" in lines and "SocketBindDeny=any" in lines
    families = next(line for line in lines if line.startswith("RestrictAddressFamilies="))
    assert "AF_INET " in families and "AF_INET6" in families  # the dashboard listens on TCP
