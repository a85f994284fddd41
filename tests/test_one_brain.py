"""The ledger is single-host (docs/SCALE.md): one service, on one machine, writes it."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from daemon.atomic import HOST
from daemon.config import Folders, ServiceConfig
from daemon.errors import LedgerError
from daemon.service.ledger import Ledger, NewJob
from daemon.service.service import Service, file_system_type, one_brain


def other_host_service(ledger: Ledger, *, heartbeat: float) -> None:
    ledger.set_meta("service", {"pid": 4242, "host": "render-box-2", "state": "running", "heartbeat": heartbeat})


def test_a_ledger_another_hosts_live_service_holds_is_refused(tmp_path: Path) -> None:
    config = ServiceConfig(folders=Folders(), base=tmp_path, device="cpu")
    (tmp_path / "state").mkdir()
    ledger = Ledger(tmp_path / "state" / "ledger.sqlite3")
    other_host_service(ledger, heartbeat=time.time())
    ledger.close()
    service = Service(config)
    with pytest.raises(LedgerError, match="in use by the afx service on host render-box-2") as caught:
        service.start()
    assert "docs/SCALE.md" in caught.value.user_line()
    service.ledger.close()


def test_a_stale_heartbeat_of_another_host_or_our_own_does_not_block(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.sqlite3")
    other_host_service(ledger, heartbeat=time.time() - 3600)  # that machine's service died long ago
    one_brain(ledger, state=tmp_path)
    ledger.set_meta("service", {"pid": 1, "host": HOST, "state": "running", "heartbeat": time.time()})
    one_brain(ledger, state=tmp_path)  # this host: the lock file decides (service.lock)
    ledger.close()


def test_the_file_system_of_the_state_folder_is_known(tmp_path: Path) -> None:
    assert file_system_type(tmp_path) not in (None, "")
    assert file_system_type(Path("/proc/self")) == "proc"


def test_renew_records_where_a_cluster_placed_the_job(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.sqlite3")
    ledger.ensure_jobs([NewJob(key="k1", kind="train", style_id="s", style_name="neon", settings={}, output="x")])
    job = ledger.claim(owner="me:1", lease_s=60, ready=lambda job: True, worker="ray")
    assert job is not None and job.worker == "ray"
    ledger.renew(owner="me:1", keys=["k1"], lease_s=60, progress={"k1": (3, 10)}, workers={"k1": "cpu@gpu-node-3"})
    job = ledger.get("k1")
    assert job is not None and job.worker == "cpu@gpu-node-3" and job.progress_done == 3
    ledger.renew(owner="me:1", keys=["k1"], lease_s=60)  # nothing new: where it runs is kept
    assert ledger.get("k1").worker == "cpu@gpu-node-3"  # type: ignore[union-attr]
    ledger.close()
