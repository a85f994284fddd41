"""Running jobs: the `Executor` interface and `LocalExecutor`, one worker slot per GPU (one on CPU).

Each job runs in its own child process (`LocalExecutor`), inside its own error boundary (`run_job`):
whatever it raises becomes an `Outcome`, and whatever happens to its process (a crash, the out-of-memory
killer, a hang past its wall-clock limit) becomes one too, so one bad job never stops the service and no
process-wide setting a job makes (torch threads, deterministic kernels, hub offline switches, logging)
reaches another. The work itself is the pipeline's — `daemon.pipeline.render_track` and
`daemon.pipeline.train_style` — called with the settings the planner chose; this module only supplies the
folders, the device, and a `JobControl` through which the loop reads progress and asks a job to stop
(SIGTERM to its process: a render is aborted, leaving nothing behind; a training checkpoints).

The interface is small enough for a distributed engine to implement: jobs go in as plain, picklable
`WorkItem`s, `Outcome`s (errors included) come back as data, a `Slot` names its device and host, and
`make_executor` picks the implementation from `[executor] kind` in afx.toml — `daemon.service.ray_executor`
is the Ray one (imported only when asked for: the core install never imports ray).
"""

from __future__ import annotations

import ctypes
import multiprocessing
import pickle
import signal
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from daemon.atomic import HOST
from daemon.config import ServiceConfig
from daemon.errors import AfxError, AudioError, ConfigError, JobCrashed, JobTimeout
from daemon.library import Library
from daemon.logs import configure_logging, get_logger
from daemon.naming import store_video
from daemon.report import RenderJob
from daemon.service.ledger import Job
from daemon.service.planner import spec_from_dict
from daemon.spec import default_name

if TYPE_CHECKING:
    from daemon.train import StepRecord  # torch: the service loop never imports it

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
    sweep: tuple[dict[str, Any], ...] = ()  # train: every variant (StyleSpec.to_dict()) of the job's sweep spec
    # file, when it is one: its comparison is written after the training (daemon.pipeline.sweep_comparison)


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
    """Between the loop and one running job: progress one way, a stop request the other. In a job's
    process, `report` forwards progress to the service (see `LocalExecutor`)."""

    def __init__(self, report: Callable[[int | None, int | None], None] = lambda done, total: None) -> None:
        self._stop = threading.Event()
        self.done: int | None = None
        self.total: int | None = None
        self.started = time.time()
        self.report = report

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
        self.report(self.done, self.total)
        self.check()

    def on_step(self, record: StepRecord, total: int) -> None:
        """train_style's on_step (a `daemon.train.OnStep`): the step just taken, of `total`."""
        self.done, self.total = int(record.step), int(total)
        self.report(self.done, self.total)


# ── the work of each kind ────────────────────────────────────────────────────────────────────────────────

