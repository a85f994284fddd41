"""Upgrading a state folder made by an earlier afx: style ids of form 1, videos at the old names.

Run once by the service at start when the ledger was migrated from schema 1 (`meta.identity_upgrade`);
the library's part (`Library.upgrade_ids`) runs at every start and in `afx train`, as it is cheap and
idempotent. Nothing is trained or rendered again: old style ids are mapped to new ones (the weights are
the same), and each finished video is moved into the render store, from where the first scan publishes
it under its new name.
"""

from __future__ import annotations

import json
from pathlib import Path

from daemon.atomic import atomic_link
from daemon.library import Library
from daemon.logs import get_logger
from daemon.naming import STORE, report_path, store_video
from daemon.service.ledger import Ledger
from daemon.spec import upgraded_id

log = get_logger("afx.upgrade")

UPGRADE_KEY = "identity_upgrade"


def upgrade_state(ledger: Ledger, library: Library, *, renders: Path) -> None:
    mapping = library.upgrade_ids()
    if mapping:
        log.info("upgrade.library", styles=len(mapping))
    if not ledger.get_meta(UPGRADE_KEY):
        return
    for row in ledger.query("SELECT style_id, spec_json FROM styles"):
        new = upgraded_id(json.loads(row["spec_json"]))
        if new and new != row["style_id"]:
            mapping.setdefault(row["style_id"], new)
    moved = ledger.rekey_styles(mapping)
    adopted = adopt_videos(ledger, renders)
    with ledger.transaction() as conn:
        conn.execute("DELETE FROM meta WHERE key = ?", (UPGRADE_KEY,))
    log.info("upgrade.done", styles=len(mapping), jobs=moved, videos=adopted)


def adopt_videos(ledger: Ledger, renders: Path) -> int:
    """Move each finished video (and its report) from its old name into the store under its job's key."""
    adopted = 0
    for job in ledger.jobs("kind = 'render' AND state = 'done'"):
        old = Path(str(job.output))
        stored = store_video(renders, job.key)
        if STORE in old.parts or not old.is_file():
            continue
        if not stored.exists():
            atomic_link(old, stored)
            if report_path(old).is_file():
                atomic_link(report_path(old), report_path(stored))
        ledger.set_output_path(job.key, str(stored))
        report_path(old).unlink(missing_ok=True)
        old.unlink()
        try:
            old.parent.rmdir()
        except OSError:
            pass  # other files are still there
        adopted += 1
    return adopted
