"""Reports: the JSON written beside every video (or in place of one, for a failure), atomically."""

from __future__ import annotations

import json
import subprocess
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any

from daemon import __version__
from daemon.atomic import atomic_write_text, umask_mode  # noqa: F401 — umask_mode: re-exported
from daemon.errors import AfxError

REPORT_SCHEMA = "afx.report/1"
FAILURE_SCHEMA = "afx.failure/1"


def write_json_atomic(path: Path, data: Any) -> Path:
    """Write JSON through `daemon.atomic`: readers never see half a file."""
    return atomic_write_text(Path(path), json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@lru_cache(maxsize=1)
def versions() -> dict[str, str]:
    """Versions of afx and of the libraries and tools that shape its output."""
    import librosa
    import numpy
    import open_clip
    import torch

    found = {"afx": __version__, "torch": torch.__version__, "open_clip": open_clip.__version__,
             "librosa": librosa.__version__, "numpy": numpy.__version__}
    try:
        out = subprocess.run(["ffmpeg", "-version"], capture_output=True, text=True, timeout=10).stdout
        found["ffmpeg"] = out.split("\n", 1)[0].removeprefix("ffmpeg version ").split(" ")[0]
    except (OSError, subprocess.SubprocessError):
        found["ffmpeg"] = "unavailable"
    return found


def failure_report(error: BaseException, *, stage: str, track: str | None = None, style: str | None = None,
                   extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """A failure report: what failed, on which file, why, and what to do."""
    if isinstance(error, AfxError):
        detail = error.to_dict()
        detail["summary"] = error.user_line()
    else:
        detail = {"type": type(error).__name__, "message": str(error), "summary": f"internal error: {error}",
                  "transient": True, "hint": "this is a bug in afx; the log has the traceback"}
    return {"schema": FAILURE_SCHEMA, "ok": False, "stage": stage, "track": track, "style": style,
            "error": detail, "time": now_iso(), "versions": versions(), **(extra or {})}