class StyleCache:
    """The styles a long-lived worker (a Ray actor) rendered last, loaded: a second render of a style pays
    no loading. Keyed by folder: a style id names its weights, so an entry never goes stale."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._styles: OrderedDict[Path, Any] = OrderedDict()
        self.hits = 0

    def load(self, library: Library, name: str, style_id: str) -> Any:
        folder = library.folder_for(name, style_id)
        if folder in self._styles:
            self.hits += 1
            self._styles.move_to_end(folder)
            return self._styles[folder]
        style = library.load(name, style_id)
        if self.size > 0:
            self._styles[folder] = style
            while len(self._styles) > self.size:
                self._styles.popitem(last=False)
        return style

    def names(self) -> list[str]:
        """style ids held, most recent last."""
        return [folder.name for folder in self._styles]


def run_render(item: WorkItem, *, device: str, control: JobControl, styles: StyleCache | None = None) -> str:
    from daemon.pipeline import AudioContext, render_track  # torch: in the job's process only
    from daemon.render import RenderSettings

    job, config = item.job, item.config
    if item.track_path is None:
        raise AudioError("the track's file is gone", path=job.track_path, hint="drop it into the inbox again")
    library = Library(config.path("library"))
    style = (styles.load(library, job.style_name, job.style_id) if styles is not None
             else library.load(job.style_name, job.style_id))
    control.check()
    settings = RenderSettings(width=int(job.settings["width"]), height=int(job.settings["height"]),
                              fps=int(job.settings["fps"]), device=device)
    out = store_video(config.path("renders"), job.key)  # published by the loop (Service.publish_video)
    render_track(item.track_path, style, settings, out_path=out, ctx=AudioContext.for_config(config),
                 on_progress=control.progress, job=RenderJob(key=job.key, attempt=job.attempts),
                 highlight_s=job.settings.get("preview_s"))
    return str(out)


def run_train(item: WorkItem, *, device: str, control: JobControl) -> str:
    from daemon import pipeline  # torch: in the job's process only, never in the service loop
    from daemon.pipeline import AudioContext

    job, config = item.job, item.config
    library = Library(config.path("library"))
    folder = library.folder_for(job.style_name, job.style_id)
    if library.has(job.style_name, job.style_id):
        write_sweep_comparison(item, library)
        return str(folder)  # trained meanwhile (`afx train`, another worker)
    if item.spec is None:
        raise ConfigError(f"the spec of style {job.style_id} is not in the ledger", hint="touch its spec file")
    spec = spec_from_dict(item.spec, limits=config.limits)
    control.check()
    # unreadable reference tracks are skipped inside train_style (train.reference_skipped), not here
    style = pipeline.train_style(
        spec, library=library, ctx=AudioContext.for_config(config), reference_tracks=list(item.reference_tracks),
        device=device, checkpoint_dir=config.path("state") / "checkpoints" / job.style_id,
        models_dir=config.path("models"), allow_download=config.download_models,
        on_step=control.on_step, should_stop=control.should_stop)
    write_sweep_comparison(item, library)
    return str(getattr(style, "folder", None) or folder)


def write_sweep_comparison(item: WorkItem, library: Library) -> None:
    """After a sweep variant's training: the sweep's comparison page, as `afx train` writes it (trained
    variants so far; the rest marked). The style is trained whatever happens here, so a failure is logged."""
    if not item.sweep:
        return
    from daemon import pipeline  # torch: in the job's process only

    config = item.config
    try:
        variants = [spec_from_dict(d, limits=config.limits) for d in item.sweep]
        source = variants[0].source
        name = default_name(source) if source is not None else item.job.style_name.split("--")[0]
        pages = pipeline.sweep_comparison(name, variants, library=library, ctx=pipeline.AudioContext.for_config(config),
                                          fallback=list(item.reference_tracks))
    except AfxError as e:
        log.warning("sweep.comparison_failed", job=item.job.key, error=e.user_line())
        return
    except Exception as e:  # noqa: BLE001 — the page is secondary: a bug here must not fail a finished training
        log.error("sweep.comparison_failed", job=item.job.key, error=str(e), exc_info=e)
        return
    log.info("sweep.comparison", sweep=name, page=str(pages["html"]))


RUNNERS: dict[str, Callable[..., str]] = {"render": run_render, "train": run_train}


def run_job(item: WorkItem, *, device: str, control: JobControl, worker: str,
            styles: StyleCache | None = None) -> Outcome:
    """The error boundary: every ending of a job becomes an Outcome. `styles`: a long-lived worker's cache."""
    started = time.monotonic()

    def outcome(status: str, error: BaseException | None = None, output: str | None = None) -> Outcome:
        return Outcome(key=item.job.key, status=status, error=error, output=output,
                       seconds=round(time.monotonic() - started, 3), worker=worker)

    try:
        extra = {"styles": styles} if styles is not None and item.job.kind == "render" else {}
        return outcome("done", output=RUNNERS[item.job.kind](item, device=device, control=control, **extra))
    except JobStopped:
        return outcome("stopped")
    except BaseException as e:  # noqa: BLE001 — the boundary: nothing a job raises (even SystemExit from a
        # library) may end its thread without an outcome, or its slot and lease would be held forever
        from daemon.train import (
            TrainingInterrupted,  # loaded already by any job that can raise it
        )

        if isinstance(e, TrainingInterrupted):  # daemon.train's checkpoint-and-stop
            return outcome("stopped")
        if not hasattr(e, "user_line"):
            log.error("job.crashed", job=item.job.key, kind=item.job.kind, exc_info=e)
        return outcome("failed", error=e)


