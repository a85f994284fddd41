"""Running jobs: the `Executor` interface and `LocalExecutor`, one worker per GPU (one on CPU).

A job runs inside its own error boundary (`run_job`): whatever it raises becomes an `Outcome`, so one bad
job never stops the service. The work itself is the pipeline's — `daemon.pipeline.render_track` and
`daemon.pipeline.train_style` — called with the settings the planner chose; this module only supplies the
folders, the device, and a `JobControl` through which the loop reads progress and asks a job to stop
(a render is aborted, leaving nothing behind; a training checkpoints). The interface is small enough for a
distributed engine (Ray, Dask) to implement later: plain-data `WorkItem`s in, `Outcome`s out.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from daemon.config import ServiceConfig
from daemon.errors import AudioError, ConfigError
from daemon.library import Library
from daemon.logs import get_logger
from daemon.naming import store_video
from daemon.service.ledger import Job

log = get_logger("afx.executor")


class JobStopped(Exception):
    """The service asked the job to stop (SIGTERM, shutdown); it goes back to the queue, uncounted."""


@dataclass(frozen=True)
class WorkItem:
    """Everything a worker needs to run one job, as plain data."""

    job: Job  # the claimed ledger row
    spec: dict[str, Any] | None  # StyleSpec.to_dict() of the job's style version
    track_path: Path | None  # render: where the track is now
    reference_tracks: tuple[Path, ...]  # train: inbox tracks the style renders, to sample audio from
    config: ServiceConfig  # folders, limits


@dataclass(frozen=True)
class Outcome:
    """How a job ended."""

    key: str  # the job's key
    status: str  # done | stopped | failed
    error: BaseException | None  # when failed
    output: str | None  # the video or style folder, when done
    seconds: float  # wall time of the attempt
    worker: str  # the slot it ran in


class JobControl:
    """Shared by the loop and one running job: progress one way, a stop request the other."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        self.done: int | None = None
        self.total: int | None = None
        self.started = time.time()

    def stop(self) -> None:
        self._stop.set()

    def should_stop(self) -> bool:
        return self._stop.is_set()

    def check(self) -> None:
        if self._stop.is_set():
            raise JobStopped("stop requested")

    def progress(self, done: int, total: int) -> None:
        """render_track's on_progress: also where a render notices a stop request and aborts."""
        self.done, self.total = int(done), int(total)
        self.check()

    def on_step(self, *args: Any, **kwargs: Any) -> None:
        """train_style's on_step: accepts (step, total, ...), keywords, or an object with step/total."""
        step = kwargs.get("step", args[0] if args else None)
        total = kwargs.get("total", kwargs.get("iterations", args[1] if len(args) > 1 else None))
        if step is not None and not isinstance(step, (int, float)):
            info = step
            step = _field(info, "step")
            total = total if isinstance(total, (int, float)) else _field(info, "total", _field(info, "iterations"))
        if isinstance(step, (int, float)):
            self.done = int(step)
        if isinstance(total, (int, float)):
            self.total = int(total)


def _field(info: Any, name: str, default: Any = None) -> Any:
    if isinstance(info, dict):
        return info.get(name, default)
    return getattr(info, name, default)


# ── the work of each kind ────────────────────────────────────────────────────────────────────────────────

def audio_context(config: ServiceConfig) -> Any:
    from daemon.audio.cache import FeatureCache
    from daemon.pipeline import AudioContext

    return AudioContext(limits=config.limits.audio(), cache=FeatureCache(config.path("cache")))


def run_render(item: WorkItem, *, device: str, control: JobControl) -> str:
    from daemon.pipeline import render_track
    from daemon.render import RenderSettings

    job, config = item.job, item.config
    if item.track_path is None:
        raise AudioError("the track's file is gone", path=job.track_path, hint="drop it into the inbox again")
    style = Library(config.path("library")).load(job.style_name, job.style_id)
    control.check()
    settings = RenderSettings(width=int(job.settings["width"]), height=int(job.settings["height"]),
                              fps=int(job.settings["fps"]), device=device)
    out = store_video(config.path("renders"), job.key)  # published by the loop (Service.publish_video)
    render_track(item.track_path, style, settings, out_path=out, ctx=audio_context(config),
                 on_progress=control.progress,
                 extra_report={"job": {"key": job.key, "attempt": job.attempts, "by": "afx run"}})
    return str(out)


def run_train(item: WorkItem, *, device: str, control: JobControl) -> str:
    from daemon import pipeline
    from daemon.service.planner import spec_from_dict

    job, config = item.job, item.config
    library = Library(config.path("library"))
    folder = library.folder_for(job.style_name, job.style_id)
    if library.has(job.style_name, job.style_id):
        return str(folder)  # trained meanwhile (`afx train`, another worker)
    if item.spec is None:
        raise ConfigError(f"the spec of style {job.style_id} is not in the ledger", hint="touch its spec file")
    spec = spec_from_dict(item.spec, limits=config.limits)
    control.check()
    # unreadable reference tracks are skipped inside train_style (train.reference_skipped), not here
    style = pipeline.train_style(
        spec, library=library, ctx=audio_context(config), reference_tracks=list(item.reference_tracks),
        device=device, checkpoint_dir=config.path("state") / "checkpoints" / job.style_id,
        models_dir=config.path("models"), allow_download=config.download_models,
        on_step=control.on_step, should_stop=control.should_stop)
    return str(getattr(style, "folder", None) or folder)


