"""What the dashboard shows and does, as plain data: the pages and the JSON API both come from here.

Everything is read from the ledger and the folders (never the service's memory), so `afx web` shows the
same without a running service. The actions are the ones the command line has: requeue a failed job
(`afx retry`), choose a track's styles (its sidecar `<track stem>.toml`, so the folder stays the source of
truth), and rate a style (daemon.ratings).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import quote

import tomli_w

from daemon.atomic import atomic_write_text
from daemon.board import write_mood_board
from daemon.config import ServiceConfig
from daemon.errors import AfxError, LedgerError, SpecError, StyleError
from daemon.library import Library
from daemon.naming import report_path
from daemon.ratings import read_rating, write_rating
from daemon.service.ledger import QUEUE_ORDER, Job, Ledger
from daemon.service.planner import PREVIEW_TAG, read_sidecar
from daemon.service.status import ledger_path, status_snapshot

QUEUE_SHOWN = 100  # queued jobs listed on the overview (the counts cover all of them)
FAILURES_SHOWN = 20


def open_ledger(config: ServiceConfig) -> Ledger | None:
    """The ledger for reading, or None before the service ever ran."""
    try:
        return Ledger(ledger_path(config), create=False)
    except LedgerError:
        return None


def file_url(config: ServiceConfig, path: str | Path | None) -> str | None:
    """/files/renders/… or /files/library/… for a file inside those folders; None for anything else."""
    if not path:
        return None
    for root in ("renders", "library"):
        try:
            rel = Path(path).resolve().relative_to(config.path(root))
        except (ValueError, OSError):
            continue
        return f"/files/{root}/{quote(rel.as_posix(), safe='/')}"
    return None


def read_json(path: str | Path | None) -> dict[str, Any] | None:
    try:
        data = json.loads(Path(str(path)).read_text(encoding="utf-8"))
    except (OSError, ValueError, TypeError):
        return None
    return data if isinstance(data, dict) else None


# ── overview ─────────────────────────────────────────────────────────────────────────────────────────────

def overview(config: ServiceConfig) -> dict[str, Any]:
    """Service state, uptime, devices, running jobs with progress, counts, the queue in order, failures."""
    ledger = open_ledger(config)
    if ledger is None:
        return {"service": {"state": "never started"}, "totals": {}, "counts": {}, "running": [], "queue": [],
                "failures": [], "problems": [], "waiting": {}}
    try:
        queue = [_job_view(j) for j in ledger.jobs("state = 'queued'", order=f"{QUEUE_ORDER} LIMIT {QUEUE_SHOWN}")]
        failed = ledger.jobs("state IN ('failed', 'bad_input')", order=f"updated DESC LIMIT {FAILURES_SHOWN}")
    finally:
        ledger.close()
    snap = status_snapshot(config)
    failures = []
    for job in failed:
        error = job.error or {}
        failures.append({**_job_view(job), "error": error.get("summary"), "hint": error.get("hint"),
                         "time": error.get("time"), "report": read_json(error.get("report")),
                         "report_url": file_url(config, error.get("report"))})
    return {"service": snap["service"], "totals": snap["totals"], "counts": snap["counts"],
            "running": snap["running"], "waiting": snap["waiting"], "queue": queue, "failures": failures,
            "problems": snap["problems"]}


def _job_view(job: Job) -> dict[str, Any]:
    return {"key": job.key, "kind": job.kind, "preview": job.preview, "label": job.label(), "state": job.state,
            "track": job.track_path,
            "style": job.style_name, "attempts": job.attempts, "settings": job.settings,
            "not_before": job.not_before or None}


# ── tracks ───────────────────────────────────────────────────────────────────────────────────────────────

def tracks(config: ServiceConfig) -> list[dict[str, Any]]:
    """Every track in the inbox the ledger knows, with its published videos (and their reports), the jobs
    still to do or failed, and the styles its sidecar chooses."""
    ledger = open_ledger(config)
    if ledger is None:
        return []
    inbox = config.path("inbox")
    try:
        rows = ledger.query("SELECT path, sha256 FROM tracks ORDER BY path")
        outputs = ledger.query("SELECT path, job_key, track_path, style_name FROM outputs ORDER BY style_name")
        jobs = ledger.jobs("kind = 'render' AND state != 'superseded'")
    finally:
        ledger.close()
    found = []
    for row in rows:
        path = Path(row["path"])
        if not path.is_file() or not path.is_relative_to(inbox):
            continue
        rel = path.relative_to(inbox).as_posix()
        renders = sorted((_render_view(config, o) for o in outputs if o["track_path"] == row["path"]),
                         key=lambda r: (r["style"], r["preview"]))  # each full video before its preview
        pending = [{**_job_view(j), "error": (j.error or {}).get("summary")} for j in jobs
                   if j.track_sha == row["sha256"] and j.state != "done"]
        try:
            chosen: list[str] | None = read_sidecar(path.with_suffix(".toml")) \
                if path.with_suffix(".toml").is_file() else None
        except SpecError:
            chosen = None
        found.append({"path": str(path), "rel": rel, "name": path.name, "sha256": row["sha256"],
                      "sidecar": chosen, "renders": renders, "jobs": pending})
    return found


def _render_view(config: ServiceConfig, output: Any) -> dict[str, Any]:
    video = Path(output["path"])
    report = read_json(report_path(video)) or {}
    sheet = video.with_name(f"{video.stem}.sheet.png")
    return {"style": output["style_name"], "video": str(video), "video_url": file_url(config, video),
            "preview": video.stem.endswith(PREVIEW_TAG),
            "report_url": file_url(config, report_path(video)) if report else None,
            "sheet_url": file_url(config, sheet) if sheet.is_file() else None,
            "metrics": report.get("metrics") or {}, "timing": report.get("timing") or {},
            "device": report.get("device"), "size": _size(report.get("video") or {}),
            "highlight": report.get("highlight"), "palette_match": report.get("palette_match")}


def _size(video: dict[str, Any]) -> str | None:
    if not video.get("width"):
        return None
    return f"{video['width']}x{video['height']} @ {video.get('fps')} fps, {video.get('duration_s')} s"


def style_names(config: ServiceConfig) -> list[str]:
    """The styles a sidecar may name: the specs' current styles, as the ledger last saw them."""
    ledger = open_ledger(config)
    if ledger is None:
        return []
    try:
        return sorted({r["name"] for r in ledger.current_styles()})
    finally:
        ledger.close()