# ── executors ────────────────────────────────────────────────────────────────────────────────────────────

@dataclass(frozen=True)
class Slot:
    """One place a job can run: a device on a host (a distributed engine's slots live on other hosts)."""

    name: str  # unique among the executor's slots, e.g. "cuda:0#0"
    device: str  # what the job is given: cpu, cuda:N
    host: str = HOST


class Executor(Protocol):
    """Where jobs run. The loop claims a job for an idle slot, submits it, and polls for outcomes."""

    def idle(self) -> list[Slot]:
        """Slots that can take a job now."""
        ...

    def submit(self, item: WorkItem, *, slot: Slot) -> None:
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

    def kill(self) -> None:
        """End every job now (a stop that did not come in time); their outcomes say stopped."""
        ...

    def placement(self) -> dict[str, str]:
        """Where each running job landed, by key, when that is known only after submit (a cluster node)."""
        ...

    def describe(self) -> dict[str, Any]:
        """What `afx status` shows of the executor (its slots, or a cluster's nodes)."""
        ...

    def close(self) -> None:
        """Release what the executor holds (a cluster connection) once every job has ended."""
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


def time_limit(item: WorkItem, *, frames: int | None = None) -> float:
    """A job's wall-clock limit from its size: job_base_s + size / rate, at most max_job_s.

    A render's size is frames × width × height (frames: as its progress reports them, else the longest
    track the limits accept); a training's is iterations × time_points × cutouts × resolution² (what CLIP
    sees). The default rates leave ample room: ViT-B-32 on a 2-core CPU trains at about 3e5 of these pixels
    a second, ViT-L-14 at 2e4 (docs/PERFORMANCE.md); a render at 720p runs at about 4e6.
    """
    settings, job = item.config.executor, item.job
    if job.kind == "render":
        pixels = int(job.settings["width"]) * int(job.settings["height"])
        if frames is None:
            frames = int(item.config.limits.max_duration_s * int(job.settings["fps"])) + 1
        size, rate = frames * pixels, settings.render_pixels_per_s
    else:
        training = (item.spec or {}).get("training", {})
        size = (int(training.get("iterations", 400)) * int(training.get("time_points", 4))
                * int(training.get("cutouts", 8)) * int(training.get("resolution", 224)) ** 2)
        rate = settings.train_pixels_per_s
    return min(settings.max_job_s, settings.job_base_s + size / rate)


# The job's process: forked from a forkserver that imported the pipeline once (torch and all), before any
# thread existed. Forking the service itself would copy its threads' locks (watchdog, ffmpeg writers) and
# any torch thread pool mid-use; "spawn" would import torch again for every job (seconds each).
PRELOAD = ["daemon.service.executor", "daemon.pipeline", "daemon.train"]
PROGRESS_EVERY_S = 0.25  # a job reports progress to the service at most this often


def _job_process(runner: Callable[..., Outcome], item: WorkItem, slot: Slot, conn: Connection) -> None:
    """Runs in the child: SIGTERM asks the job to stop; progress and the outcome go back over `conn`."""

    configure_logging(json_lines=item.config.log_json, level="info")
    last = [0.0]

    def report(done: int | None, total: int | None) -> None:
        now = time.monotonic()
        if (now - last[0] >= PROGRESS_EVERY_S or (done is not None and done == total)) and not control.should_stop():
            last[0] = now
            try:
                conn.send(("progress", done, total))
            except OSError:  # the service is gone: stop as on SIGTERM (a training checkpoints first)
                control.stop()

    _die_with_parent()
    control = JobControl(report=report)
    signal.signal(signal.SIGTERM, lambda *_: control.stop())
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the service decides
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    outcome = runner(item, device=slot.device, control=control, worker=slot.name)
    try:
        conn.send(("outcome", _portable(outcome)))
        conn.close()
    except OSError:
        pass  # the service died meanwhile: its next start requeues the job


