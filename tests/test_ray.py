"""`[executor] kind = "ray"` against a real local Ray (`ray.init(num_cpus=2)`, one node, no dashboard).

Jobs are tiny (64×36 at 10 fps, 1.5 s tracks, a random style placed in the library); each test submits
WorkItems straight to a RayExecutor and polls its outcomes, as the service loop does. Skipped, with the
reason, where ray is not importable (it is an optional extra: `pip install '.[ray]'`).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from daemon.config import ExecutorSettings, Folders, ServiceConfig
from daemon.errors import ConfigError, JobCrashed, JobTimeout
from daemon.library import Library
from daemon.naming import report_path, store_video
from daemon.service.executor import Outcome, WorkItem, time_limit
from daemon.service.ledger import Job, render_key
from daemon.style import random_style
from tests.conftest import synth, write_wav

ray = pytest.importorskip("ray", reason="ray is not installed (the optional [ray] extra; scripts/bootstrap.sh)")

from daemon.service.ray_executor import RayExecutor, train_units, unfit_reason  # noqa: E402 — after the skip

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def local_ray(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    temp = Path("/tmp") / f"afx-ray-unit-{os.getpid()}"  # short: Ray's socket paths must fit 107 bytes
    ray.init(num_cpus=2, include_dashboard=False, _temp_dir=str(temp), log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}})
    yield
    ray.shutdown()


def make_config(root: Path, **executor: Any) -> ServiceConfig:
    return ServiceConfig(folders=Folders(), base=root, device="cpu",
                         executor=ExecutorSettings(kind="ray", **executor))


def render_item(config: ServiceConfig, *, style_seed: int = 0, seconds: float = 1.5, track: str = "t.wav",
                fps: int = 10) -> WorkItem:
    root = config.base
    path = write_wav(root / "inbox" / track, synth(seconds, seed=style_seed))
    style = random_style(style_seed)
    style_id = f"s{style_seed:04d}"
    style.name, style.style_id = f"style{style_seed}", style_id
    library = Library(config.path("library"))
    if not library.has(style.name, style_id):
        style.save(library.folder_for(style.name, style_id))
    settings = {"width": 64, "height": 36, "fps": fps}
    key = render_key(f"{track}-{seconds}", style_id, settings)
    job = Job(key=key, kind="render", style_id=style_id, style_name=style.name, settings=settings, state="running",
              attempts=1, not_before=0.0, output=None, track_sha="x", track_path=str(path), lease_owner="t:1",
              error=None, progress_done=None, progress_total=None, started=time.time(), worker="ray",
              created=time.time(), updated=time.time())
    return WorkItem(job=job, spec=None, track_path=path, reference_tracks=(), config=config)


def run(executor: RayExecutor, *items: WorkItem, timeout: float = 180.0) -> dict[str, Outcome]:
    for item in items:
        slots = executor.idle()
        assert slots, "the executor offered no slot"
        executor.submit(item, slot=slots[0])
    return wait(executor, len(items), timeout=timeout)


def wait(executor: RayExecutor, count: int, *, timeout: float) -> dict[str, Outcome]:
    outcomes: dict[str, Outcome] = {}
    deadline = time.monotonic() + timeout
    while len(outcomes) < count:
        assert time.monotonic() < deadline, f"only {len(outcomes)} of {count} outcomes after {timeout} s"
        outcomes.update({o.key: o for o in executor.poll()})
        time.sleep(0.05)
    return outcomes


@pytest.fixture(scope="module")
def shared_executor(local_ray: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RayExecutor]:
    """One executor for the module: its warm actors outlive each test, as they outlive jobs in the service
    (an actor takes seconds to start on a loaded 2-core machine)."""
    ex = RayExecutor(make_config(tmp_path_factory.mktemp("ray")), grace_s=2.0)
    _ready(ex)
    yield ex
    ex.close()


@pytest.fixture
def executor(shared_executor: RayExecutor) -> Iterator[RayExecutor]:
    ex = shared_executor
    yield ex
    ex.stop()
    wait(ex, len(ex.running()), timeout=30)
    ex.storage, ex.limit = "shared", time_limit


def _ready(ex: RayExecutor, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not ex.idle():
        assert time.monotonic() < deadline, f"no node became ready: {ex.describe()}"
        time.sleep(0.1)


# ── without a cluster ────────────────────────────────────────────────────────────────────────────────────

def test_the_core_install_never_imports_ray() -> None:
    code = ("import sys, daemon.cli, daemon.service.service, daemon.service.executor, daemon.config; "
            "print('ray' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_kind_ray_without_ray_installed_is_a_clear_config_error(tmp_path: Path) -> None:
    code = ("import sys; sys.modules['ray'] = None\n"
            "from daemon.config import *; from daemon.service.executor import make_executor\n"
            f"c = ServiceConfig(base=__import__('pathlib').Path({str(tmp_path)!r}), executor=ExecutorSettings(kind='ray'))\n"
            "try:\n    make_executor(c, ['cpu'], wake=lambda: None)\n"
            "except Exception as e:\n    print(type(e).__name__, e.user_line())\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert out.stdout.startswith("ConfigError"), out.stdout + out.stderr
    assert "pip install 'audio-feature-explorer[ray]'" in out.stdout and "executor.kind" in out.stdout


def test_a_node_is_unfit_without_ffmpeg_or_afx_and_the_reason_says_which() -> None:
    fine = {"host": "gpu-2", "afx": "0.1.0", "ffmpeg": "/usr/bin/ffmpeg", "ffprobe": "/usr/bin/ffprobe"}
    assert unfit_reason(fine, version="0.1.0") is None
    assert "ffmpeg not found" in (unfit_reason({**fine, "ffmpeg": None}, version="0.1.0") or "")
    missing = unfit_reason({**fine, "afx": None, "afx_error": "ModuleNotFoundError: No module named 'daemon'"},
                           version="0.1.0")
    assert missing and "afx is not installed" in missing and "daemon" in missing
    assert "afx 0.0.9, the head 0.1.0" in (unfit_reason({**fine, "afx": "0.0.9"}, version="0.1.0") or "")


def test_a_training_takes_as_many_render_slots_as_its_resources() -> None:
    settings = ExecutorSettings(render_gpus=0.25, render_cpus=1.0, train_gpus=1.0, train_cpus=1.0)
    assert train_units(settings, gpu=True) == 4 and train_units(settings, gpu=False) == 1
    assert train_units(replace(settings, train_cpus=3.0), gpu=False) == 3


# ── against a local Ray ──────────────────────────────────────────────────────────────────────────────────

def test_renders_run_on_the_cluster_and_a_second_render_of_a_style_finds_it_loaded(executor: RayExecutor) -> None:
    item = render_item(executor.config)
    first = run(executor, item)[item.job.key]
    assert first.status == "done", first.error
    video = store_video(executor.config.path("renders"), item.job.key)
    assert first.output == str(video) and video.is_file()
    assert json.loads(report_path(video).read_text())["video"]["frames"] == 15

    again = render_item(executor.config, seconds=2.0, track="u.wav")
    second = run(executor, again)[again.job.key]
    assert second.status == "done", second.error
    warm = [ray.get(a.handle.warm.remote()) for a in executor._actors]
    assert any(w["style_hits"] >= 1 and w["jobs"] == 2 for w in warm), warm


def test_transfer_brings_the_video_back_and_the_head_publishes_it(executor: RayExecutor) -> None:
    executor.storage = "transfer"  # what `storage = "transfer"` in afx.toml sets
    item = render_item(executor.config, style_seed=3)
    outcome = run(executor, item)[item.job.key]
    assert outcome.status == "done", outcome.error
    video = store_video(executor.config.path("renders"), item.job.key)
    assert outcome.output == str(video) and video.stat().st_size > 1000
    report = json.loads(report_path(video).read_text())
    assert report["video"]["path"] == str(video) and report["video"]["width"] == 64
    assert not [p for p in video.parent.iterdir() if ".partial" in p.name]


def test_a_stopped_render_leaves_nothing_and_says_stopped(executor: RayExecutor) -> None:
    item = render_item(executor.config, seconds=30.0, fps=30, track="long.wav")
    executor.submit(item, slot=executor.idle()[0])
    deadline = time.monotonic() + 60
    while not (executor.progress().get(item.job.key, (None, None))[0] or 0) > 0:
        assert time.monotonic() < deadline, "no progress came back"
        assert not executor.poll()
        time.sleep(0.1)
    executor.stop(item.job.key)
    outcome = wait(executor, 1, timeout=30)[item.job.key]
    assert outcome.status == "stopped" and outcome.error is None
    video = store_video(executor.config.path("renders"), item.job.key)
    assert not video.exists()
    assert not [p for p in video.parent.iterdir() if ".partial" in p.name] if video.parent.exists() else True


def test_a_job_past_its_time_limit_is_killed_with_a_timeout(executor: RayExecutor) -> None:
    executor.limit = lambda item, frames=None: 2.0
    item = render_item(executor.config, seconds=60.0, fps=30, track="huge.wav")
    outcome = run(executor, item, timeout=60)[item.job.key]
    assert outcome.status == "failed" and isinstance(outcome.error, JobTimeout)
    assert "wall-clock limit of 2 s" in outcome.error.user_line()


def test_a_killed_worker_process_is_a_crash_that_is_retried(executor: RayExecutor) -> None:
    item = render_item(executor.config, seconds=30.0, fps=30, track="doomed.wav")
    executor.submit(item, slot=executor.idle()[0])
    deadline = time.monotonic() + 60
    while not (executor.progress().get(item.job.key, (None, None))[0] or 0) > 0:
        assert time.monotonic() < deadline, "no progress came back"
        time.sleep(0.1)
    actor = next(a for a in executor._actors if a.key == item.job.key)
    os.kill(ray.get(actor.handle.warm.remote())["pid"], signal.SIGKILL)
    outcome = wait(executor, 1, timeout=60)[item.job.key]
    assert outcome.status == "failed" and isinstance(outcome.error, JobCrashed)
    assert outcome.error.transient and "died before it finished" in outcome.error.user_line()
    assert actor not in executor._actors  # a fresh actor takes the next job
    assert executor.idle()


def test_backpressure_offers_only_the_free_slots(executor: RayExecutor) -> None:
    assert len(executor.idle()) == 2  # num_cpus=2, one CPU a render
    items = [render_item(executor.config, style_seed=i, seconds=20.0, fps=30, track=f"b{i}.wav") for i in range(2)]
    for item in items:
        executor.submit(item, slot=executor.idle()[0])
    assert executor.idle() == []
    executor.stop()
    outcomes = wait(executor, 2, timeout=60)
    assert {o.status for o in outcomes.values()} <= {"stopped", "done"}


def test_an_unknown_address_is_a_config_error(tmp_path: Path) -> None:
    from daemon.service.ray_executor import connect

    with pytest.raises(ConfigError, match="unknown Ray address"):
        connect(ExecutorSettings(kind="ray", address="nowhere"))


def test_a_stopped_training_checkpoints_and_its_checkpoint_comes_back_to_the_head(executor: RayExecutor) -> None:
    from daemon.spec import load_specs
    from daemon.train import CHECKPOINT_FILE

    config = executor.config
    spec_path = config.base / "specs" / "long.toml"
    spec_path.parent.mkdir(parents=True, exist_ok=True)
    spec_path.write_text('prompts = ["long shapes"]\n[network]\nwidth = 8\ndepth = 2\n[render]\nwidth = 64\n'
                         'height = 36\nfps = 10\n[training]\nclip_model = "afx-tiny"\npretrained = "none"\n'
                         'iterations = 5000\nresolution = 32\ncutouts = 2\ntime_points = 2\ncheckpoint_every = 1\n')
    spec = load_specs(spec_path)[0]
    job = Job(key=f"train:{spec.style_id}", kind="train", style_id=spec.style_id, style_name=spec.name, settings={},
              state="running", attempts=1, not_before=0.0, output=None, track_sha=None, track_path=None,
              lease_owner="t:1", error=None, progress_done=None, progress_total=None, started=time.time(),
              worker="ray", created=time.time(), updated=time.time())
    item = WorkItem(job=job, spec=spec.to_dict(), track_path=None, reference_tracks=(), config=config)
    executor.submit(item, slot=executor.idle()[0])
    deadline = time.monotonic() + 90
    while not (executor.progress().get(job.key, (None, None))[0] or 0) > 2:
        assert time.monotonic() < deadline, f"no training progress came back: {executor.poll()}"
        time.sleep(0.1)
    executor.stop(job.key)
    outcome = wait(executor, 1, timeout=60)[job.key]
    assert outcome.status == "stopped", outcome.error
    checkpoint = config.path("state") / "checkpoints" / spec.style_id / CHECKPOINT_FILE
    assert checkpoint.stat().st_size > 0  # the head's copy: the next attempt, on any node, resumes from it
    assert not Library(config.path("library")).has(spec.name, spec.style_id)
    assert not [a for a in executor._actors if a.kind == "train"]  # a training's actor ends with it


def test_a_node_without_ffmpeg_is_named_and_says_what_is_missing(executor: RayExecutor,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from daemon.service.ray_executor import _probe

    monkeypatch.setenv("PATH", "/nonexistent")  # the probe is what each node runs, sent by value
    found = _probe()
    assert unfit_reason(found, version=executor.version) == "ffmpeg and ffprobe not found on its PATH"
    assert found["afx"] == executor.version and found["host"]
    nodes = executor.describe()["nodes"]
    assert nodes and all(n["fit"] and n["problem"] is None for n in nodes)  # the real node passed it
    assert all("node" in n["node"] for n in nodes)  # named by host, address and node id