# ── styles and experiments ───────────────────────────────────────────────────────────────────────────────

def styles(config: ServiceConfig) -> list[dict[str, Any]]:
    """Every style version in the library (newest first within a name) with its pictures, numbers and rating."""
    found = []
    for entry in Library(config.path("library")).entries():
        meta, training, guidance = entry.meta, entry.meta.get("training") or {}, entry.meta.get("guidance") or {}
        spec = meta.get("spec") or {}
        rating = read_rating(entry.folder)
        found.append({
            "name": entry.name, "id": entry.style_id, "created": entry.created, "folder": str(entry.folder),
            "preview_url": file_url(config, entry.folder / "preview.png") if (entry.folder / "preview.png").is_file()
            else None,
            "curve_url": file_url(config, entry.folder / "curve.png") if (entry.folder / "curve.png").is_file()
            else None,
            "prompts": [p.get("text") for p in spec.get("prompts", []) if isinstance(p, dict)],
            "palette": meta.get("palette") or spec.get("palette") or training.get("palette"),
            "similarity": training.get("mean_similarity"), "seconds": training.get("seconds"),
            "metrics": training.get("metrics") or {}, "clip_model": guidance.get("clip_model"),
            "trained_guidance": bool(guidance.get("trained_guidance")),
            "rating": asdict(rating) if rating else None})
    return found