RUNNERS: dict[str, Callable[..., str]] = {"render": run_render, "train": run_train}


def run_job(item: WorkItem, *, device: str, control: JobControl, worker: str) -> Outcome:
    """The error boundary: every ending of a job becomes an Outcome."""
    started = time.monotonic()

    def outcome(status: str, error: BaseException | None = None, output: str | None = None) -> Outcome:
        return Outcome(key=item.job.key, status=status, error=error, output=output,
                       seconds=round(time.monotonic() - started, 3), worker=worker)

    try:
        return outcome("done", output=RUNNERS[item.job.kind](item, device=device, control=control))
    except JobStopped:
        return outcome("stopped")
    except BaseException as e:  # noqa: BLE001 — the boundary: nothing a job raises (even SystemExit from a
        # library) may end its thread without an outcome, or its slot and lease would be held forever
        from daemon.train import TrainingInterrupted  # loaded already by any job that can raise it

        if isinstance(e, TrainingInterrupted):  # daemon.train's checkpoint-and-stop
            return outcome("stopped")
        if not hasattr(e, "user_line"):
            log.error("job.crashed", job=item.job.key, kind=item.job.kind, exc_info=e)
        return outcome("failed", error=e)


# ── executors ────────────────────────────────────────────────────────────────────────────────────────────

class Executor(Protocol):
    """Where jobs run. The loop claims a job for an idle slot, submits it, and polls for outcomes."""

    def idle(self) -> list[str]:
        """Slots that can take a job now."""
        ...

    def submit(self, item: WorkItem, *, slot: str) -> None:
        ...

    def poll(self) -> list[Outcome]:
        """Outcomes of jobs that ended since the last poll."""
        ...

    def progress(self) -> dict[str, tuple[int | None, int | None]]:
        """(done, total) of each running job, by key."""
        ...

    def running(self) -> list[str]:
        """Keys of the jobs running now."""
        ...

    def stop(self, key: str | None = None) -> None:
        """Ask one running job (or all) to stop soon."""
        ...

    def shutdown(self, *, timeout: float) -> list[str]:
        """Stop every job and wait up to `timeout`; returns the keys still running after it."""
        ...


def worker_devices(config: ServiceConfig) -> list[str]:
    """One device per worker: every GPU (auto/cuda), else the CPU; `workers` overrides the count."""
    import torch

    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if config.device in ("auto", "cuda"):
        if config.device == "cuda" and gpus == 0:
            raise ConfigError("device 'cuda' was asked for but CUDA is not available", key="device",
                              hint='use device = "auto" or "cpu"')
        devices = [f"cuda:{i}" for i in range(gpus)] or ["cpu"]
    else:
        devices = [config.device]
    count = config.workers or len(devices)
    return [devices[i % len(devices)] for i in range(count)]


@dataclass
class _Running:
    item: WorkItem
    control: JobControl
    thread: threading.Thread


class LocalExecutor:
    """Jobs run in this process, one thread per slot; each slot owns one device."""

    def __init__(self, devices: list[str], *, wake: Callable[[], None] = lambda: None) -> None:
        self.slots = {f"{device}#{i}": device for i, device in enumerate(devices)}
        self.wake = wake
        self._lock = threading.Lock()
        self._running: dict[str, _Running] = {}  # slot → job
        self._outcomes: list[Outcome] = []

    def idle(self) -> list[str]:
        with self._lock:
            return [slot for slot in self.slots if slot not in self._running]

    def submit(self, item: WorkItem, *, slot: str) -> None:
        control = JobControl()
        thread = threading.Thread(target=self._work, args=(item, slot, control), daemon=True,
                                  name=f"afx-{slot}-{item.job.kind}")
        with self._lock:
            if slot in self._running:
                raise RuntimeError(f"slot {slot} is busy")
            self._running[slot] = _Running(item=item, control=control, thread=thread)
        thread.start()

    def _work(self, item: WorkItem, slot: str, control: JobControl) -> None:
        result = run_job(item, device=self.slots[slot], control=control, worker=slot)
        with self._lock:
            self._outcomes.append(result)
            self._running.pop(slot, None)
        self.wake()

    def poll(self) -> list[Outcome]:
        with self._lock:
            done, self._outcomes = self._outcomes, []
        return done

    def progress(self) -> dict[str, tuple[int | None, int | None]]:
        with self._lock:
            return {r.item.job.key: (r.control.done, r.control.total) for r in self._running.values()}

    def running(self) -> list[str]:
        with self._lock:
            return [r.item.job.key for r in self._running.values()]

    def stop(self, key: str | None = None) -> None:
        with self._lock:
            for r in self._running.values():
                if key is None or r.item.job.key == key:
                    r.control.stop()

    def shutdown(self, *, timeout: float) -> list[str]:
        self.stop()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                threads = [r.thread for r in self._running.values()]
            if not threads:
                return []
            threads[0].join(timeout=max(0.0, min(0.2, deadline - time.monotonic())))
        return self.running()
