"""Reports: the JSON written beside every video (or in place of one, for a failure), atomically."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any

from daemon import __version__
from daemon.errors import AfxError

REPORT_SCHEMA = "afx.report/1"
FAILURE_SCHEMA = "afx.failure/1"


def umask_mode(*, directory: bool = False) -> int:
    """The mode a plain open()/mkdir() would give: mkstemp/mkdtemp make 0600/0700, too strict for the
    reports, videos and styles people collect. The umask is read from /proc (os.umask would change it for
    every thread for a moment)."""
    mask = 0o022
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                mask = int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return (0o777 if directory else 0o666) & ~mask


def write_json_atomic(path: Path, data: Any) -> Path:
    """Write JSON to a temporary sibling and rename it over `path`: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, umask_mode())
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2, ensure_ascii=False)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


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
