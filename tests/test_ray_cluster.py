"""A real two-node Ray cluster on this machine: `ray start --head` and `ray start --address …` as separate
process groups, 1 CPU each, explicit ports, a temporary `--temp-dir`, no dashboard, no usage stats, a
token of its own. `afx run` with `[executor] kind = "ray"` renders a burst of tracks; the worker node's raylet
is SIGKILLed while it runs a job, and every (track, style) pair must still be done exactly once, with no
partial file. The cluster is always taken down (its process groups, SIGTERM then SIGKILL), even on failure.

Ray's own servers listen on all interfaces and advertise the machine's address (Linux ignores a loopback
`--node-ip-address` for multi-node clusters); everything this test names is 127.0.0.1.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from daemon.naming import STORE
from tests.test_ray import ROOT
from tests.test_service_e2e import ServiceUnderTest

pytest.importorskip("ray", reason="ray is not installed (the optional [ray] extra; scripts/bootstrap.sh)")
pytestmark = pytest.mark.slow

RAY = Path(sys.executable).with_name("ray")
BOOT_S = 90.0  # a node's start on a loaded 2-core machine


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Cluster:
    """Two `ray start --block` process groups; `kill_worker_raylet` is the node dying mid-job."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.groups: dict[str, subprocess.Popen[bytes]] = {}
        self.env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "token",
                    "RAY_AUTH_TOKEN": secrets.token_hex(16), "PYTHONPATH": str(ROOT),
                    # a dead node is noticed in ~3 s instead of ~30
                    "RAY_health_check_period_ms": "1000", "RAY_health_check_failure_threshold": "3",
                    "RAY_health_check_timeout_ms": "1000"}

    def start(self, name: str, *args: str) -> None:
        base = 20000 + secrets.randbelow(20000)
        ports = ["--min-worker-port", str(base), "--max-worker-port", str(base + 60),
                 "--node-manager-port", str(free_port()), "--object-manager-port", str(free_port()),
                 "--dashboard-agent-listen-port", str(free_port()), "--dashboard-agent-grpc-port", str(free_port()),
                 "--metrics-export-port", str(free_port()), "--runtime-env-agent-port", str(free_port())]
        log = open(self.root / f"{name}.log", "wb")  # noqa: SIM115 — closed with the process
        self.groups[name] = subprocess.Popen(
            [str(RAY), "start", "--block", "--node-ip-address", "127.0.0.1", "--num-cpus", "1", "--node-name", name,
             "--temp-dir", str(self.root / name), "--disable-usage-stats", *ports, *args],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=self.env, start_new_session=True)
        deadline = time.monotonic() + BOOT_S
        while b"block forever" not in (self.root / f"{name}.log").read_bytes():
            if self.groups[name].poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"ray node {name} did not start\n{(self.root / f'{name}.log').read_text()[-3000:]}")
            time.sleep(0.3)

    def kill_worker_raylet(self) -> int:
        group = self.groups["afx-worker"].pid
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
                comm = stat.read_text().split("(", 1)[1].rsplit(")", 1)[0]
            except (OSError, IndexError):
                continue
            if comm == "raylet" and int(fields[2]) == group:
                pid = int(stat.parent.name)
                os.kill(pid, signal.SIGKILL)
                return pid
        pytest.fail("the worker node has no raylet")

    def stop(self) -> None:
        for proc in self.groups.values():
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 3
        for proc in self.groups.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # whatever `ray start` left in its group
            except ProcessLookupError:
                pass
            proc.wait()


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    root = Path(f"/tmp/afxrc-{os.getpid()}-{secrets.token_hex(2)}")  # short: Ray's socket paths must fit
    root.mkdir()
    c = Cluster(root)
    try:
        c.start("afx-head", "--head", "--port", str(c.port), "--include-dashboard=false")
        c.start("afx-worker", "--address", f"127.0.0.1:{c.port}")
        yield c
    finally:
        c.stop()
        subprocess.run(["rm", "-rf", str(root)], check=False)


def test_a_worker_killed_mid_job_loses_nothing_and_every_pair_is_rendered_once(cluster: Cluster,
                                                                                tmp_path: Path) -> None:
    service = ServiceUnderTest(tmp_path)
    service.configure(rescan_s=2.0)
    with open(tmp_path / "afx.toml", "a") as f:
        f.write(f'\n[executor]\nkind = "ray"\naddress = "127.0.0.1:{cluster.port}"\nstorage = "shared"\n'
                'render_cpus = 1.0\ntrain_cpus = 1.0\n')
    service.spec("neon", trained=True)
    tracks = [f"t{i}.wav" for i in range(6)]
    for i, name in enumerate(tracks):
        service.track(name, seconds=6.0, seed=i)
    try:
        service.start(env={k: v for k, v in cluster.env.items() if k.startswith("RAY_")})
        running_there = service.wait(
            lambda: [j for j in service.jobs() if j["state"] == "running" and "afx-worker" in (j["worker"] or "")],
            timeout=120, what="a render running on the worker node")
        cluster.kill_worker_raylet()
        service.wait(lambda: service.states() == ["done"] * len(tracks), timeout=120, what="every render done")
        status = service.status()
        text = subprocess.run([sys.executable, "-m", "daemon.cli", "--config", str(tmp_path / "afx.toml"), "status"],
                              cwd=ROOT, capture_output=True, text=True, timeout=60, check=True).stdout
        code, _ = service.stop()  # SIGTERM reaches the service's own handler, not Ray's (a clean stop, exit 0)
    finally:
        if service.proc is not None and service.proc.poll() is None:
            service.proc.kill()
    assert code == 0 and service.events("service.stop")[-1]["reason"] == "SIGTERM", service.tail()
    assert status["service"]["executor"]["kind"] == "ray"
    assert f"cluster: Ray at 127.0.0.1:{cluster.port}, storage shared: 1 of 1 nodes ready" in text, text

    lost = running_there[0]["key"]
    failed = [e for e in service.events("job.failed") if lost.startswith(e["job"])]
    assert failed and "died before it finished" in failed[0]["error"], service.tail()
    done = service.events("job.done")
    assert sorted(e["job"] for e in done) == sorted({e["job"] for e in done}) and len(done) == len(tracks)
    assert service.renders() == sorted(f"{t}/neon.{ext}" for t in tracks for ext in ("json", "mp4"))
    store = [p for p in (tmp_path / "renders" / STORE).rglob("*") if p.is_file()]
    assert len([p for p in store if p.suffix == ".mp4"]) == len(tracks)
    assert not service.partials() and not [p for p in store if ".partial" in p.name]
