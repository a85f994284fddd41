"""What `afx status` and `afx retry` do: read (and requeue in) the ledger, never the service's memory.

They work while the service runs (SQLite WAL: readers do not block the writer) and import nothing heavy,
so `afx status` answers at once.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from daemon.atomic import HOST
from daemon.audio.decode import file_sha256
from daemon.config import ServiceConfig
from daemon.service.ledger import LEDGER_FILE, Job, Ledger

HEARTBEAT_S = 2.0  # how often the service writes its heartbeat to the ledger


def ledger_path(config: ServiceConfig) -> Path:
    return config.path("state") / LEDGER_FILE


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def status_snapshot(config: ServiceConfig, *, errors: int = 5) -> dict[str, Any]:
    """Queue, running jobs with progress and ETA, done/failed counts, the last errors, file problems."""
    ledger = Ledger(ledger_path(config), create=False)
    try:
        counts = ledger.counts()
        now = time.time()
        running = [_running_view(j, now) for j in ledger.jobs("state = 'running'", order="started")]
        failed = ledger.jobs("error_json IS NOT NULL", order="updated DESC LIMIT " + str(int(errors)))
        waiting = _waiting(ledger)
        service = ledger.get_meta("service") or {}
        problems = [{"source": r["source"], "kind": r["kind"], "report": r["report"],
                     "error": json.loads(r["error_json"]).get("summary")} for r in ledger.problems()]
        held_out = ledger.get_meta("held_out") or []
    finally:
        ledger.close()
    totals = {s: sum(counts[k][s] for k in counts) for s in next(iter(counts.values()))}
    return {
        "ledger": str(ledger_path(config)),
        "service": _service_view(service, now),
        "totals": totals,
        "counts": counts,
        "waiting": waiting,
        "running": running,
        "errors": [{"job": j.label(), "kind": j.kind, "state": j.state, "key": j.key, "attempts": j.attempts,
                    "track": j.track_path, "style": j.style_name, "error": (j.error or {}).get("summary"),
                    "report": (j.error or {}).get("report"), "time": (j.error or {}).get("time")} for j in failed],
        "problems": problems,
        "held_out": held_out,  # styles kept out of the default set until their CLIP weights are present
    }


def _running_view(job: Job, now: float) -> dict[str, Any]:
    elapsed = now - (job.started or now)
    eta = None
    if job.progress_done and job.progress_total and job.progress_done < job.progress_total:
        eta = elapsed / job.progress_done * (job.progress_total - job.progress_done)
    elif job.progress_done and job.progress_total:
        eta = 0.0
    return {"job": job.label(), "kind": job.kind, "key": job.key, "track": job.track_path, "style": job.style_name,
            "device": job.worker, "attempt": job.attempts, "done": job.progress_done, "total": job.progress_total,
            "percent": round(100 * job.progress_done / job.progress_total, 1)
            if job.progress_done is not None and job.progress_total else None,
            "elapsed_s": round(elapsed, 1), "eta_s": round(eta, 1) if eta is not None else None}


def _waiting(ledger: Ledger) -> dict[str, int]:
    """Why queued jobs are not running: back-off, or their style's training failed."""
    now = time.time()
    backoff = len(ledger.jobs("state = 'queued' AND not_before > ?", (now,)))
    blocked = len(ledger.jobs("state = 'queued' AND kind = 'render' AND style_id IN (SELECT style_id FROM jobs"
                              " WHERE kind = 'train' AND state IN ('failed', 'bad_input'))"))
    return {"backoff": backoff, "blocked_by_training": blocked}


def _service_view(meta: dict[str, Any], now: float) -> dict[str, Any]:
    if not meta:
        return {"state": "never started"}
    alive = meta.get("state") in ("starting", "running") and now - float(meta.get("heartbeat", 0)) < 5 * HEARTBEAT_S
    if alive and meta.get("host") == HOST:
        alive = pid_alive(int(meta.get("pid", 0)))
    return {**meta, "state": meta.get("state") if alive else "not running",
            "heartbeat_age_s": round(now - float(meta.get("heartbeat", 0)), 1),
            "uptime_s": round(now - float(meta.get("started", now)), 1) if alive else None}


def retry_jobs(config: ServiceConfig, *, target: str | None, include_done: bool = False) -> list[Job]:
    """Requeue failed and bad-input jobs: all (target None), or those of a track (path or name) or a style."""
    ledger = Ledger(ledger_path(config), create=False)
    try:
        states = "('failed', 'bad_input', 'done')" if include_done else "('failed', 'bad_input')"
        jobs = ledger.jobs(f"state IN {states}")
        if target is not None:
            jobs = [j for j in jobs if _matches(j, target)]
        ledger.retry(keys=[j.key for j in jobs], include_done=include_done)
        return jobs
    finally:
        ledger.close()


def _matches(job: Job, target: str) -> bool:
    """A style name, or a track given as a path (by content), a file name or a stem."""
    if job.style_name == target:
        return True
    if not job.track_path:
        return False
    path = Path(target)
    if path.is_file():
        try:
            return file_sha256(path) == job.track_sha
        except OSError:
            return False
    track = Path(job.track_path)
    return target in (track.name, track.stem, str(track))