def _die_with_parent() -> None:
    """SIGKILL this job when the forkserver dies (it exits with the service), so a killed service leaves
    no job running on its own (Linux; elsewhere the job ends when it next reports to the dead pipe)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _portable(outcome: Outcome) -> Outcome:
    """An outcome whose error survives pickling (a library's exception may not)."""
    if outcome.error is None:
        return outcome
    try:
        pickle.loads(pickle.dumps(outcome.error))
        return outcome
    except Exception:  # noqa: BLE001 — any failure to pickle: send its text instead
        return replace(outcome, error=RuntimeError(f"{type(outcome.error).__name__}: {outcome.error}"))


@dataclass
class _Process:
    item: WorkItem
    slot: Slot
    process: BaseProcess
    conn: Connection
    started: float = field(default_factory=time.monotonic)
    done: int | None = None
    total: int | None = None
    stopping: bool = False


class LocalExecutor:
    """Each job in its own child process on this host, at most one per slot; each slot owns one device.

    A thread per running job reads its pipe (progress, then the outcome), enforces its wall-clock limit
    and turns a death without an outcome into `JobCrashed`.
    """

    def __init__(self, devices: list[str], *, wake: Callable[[], None] = lambda: None,
                 runner: Callable[..., Outcome] = run_job, limit: Callable[..., float] = time_limit,
                 grace_s: float = 10.0) -> None:
        self.slots = [Slot(name=f"{device}#{i}", device=device) for i, device in enumerate(devices)]
        self.wake = wake
        self.runner = runner  # a module-level function: it travels to the child by name
        self.limit = limit
        self.grace_s = grace_s  # after SIGTERM (a stop, a timeout), then SIGKILL
        self._context = multiprocessing.get_context("forkserver")
        self._context.set_forkserver_preload(PRELOAD)
        self._lock = threading.Lock()
        self._running: dict[str, _Process] = {}  # slot name → job
        self._outcomes: list[Outcome] = []

    def idle(self) -> list[Slot]:
        with self._lock:
            return [slot for slot in self.slots if slot.name not in self._running]

    def submit(self, item: WorkItem, *, slot: Slot) -> None:
        receive, send = self._context.Pipe(duplex=False)
        process = self._context.Process(target=_job_process, args=(self.runner, item, slot, send), daemon=True,
                                        name=f"afx-{slot.name}-{item.job.kind}")
        with self._lock:
            if slot.name in self._running:
                raise RuntimeError(f"slot {slot.name} is busy")
            process.start()
            send.close()  # the child holds the only writing end: its death closes the pipe
            running = _Process(item=item, slot=slot, process=process, conn=receive)
            self._running[slot.name] = running
        threading.Thread(target=self._watch, args=(running,), daemon=True, name=f"afx-watch-{slot.name}").start()
        log.info("job.process", job=item.job.key[:16], pid=process.pid, slot=slot.name, host=slot.host)

    def _watch(self, running: _Process) -> None:
        outcome = self._follow(running)
        running.process.join(timeout=self.grace_s)
        if running.process.is_alive():
            running.process.kill()
            running.process.join()
        running.conn.close()
        with self._lock:
            self._outcomes.append(outcome)
            self._running.pop(running.slot.name, None)
        self.wake()

    def _follow(self, running: _Process) -> Outcome:
        """Read the child's messages until its outcome, its death, or its wall-clock limit."""
        item = running.item
        while True:
            limit = self.limit(item, frames=running.total if item.job.kind == "render" else None)
            left = running.started + limit - time.monotonic()
            if left <= 0:
                return self._overran(running, limit)
            try:
                ready = running.conn.poll(min(left, 1.0))
                message = running.conn.recv() if ready else None
            except (EOFError, OSError):
                return self._died(running)
            if message is None:
                continue
            if message[0] == "progress":
                running.done, running.total = message[1], message[2]
            elif message[0] == "outcome":
                outcome: Outcome = message[1]
                return outcome

    def _outcome(self, running: _Process, status: str, error: BaseException | None) -> Outcome:
        return Outcome(key=running.item.job.key, status=status, error=error, output=None,
                       seconds=round(time.monotonic() - running.started, 3), worker=running.slot.name)

    def _died(self, running: _Process) -> Outcome:
        running.process.join(timeout=self.grace_s)
        code = running.process.exitcode
        if running.stopping:
            return self._outcome(running, "stopped", None)
        how = (f"was killed by {signal.Signals(-code).name}" if code is not None and code < 0
               else f"exited with status {code}")
        oom = " (the out-of-memory killer?)" if code == -signal.SIGKILL else ""
        log.error("job.process_died", job=running.item.job.key[:16], pid=running.process.pid, exitcode=code)
        return self._outcome(running, "failed", JobCrashed(
            f"the job's process {how}{oom} before it finished", path=running.item.job.track_path,
            hint="look for the out-of-memory killer in the journal (dmesg); it is retried, and `afx retry` "
                 "requeues it once it has failed"))

    def _overran(self, running: _Process, limit: float) -> Outcome:
        self._end(running)
        log.error("job.timeout", job=running.item.job.key[:16], limit_s=round(limit, 1))
        job = running.item.job
        size = (f"{running.total or '?'} frames of {job.settings.get('width')}x{job.settings.get('height')}"
                if job.kind == "render" else "its training")
        return self._outcome(running, "failed", JobTimeout(
            f"{job.label()} ran past its wall-clock limit of {limit:.0f} s ({size}) and was stopped",
            path=job.track_path, key="executor",
            hint="lower the spec's [render] size or fps (or training size), or raise [executor] job_base_s, "
                 "render_pixels_per_s / train_pixels_per_s or max_job_s in afx.toml"))

    def _end(self, running: _Process) -> None:
        """SIGTERM, then SIGKILL after the grace period."""
        if running.process.is_alive():
            running.process.terminate()
            running.process.join(timeout=self.grace_s)
        if running.process.is_alive():
            running.process.kill()
            running.process.join()

    def poll(self) -> list[Outcome]:
        with self._lock:
            done, self._outcomes = self._outcomes, []
        return done

    def progress(self) -> dict[str, tuple[int | None, int | None]]:
        with self._lock:
            return {r.item.job.key: (r.done, r.total) for r in self._running.values()}

    def running(self) -> list[str]:
        with self._lock:
            return [r.item.job.key for r in self._running.values()]

    def stop(self, key: str | None = None) -> None:
        with self._lock:
            targets = [r for r in self._running.values() if key is None or r.item.job.key == key]
        for r in targets:
            r.stopping = True
            if r.process.is_alive():
                r.process.terminate()  # the child's handler sets its stop flag

    def shutdown(self, *, timeout: float) -> list[str]:
        self.stop()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running():
                return []
            time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
        return self.running()

    def kill(self) -> None:
        """SIGKILL every job's process (a stop that did not come in time); their outcomes say stopped."""
        with self._lock:
            targets = list(self._running.values())
        for r in targets:
            r.stopping = True
            r.process.kill()

    def placement(self) -> dict[str, str]:
        return {}  # the slot's device, recorded when the job was claimed, is where it runs

    def describe(self) -> dict[str, Any]:
        return {"kind": "local", "slots": [slot.name for slot in self.slots]}

    def close(self) -> None:
        pass  # each job's process ended with it


def _local(config: ServiceConfig, devices: list[str], *, wake: Callable[[], None]) -> Executor:
    return LocalExecutor(devices, wake=wake)


def _ray(config: ServiceConfig, devices: list[str], *, wake: Callable[[], None]) -> Executor:
    try:
        from daemon.service.ray_executor import RayExecutor
    except ImportError as e:
        raise ConfigError(f"[executor] kind = \"ray\" needs Ray, which is not installed ({e})", key="executor.kind",
                          hint="pip install 'audio-feature-explorer[ray]' (scripts/bootstrap.sh installs it), "
                               "or use kind = \"local\"") from e
    return RayExecutor(config, wake=wake)


#: `[executor] kind` → the executor's factory; each engine is imported only when chosen
EXECUTORS: dict[str, Callable[..., Executor]] = {"local": _local, "ray": _ray}


def make_executor(config: ServiceConfig, devices: list[str], *, wake: Callable[[], None]) -> Executor:
    kind = config.executor.kind
    if kind not in EXECUTORS:
        raise ConfigError(f"unknown executor kind {kind!r}", key="executor.kind",
                          hint=f"one of: {', '.join(EXECUTORS)}")
    return EXECUTORS[kind](config, devices, wake=wake)