def experiments(config: ServiceConfig) -> list[dict[str, Any]]:
    """Every sweep's comparison page in the library (`library/_sweeps/<sweep>/comparison.html`)."""
    found = []
    for page in sorted(config.path("library").glob("_sweeps/*/comparison.html")):
        data = read_json(page.with_name("comparison.json")) or {}
        sheet = page.with_name("contact_sheet.png")
        found.append({"name": page.parent.name, "title": data.get("title") or page.parent.name,
                      "variants": len(data.get("variants") or []), "url": file_url(config, page),
                      "sheet_url": file_url(config, sheet) if sheet.is_file() else None,
                      "updated": time.strftime("%Y-%m-%d %H:%M", time.localtime(page.stat().st_mtime))})
    return found


# ── actions ──────────────────────────────────────────────────────────────────────────────────────────────

def retry(config: ServiceConfig, key: str) -> dict[str, Any]:
    """Requeue one failed or bad-input job (as `afx retry` does); the service picks it up."""
    ledger = open_ledger(config)
    if ledger is None:
        raise LedgerError("no ledger yet", path=ledger_path(config), hint="start the service with `afx run`")
    try:
        job = ledger.get(key)
        if job is None:
            raise AfxError(f"no job {key!r}", hint="reload the page: the job list changed")
        if job.state not in ("failed", "bad_input"):
            raise AfxError(f"{job.label()} is {job.state}, not failed", hint="only failed jobs are retried")
        ledger.retry(keys=[key])
        return {"requeued": job.label(), "key": key, "was": job.state}
    finally:
        ledger.close()


def assign(config: ServiceConfig, track: str, chosen: list[str]) -> dict[str, Any]:
    """Write the track's sidecar `<stem>.toml` with `styles = [...]` (an empty choice removes it: the track
    gets the default styles again)."""
    inbox = config.path("inbox")
    path = Path(track)
    known = {t["path"] for t in tracks(config)}
    if str(path) not in known or not path.resolve().is_relative_to(inbox):
        raise AfxError(f"{track!r} is not a track in the inbox", hint="choose a track listed on the Tracks page")
    names = style_names(config)
    unknown = [s for s in chosen if s not in names]
    if unknown:
        raise SpecError(f"no style named {', '.join(map(repr, unknown))} in specs/",
                        hint=f"known styles: {', '.join(names) or 'none'}")
    sidecar = path.with_suffix(".toml")
    if not chosen:
        sidecar.unlink(missing_ok=True)
        return {"track": str(path), "sidecar": str(sidecar), "styles": None}
    text = "# written by the afx dashboard: the styles this track is rendered with\n" + tomli_w.dumps(
        {"styles": list(dict.fromkeys(chosen))})
    atomic_write_text(sidecar, text)
    return {"track": str(path), "sidecar": str(sidecar), "styles": list(dict.fromkeys(chosen))}


def rate(config: ServiceConfig, name: str, style_id: str, stars: int, note: str) -> dict[str, Any]:
    """Store a rating beside the style version in the library."""
    library = Library(config.path("library"))
    entry = next((e for e in library.entries() if e.name == name and e.style_id == style_id), None)
    if entry is None:
        raise StyleError(f"no style {name!r} with id {style_id!r} in the library", path=library.root,
                         hint="reload the page: the library changed")
    rating = write_rating(entry.folder, stars=stars, note=note)
    write_mood_board(library)  # library/index.html shows it at once
    return {"name": name, "id": style_id, "rating": asdict(rating)}


def rel_inbox(config: ServiceConfig, path: str | None) -> str:
    """A track's path as the inbox shows it."""
    if not path:
        return ""
    try:
        return PurePosixPath(Path(path).relative_to(config.path("inbox")).as_posix()).as_posix()
    except ValueError:
        return Path(path).name
