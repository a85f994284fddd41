"""Reading specs and planning jobs load no torch (issue 12): the service's planner, `afx spec check` and
`afx status` stay light, and the CPPN's settings live in the torch-free daemon.cppn_config."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("module, heavy", [
    ("daemon.spec", ("torch", "open_clip", "tensorflow")),
    ("daemon.service.planner", ("torch", "open_clip", "tensorflow")),
    ("daemon.cli", ("torch", "open_clip", "tensorflow")),  # `afx status`, `afx spec check` start fast
    ("daemon.service.status", ("torch", "open_clip", "tensorflow", "librosa")),
])
def test_importing_loads_no_torch(module: str, heavy: tuple[str, ...]) -> None:
    code = (f"import sys, {module}\n"
            f"heavy = sorted(m for m in sys.modules if m.split('.')[0] in {heavy!r})\n"
            "print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert out.stdout.strip() == "", f"importing {module} loads {out.stdout.strip()}"


def test_a_fresh_process_finds_the_embedding_sets() -> None:
    """features.py names its providers instead of importing them: the first lookup loads them."""
    code = "from daemon.audio.features import feature_set; print(feature_set('vggish').embedding)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert out.stdout.strip() == "True"


def test_the_cppn_settings_are_the_same_classes_from_either_module() -> None:
    from daemon import cppn, cppn_config

    assert cppn.CPPNConfig is cppn_config.CPPNConfig and cppn.EncoderConfig is cppn_config.EncoderConfig
    assert tuple(cppn.ACTIVATIONS) == cppn_config.ACTIVATION_NAMES


# docs/ARCHITECTURE.md, "Types, checks and imports": a function imports a module itself only for a heavy or
# optional dependency that not every caller of its module needs
HEAVY = ("torch", "open_clip", "huggingface_hub", "tensorflow", "tensorflow_hub", "openl3", "packaging", "librosa",
         "tqdm", "daemon.pipeline", "daemon.render", "daemon.style", "daemon.train", "daemon.guidance",
         "daemon.artifacts", "daemon.bench", "daemon.evaluate", "daemon.plots", "daemon.export",
         "daemon.audio.features", "daemon.audio.embeddings", "daemon.service.service",
         "matplotlib", "daemon.perceptual",  # torchvision's VGG16
         "uvicorn", "starlette", "daemon.web",  # the dashboard: only a service or `afx web` serves it
         "ray", "daemon.service.ray_executor")  # optional: only for [executor] kind = "ray"
REPORT_VERSIONS = ("numpy",)  # report.versions() reads every library's version in one place
NOT_YET = {("config.py", "load_config"),  # daemon.spec imports daemon.config: a cycle at the top
           ("service/ray_executor.py", "_probe")}  # sent to Ray nodes by value, where afx may not be installed


def test_function_local_imports_are_for_heavy_or_optional_dependencies() -> None:
    import ast

    found = []
    for path in sorted((ROOT / "daemon").rglob("*.py")):
        rel = path.relative_to(ROOT / "daemon").as_posix()
        for fn in ast.walk(ast.parse(path.read_text())):
            if not isinstance(fn, ast.FunctionDef) or (rel, fn.name) in NOT_YET:
                continue
            for node in ast.walk(fn):
                if isinstance(node, ast.ImportFrom):  # `from daemon import pipeline` imports daemon.pipeline
                    names = ([f"daemon.{a.name}" for a in node.names] if node.module == "daemon"
                             else [node.module or ""])
                else:
                    names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
                for name in names:
                    heavy = any(name == h or name.startswith(h + ".") for h in HEAVY)
                    if not heavy and not (rel == "report.py" and name in REPORT_VERSIONS):
                        found.append(f"{rel}:{node.lineno} {fn.name} imports {name}")
    assert not found, "\n".join(found)
