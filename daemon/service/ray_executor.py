"""`[executor] kind = "ray"`: the service's jobs on a Ray cluster; the service on the head stays the only
writer of the ledger (docs/SCALE.md).

Ray moves the jobs, starts and watches the worker processes, notices dead nodes and carries bytes through
its object store. What afx decides stays here, on the head, beside the ledger: which node has room (the
cluster's free slots, counted from each node's resources, so the head never submits more jobs than fit),
which warm actor already holds a job's style, how long a job may take, and what a lost node means.

- A render runs in a warm `JobActor` pinned to one node: the actor outlives its jobs and keeps the
  pipeline imported, the feature extractors compiled and the last `warm_styles` styles loaded, so a second
  render of a style pays no loading. A training runs in an actor of its own (a fresh process, as a local
  child, freed when it ends) holding `train_gpus` / `train_cpus`.
- Progress and stop requests travel as actor calls (`progress`, `stop`), on a second thread of the actor:
  a stopped render aborts and leaves nothing, a stopped training checkpoints.
- `storage = "shared"`: every node sees the service's folders at the same paths and writes the render
  store and library itself. `storage = "transfer"`: the track's bytes (and the style, reference tracks)
  travel in, the MP4, report or style folder come back, and the head checks and publishes them through
  daemon.atomic. A training's checkpoint always travels (the state folder is the head's own disk).
- Ray retries nothing (`max_restarts = 0`, `max_task_retries = 0`): a lost node's job comes back to the
  loop as `NodeLost`, and the ledger's retry rules decide, so each job is done exactly once.

This module is imported only when kind = "ray" (`executor.make_executor`); nothing else imports ray.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import secrets
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

import daemon

from daemon.atomic import atomic_path, atomic_replace_dir, atomic_write_bytes
from daemon.config import ExecutorSettings, ServiceConfig
from daemon.errors import (
    ConfigError,
    JobCrashed,
    JobTimeout,
    NodeLost,
    NodeUnfit,
    StorageError,
)
from daemon.encode import verify_video
from daemon.library import Library
from daemon.logs import configure_logging, get_logger
from daemon.report import Report
from daemon.naming import report_path, store_video
from daemon.service.executor import (
    JobControl,
    Outcome,
    Slot,
    StyleCache,
    WorkItem,
    _portable,
    run_job,
    time_limit,
)

log = get_logger("afx.ray")

POLL_S = 0.2  # how often the head looks at running jobs
NODES_S = 2.0  # how often it re-reads the cluster's nodes
STOP_GRACE_S = 10.0  # after a stop request (a timeout), then the actor is killed
CHECKPOINT = "checkpoint"  # the parcel entry of a training's checkpoint file
WORKER_DIR_ENV = "AFX_WORKER_DIR"  # transfer: where a node keeps its feature cache, models and scratch

Parcel = dict[str, bytes]  # files by relative name: what travels through the object store


# ── connecting ───────────────────────────────────────────────────────────────────────────────────────────

def connect(settings: ExecutorSettings) -> bool:
    """Join (or, for address = "local", start) the cluster named by `[executor] address`; False when this
    process had joined one already (then it is left as it is at close)."""
    address = settings.address.strip()
    if not (address in ("local", "auto") or address.startswith("ray://") or ":" in address):
        raise ConfigError(f"unknown Ray address {address!r}", key="executor.address",
                          hint='"local", "auto", "ray://HEAD:10001" or "HEAD:6379"')
    if ray.is_initialized():
        return False
    quiet: dict[str, Any] = {"log_to_driver": False, "logging_level": "warning"}
    # ray.init installs its own SIGTERM handler (sys.exit); the service's handlers only set flags, and a
    # stop must ask the remote jobs to stop first (a training checkpoints), so they are put back after it
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    try:
        if address == "local":
            ray.init(num_cpus=settings.local_cpus or None, include_dashboard=False, **quiet)
        else:
            ray.init(address=address, **quiet)
        return True
    except Exception as e:  # Ray raises ConnectionError, RuntimeError, ValueError …
        raise ConfigError(f"cannot join the Ray cluster at {address!r} ({str(e).splitlines()[0][:300]})",
                          key="executor.address",
                          hint="start it with `ray start --head` (docs/SCALE.md), or fix [executor] address") from e
    finally:
        if threading.current_thread() is threading.main_thread():
            for sig, handler in handlers.items():
                if handler is not None:
                    signal.signal(sig, handler)


def _probe() -> dict[str, Any]:
    """What a node can run; sent to the node by value, so it works where afx is not installed."""
    import importlib
    import shutil as sh
    import socket as so
    import sys

    found: dict[str, Any] = {"host": so.gethostname(), "python": sys.version.split()[0],
                             "ffmpeg": sh.which("ffmpeg"), "ffprobe": sh.which("ffprobe")}
    try:
        found["afx"] = importlib.import_module("daemon").__version__
        importlib.import_module("daemon.service.ray_executor")
    except Exception as e:  # noqa: BLE001 — whatever stops the import is what the user must fix
        found["afx"] = None
        found["afx_error"] = f"{type(e).__name__}: {e}"
    return found


def unfit_reason(found: dict[str, Any], *, version: str) -> str | None:
    """Why a probed node cannot run afx jobs, or None."""
    missing = [tool for tool in ("ffmpeg", "ffprobe") if not found.get(tool)]
    if found.get("afx") is None:
        return f"afx is not installed in its Python ({found.get('afx_error', 'no module named daemon')})"
    if found["afx"] != version:
        return f"it has afx {found['afx']}, the head {version}"
    if missing:
        return f"{' and '.join(missing)} not found on its PATH"
    return None


# ── the worker side ──────────────────────────────────────────────────────────────────────────────────────

@dataclass(frozen=True)
class RemoteResult:
    """What a job sends back: its outcome, the files it made (transfer; a training's checkpoint), where."""

    outcome: Outcome
    files: Parcel
    where: str  # host and device the job ran on


def worker_dir() -> Path:
    return Path(os.environ.get(WORKER_DIR_ENV) or Path(tempfile.gettempdir()) / "afx-ray")


def local_item(item: WorkItem, parcel: Parcel, *, scratch: Path, storage: str) -> WorkItem:
    """The job as this node runs it: its checkpoint (and, for transfer, every input) in `scratch`."""
    config = item.config
    folders = replace(config.folders, state=scratch / "state")
    if storage == "transfer":
        node = worker_dir()
        folders = replace(folders, inbox=scratch / "inbox", library=scratch / "library",
                          renders=scratch / "renders", cache=node / "cache", models=node / "models")
    for name, data in parcel.items():
        path = scratch / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    local = replace(config, folders=folders)
    if storage != "transfer":
        return replace(item, config=local)
    tracks = sorted((scratch / "inbox").rglob("*")) if (scratch / "inbox").is_dir() else []
    track = next((t for t in tracks if t.is_file() and t.parent == scratch / "inbox"), None)
    references = tuple(p for p in tracks if p.is_file() and p.parent != scratch / "inbox")
    return replace(item, config=local, track_path=track if item.job.kind == "render" else None,
                   reference_tracks=references if item.job.kind == "train" else ())


def checkpoint_folder(config: ServiceConfig, style_id: str) -> Path:
    return config.path("state") / "checkpoints" / style_id


def read_files(root: Path, prefix: str) -> Parcel:
    return {f"{prefix}/{p.relative_to(root)}": p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def results(item: WorkItem, local: WorkItem, outcome: Outcome, *, storage: str) -> Parcel:
    """The files a job sends back: its checkpoint (a stopped training), and for transfer what it made."""
    files: Parcel = {}
    job = item.job
    if job.kind == "train" and outcome.status == "stopped":
        folder = checkpoint_folder(local.config, job.style_id)
        files.update(read_files(folder, CHECKPOINT) if folder.is_dir() else {})
    if storage == "transfer" and outcome.status == "done":
        if job.kind == "render":
            video = store_video(local.config.path("renders"), job.key)
            files["video.mp4"] = video.read_bytes()
            files["report.json"] = report_path(video).read_bytes()
        else:

            files.update(read_files(Library(local.config.path("library")).folder_for(job.style_name, job.style_id),
                                    "style"))
    return files


class JobActor:
    """One warm worker process on one node. `run` takes one job at a time; `progress` and `stop` answer
    on a second thread (the actor's max_concurrency is 2) while it runs."""

    def __init__(self, warm_styles: int, node: str) -> None:

        configure_logging(json_lines=True, level="info")
        self.node = node  # the node's name as the head shows it
        self.styles = StyleCache(warm_styles)
        self.control: JobControl | None = None
        self.jobs = 0

    def device(self) -> str:
        import torch

        return "cuda:0" if ray.get_gpu_ids() and torch.cuda.is_available() else "cpu"

    def where(self) -> str:
        return f"{self.device()}@{self.node}"

    def run(self, item: WorkItem, parcel: Parcel, storage: str) -> RemoteResult:
        control = self.control = JobControl()
        self.jobs += 1
        scratch = Path(tempfile.mkdtemp(prefix="afx-job-", dir=_scratch_root()))
        try:
            local = local_item(item, parcel, scratch=scratch, storage=storage)
            outcome = run_job(local, device=self.device(), control=control, worker=self.where(),
                              styles=self.styles)
            files = results(item, local, outcome, storage=storage)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return RemoteResult(outcome=_portable(outcome), files=files, where=self.where())

    def progress(self) -> tuple[int | None, int | None]:
        control = self.control
        return (control.done, control.total) if control is not None else (None, None)

    def stop(self) -> None:
        if self.control is not None:
            self.control.stop()

    def warm(self) -> dict[str, Any]:
        """What this actor holds: for tests and `afx bench`."""
        return {"jobs": self.jobs, "style_hits": self.styles.hits, "styles": self.styles.names(), "pid": os.getpid()}


def _scratch_root() -> Path:
    root = worker_dir() / "jobs"
    root.mkdir(parents=True, exist_ok=True)
    return root


def train_units(settings: ExecutorSettings, *, gpu: bool) -> int:
    """How many render-sized units a training takes on a node (with or without GPUs)."""
    needs = []
    if gpu and settings.render_gpus > 0:
        needs.append(math.ceil(settings.train_gpus / settings.render_gpus - 1e-9))
    if settings.render_cpus > 0:
        needs.append(math.ceil(settings.train_cpus / settings.render_cpus - 1e-9))
    return max([1, *needs])


# ── the head side ────────────────────────────────────────────────────────────────────────────────────────

@dataclass
class Node:
    """One cluster node as the head counts it, in render-sized units."""

    node_id: str
    ip: str
    units: int  # how many renders fit at once
    train_units: int  # how many of those a training takes
    gpu: bool
    host: str = "?"
    name: str = ""  # `ray start --node-name`; Ray's default is the node's address
    fit: bool | None = None  # None: probe pending
    problem: str | None = None
    probe: Any = None  # the probe's ObjectRef while it runs

    def label(self) -> str:
        if self.name and self.name != self.ip:
            return f"{self.name} ({self.host}, {self.ip})"
        return f"{self.host} ({self.ip}, node {self.node_id[:8]})"


@dataclass
class Actor:
    handle: Any
    node_id: str
    kind: str  # render | train
    key: str | None = None  # the job it runs
    last_used: float = field(default_factory=time.monotonic)
    styles: list[str] = field(default_factory=list)  # style ids it rendered, most recent last


@dataclass
class Running:
    item: WorkItem
    parcel: Parcel  # its input files, until it is placed (then the object store holds them)
    submitted: float = field(default_factory=time.monotonic)
    actor: Actor | None = None  # None while it waits for room
    ref: Any = None
    started: float | None = None
    done: int | None = None
    total: int | None = None
    where: str | None = None
    progress_ref: Any = None
    stop_at: float | None = None  # when a requested stop turns into a kill
    stopping: bool = False
    timeout: JobTimeout | None = None
    dead: bool = False  # its actor is gone already


class RayExecutor:
    """The Executor (daemon.service.executor) on a Ray cluster. A monitor thread places jobs, follows them
    and turns every ending into an Outcome; the loop's calls only read and set state under a lock."""

    def __init__(self, config: ServiceConfig, *, wake: Callable[[], None] = lambda: None,
                 limit: Callable[..., float] = time_limit, grace_s: float = STOP_GRACE_S) -> None:

        self.config = config
        self.settings = config.executor
        self.storage = config.executor.storage
        self.wake = wake
        self.limit = limit
        self.grace_s = grace_s
        self.version = daemon.__version__
        self._joined = connect(self.settings)
        self._remote_actor = ray.remote(JobActor)
        self._probe = ray.remote(num_cpus=0, max_retries=0)(_probe)
        self._lock = threading.Lock()
        self._nodes: dict[str, Node] = {}
        self._actors: list[Actor] = []
        self._running: dict[str, Running] = {}
        self._outcomes: list[Outcome] = []
        self._slot_counter = 0
        self._closed = threading.Event()
        self._refresh_nodes()
        self._thread = threading.Thread(target=self._monitor, daemon=True, name="afx-ray-monitor")
        self._thread.start()
        log.info("ray.connected", address=self.settings.address, storage=self.storage,
                 nodes=[n.label() for n in self._nodes.values()])

    # ── the Executor interface ───────────────────────────────────────────────────────────────────────────

    def idle(self) -> list[Slot]:
        with self._lock:
            if any(r.actor is None for r in self._running.values()):
                return []  # one job already waits for room: backpressure
            free = sum(max(0, n.units - self._busy_units(n.node_id)) for n in self._nodes.values() if n.fit)
            if self.settings.max_in_flight:
                free = min(free, self.settings.max_in_flight - len(self._running))
            slots = []
            for _ in range(max(0, free)):
                self._slot_counter += 1
                slots.append(Slot(name=f"ray#{self._slot_counter}", device="ray", host="ray"))
            return slots

    def submit(self, item: WorkItem, *, slot: Slot) -> None:
        parcel = self._parcel(item)  # read here, in the loop: a missing input fails the claim, not a node
        with self._lock:
            if item.job.key in self._running:
                raise RuntimeError(f"job {item.job.key[:16]} is running already")
            running = Running(item=item, parcel=parcel)
            self._running[item.job.key] = running
            self._place(running)

    def poll(self) -> list[Outcome]:
        with self._lock:
            done, self._outcomes = self._outcomes, []
        return done

    def progress(self) -> dict[str, tuple[int | None, int | None]]:
        with self._lock:
            return {key: (r.done, r.total) for key, r in self._running.items()}

    def placement(self) -> dict[str, str]:
        with self._lock:
            return {key: r.where for key, r in self._running.items() if r.where}

    def running(self) -> list[str]:
        with self._lock:
            return list(self._running)

    def stop(self, key: str | None = None) -> None:
        with self._lock:
            targets = [r for k, r in self._running.items() if key is None or k == key]
            for r in targets:
                self._request_stop(r)

    def shutdown(self, *, timeout: float) -> list[str]:
        self.stop()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.running():
            time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
        return self.running()

    def kill(self) -> None:
        with self._lock:
            for r in list(self._running.values()):
                r.stopping = True
                if r.actor is not None:
                    ray.kill(r.actor.handle, no_restart=True)
                else:
                    self._end(r, self._outcome(r, "stopped", None))

    def describe(self) -> dict[str, Any]:
        with self._lock:
            return {"kind": "ray", "address": self.settings.address, "storage": self.storage,
                    "nodes": [{"node": n.label(), "units": n.units, "gpu": n.gpu, "fit": n.fit,
                               "problem": n.problem, "busy": self._busy_units(n.node_id)}
                              for n in self._nodes.values()]}

    def close(self) -> None:
        """Stop following jobs and leave the cluster (a `local` cluster stops with it)."""
        self._closed.set()
        self._thread.join(timeout=5.0)
        with self._lock:
            for actor in self._actors:
                ray.kill(actor.handle, no_restart=True)
            self._actors = []
        if self._joined:
            ray.shutdown()

    # ── placing jobs (under the lock) ────────────────────────────────────────────────────────────────────

    def _busy_units(self, node_id: str) -> int:
        node = self._nodes.get(node_id)
        busy = 0
        for actor in self._actors:
            if actor.node_id == node_id:
                busy += (node.train_units if node else 1) if actor.kind == "train" else int(actor.key is not None)
        return busy

    def _place(self, running: Running) -> bool:
        """Give a job an actor on a node with room; False when none has room now (it waits)."""
        job = running.item.job
        nodes = [n for n in self._nodes.values() if n.fit]
        actor: Actor | None = None
        if job.kind == "render":
            idle = [a for a in self._actors if a.kind == "render" and a.key is None and a.node_id in self._fit_ids()]
            warm = [a for a in idle if job.style_id in a.styles]
            if warm or idle:
                actor = max(warm or idle, key=lambda a: a.last_used)
            else:
                room = [n for n in nodes if self._actor_count(n.node_id) < n.units]
                if room:
                    node = max(room, key=lambda n: n.units - self._busy_units(n.node_id))
                    actor = self._new_actor(node, "render")
        else:
            room = [n for n in nodes if n.units - self._busy_units(n.node_id) >= n.train_units]
            if room:
                node = max(room, key=lambda n: n.units - self._busy_units(n.node_id))
                self._make_room(node)
                actor = self._new_actor(node, "train")
        if actor is None:
            return False
        actor.key, actor.last_used = job.key, time.monotonic()
        running.actor, running.started = actor, time.monotonic()
        running.where = f"{'gpu' if self._nodes[actor.node_id].gpu else 'cpu'}@{self._nodes[actor.node_id].label()}"
        running.ref = actor.handle.run.remote(running.item, running.parcel, self.storage)
        running.parcel = {}  # the object store holds it now
        log.info("ray.submitted", job=job.key[:16], kind=job.kind, node=self._nodes[actor.node_id].label(),
                 warm=job.style_id in actor.styles)
        return True

    def _never_fits(self, running: Running) -> bool:
        """A training no fit node could ever hold (every fit node is too small for it)."""
        fit = [n for n in self._nodes.values() if n.fit]
        return running.item.job.kind == "train" and bool(fit) and all(n.train_units > n.units for n in fit)

    def _fit_ids(self) -> set[str]:
        return {n.node_id for n in self._nodes.values() if n.fit}

    def _actor_count(self, node_id: str) -> int:
        node = self._nodes[node_id]
        return sum(node.train_units if a.kind == "train" else 1 for a in self._actors if a.node_id == node_id)

    def _make_room(self, node: Node) -> None:
        """A training needs the resources idle render actors hold on its node: end the least recent ones."""
        excess = self._actor_count(node.node_id) + node.train_units - node.units
        idle = sorted((a for a in self._actors if a.node_id == node.node_id and a.kind == "render" and a.key is None),
                      key=lambda a: a.last_used)
        for actor in idle[:max(0, excess)]:
            self._actors.remove(actor)
            ray.kill(actor.handle, no_restart=True)

    def _new_actor(self, node: Node, kind: str) -> Actor:
        s = self.settings
        gpus = (s.render_gpus if kind == "render" else s.train_gpus) if node.gpu else 0.0
        cpus = s.render_cpus if kind == "render" else s.train_cpus
        handle = self._remote_actor.options(
            num_cpus=cpus, num_gpus=gpus, max_concurrency=2, max_restarts=0, max_task_retries=0,
            scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=node.node_id, soft=False),
            name=f"afx-{kind}-{secrets.token_hex(4)}").remote(s.warm_styles if kind == "render" else 0, node.label())
        actor = Actor(handle=handle, node_id=node.node_id, kind=kind)
        self._actors.append(actor)
        return actor

    def _parcel(self, item: WorkItem) -> Parcel:
        """The files that travel with a job: its checkpoint; for transfer its track, style or references."""
        job, config = item.job, item.config
        parcel: Parcel = {}
        if job.kind == "train":
            folder = checkpoint_folder(config, job.style_id)
            parcel.update({f"state/checkpoints/{job.style_id}/{p.relative_to(folder)}": p.read_bytes()
                           for p in sorted(folder.rglob("*")) if p.is_file()} if folder.is_dir() else {})
        if self.storage != "transfer":
            return parcel

        if job.kind == "render" and item.track_path is not None:
            parcel[f"inbox/{Path(item.track_path).name}"] = Path(item.track_path).read_bytes()
            library = Library(config.path("library"))
            folder = library.folder_for(job.style_name, job.style_id)
            rel = folder.relative_to(library.root)
            parcel.update({f"library/{rel}/{p.relative_to(folder)}": p.read_bytes()
                           for p in sorted(folder.rglob("*")) if p.is_file()})
        for i, track in enumerate(item.reference_tracks):
            try:
                parcel[f"inbox/ref{i}/{Path(track).name}"] = Path(track).read_bytes()
            except OSError:
                continue  # an unreadable reference is skipped by the training, as it is locally
        return parcel

    # ── following jobs (the monitor thread) ──────────────────────────────────────────────────────────────

    def _monitor(self) -> None:
        next_nodes = time.monotonic() + NODES_S
        while not self._closed.is_set():
            try:
                if time.monotonic() >= next_nodes:
                    next_nodes = time.monotonic() + NODES_S
                    self._refresh_nodes()
                self._collect()
                with self._lock:
                    for running in list(self._running.values()):
                        self._follow(running)
            except Exception as e:  # the monitor must outlive a flaky GCS call
                log.error("ray.monitor_error", error=str(e), exc_info=e)
            self._closed.wait(POLL_S)

    def _refresh_nodes(self) -> None:
        alive = {n["NodeID"]: n for n in ray.nodes() if n.get("Alive")}  # type: ignore[no-untyped-call]
        with self._lock:
            for node_id in list(self._nodes):
                if node_id not in alive:
                    self._lost_node(self._nodes.pop(node_id))
            for node_id, info in alive.items():
                if node_id not in self._nodes:
                    self._nodes[node_id] = self._node(node_id, info)
            probes = {n.probe: n for n in self._nodes.values() if n.probe is not None}
        if probes:
            ready, _ = ray.wait(list(probes), num_returns=len(probes), timeout=0)
            for ref in ready:
                self._probed(probes[ref], ref)

    def _node(self, node_id: str, info: dict[str, Any]) -> Node:
        s = self.settings
        resources = info.get("Resources", {})
        cpus, gpus = float(resources.get("CPU", 0)), float(resources.get("GPU", 0))
        gpu = gpus > 0 and s.render_gpus > 0

        def fits(gpu_need: float, cpu_need: float) -> int:
            counts = [math.floor(gpus / gpu_need + 1e-9)] if gpu and gpu_need > 0 else []
            counts += [math.floor(cpus / cpu_need + 1e-9)] if cpu_need > 0 else []
            return min(counts) if counts else 1

        units = fits(s.render_gpus, s.render_cpus)
        node = Node(node_id=node_id, ip=str(info.get("NodeManagerAddress", "?")), units=units,
                    train_units=train_units(s, gpu=gpu), gpu=gpu, host=str(info.get("NodeManagerHostname", "?")),
                    name=str(info.get("NodeName", "")))
        node.probe = self._probe.options(
            scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=node_id, soft=False)).remote()
        if units == 0:
            node.fit, node.probe = False, None
            node.problem = f"its {cpus:g} CPUs / {gpus:g} GPUs do not fit one render ([executor] render_* in afx.toml)"
            log.error("ray.node_unfit", node=node.label(), error=node.problem)
        return node

    def _probed(self, node: Node, ref: Any) -> None:
        try:
            found = ray.get(ref)
            reason = unfit_reason(found, version=self.version)
        except Exception as e:  # noqa: BLE001 — a node whose workers cannot even start
            found, reason = {}, f"its Ray worker could not run the check ({str(e).splitlines()[0][:200]})"
        with self._lock:
            node.probe, node.host = None, str(found.get("host", node.host))
            node.fit, node.problem = reason is None, reason
        if reason is None:
            log.info("ray.node_ready", node=node.label(), units=node.units, gpu=node.gpu)
            self.wake()
        else:
            error = NodeUnfit(f"cluster node {node.label()} cannot run afx jobs: {reason}",
                              key="executor", hint="install ffmpeg and this afx version on it "
                              "(scripts/bootstrap.sh), then restart its `ray start`; no jobs go there until then")
            log.error("ray.node_unfit", node=node.label(), error=error.user_line())

    def _lost_node(self, node: Node) -> None:
        """A node left the cluster: its actors are gone; its jobs fail as NodeLost (see _collect)."""
        log.warning("ray.node_lost", node=node.label(),
                    jobs=[a.key[:16] for a in self._actors if a.node_id == node.node_id and a.key])
        self._actors = [a for a in self._actors if a.node_id != node.node_id or a.key is not None]

    def _collect(self) -> None:
        with self._lock:
            refs = {r.ref: r for r in self._running.values() if r.ref is not None}
        if not refs:
            return
        ready, _ = ray.wait(list(refs), num_returns=len(refs), timeout=0)
        for ref in ready:
            running = refs[ref]
            outcome = self._result(running, ref)
            with self._lock:
                self._end(running, outcome)

    def _result(self, running: Running, ref: Any) -> Outcome:
        """Turn what came back into an Outcome; transfer outputs are checked and published here."""
        try:
            result: RemoteResult = ray.get(ref)
        except Exception as e:  # noqa: BLE001 — Ray's errors: a dead actor, node or worker
            running.dead = True  # nothing to kill: ray.kill on a lost node's actor waits for its health check
            return self._lost(running, e)
        running.where = result.where
        outcome = result.outcome
        try:
            self._receive(running.item, result)
        except Exception as e:  # noqa: BLE001 — a file that came back damaged, a full disk on the head
            log.error("ray.receive_failed", job=running.item.job.key[:16], error=str(e))
            error = e if hasattr(e, "user_line") else StorageError(f"receiving the job's files failed ({e})",
                                                                   hint="it is retried")
            return replace(outcome, status="failed", error=error, output=None)
        if outcome.status == "done" and self.storage == "transfer":
            job, config = running.item.job, running.item.config

            output = (store_video(config.path("renders"), job.key) if job.kind == "render"
                      else Library(config.path("library")).folder_for(job.style_name, job.style_id))
            outcome = replace(outcome, output=str(output))
        return outcome

    def _lost(self, running: Running, e: BaseException) -> Outcome:
        if running.timeout is not None:
            return self._outcome(running, "failed", running.timeout)
        if running.stopping:
            return self._outcome(running, "stopped", None)
        node = self._nodes.get(running.actor.node_id) if running.actor else None
        where = node.label() if node else "a node that has left the cluster"
        cause = str(e).splitlines()[0][:300]
        log.error("ray.job_lost", job=running.item.job.key[:16], node=where, error=cause)
        error_type = JobCrashed if node is not None else NodeLost  # a node still listed: only its worker died
        return self._outcome(running, "failed", error_type(
            f"the worker running this job on {where} died before it finished ({cause})",
            path=running.item.job.track_path,
            hint="it is retried on a node with room; if a node keeps dying, look at its memory and `ray status`"))

    def _receive(self, item: WorkItem, result: RemoteResult) -> None:
        """Write what came back: a checkpoint (always), and for transfer the video + report or the style
        folder, each checked first and published atomically."""
        job, config, files = item.job, item.config, result.files
        checkpoint = {k.removeprefix(CHECKPOINT + "/"): v for k, v in files.items() if k.startswith(CHECKPOINT + "/")}
        for name, data in checkpoint.items():
            atomic_write_bytes(checkpoint_folder(config, job.style_id) / name, data)
        if result.outcome.status == "done" and job.kind == "train":
            shutil.rmtree(checkpoint_folder(config, job.style_id), ignore_errors=True)
        if self.storage != "transfer" or result.outcome.status != "done":
            return
        if job.kind == "render":
            self._receive_render(item, files)
        else:
            self._receive_style(item, files)

    def _receive_render(self, item: WorkItem, files: Parcel) -> None:
        """Check the report (the schema, strictly) and the video (ffprobe: streams, size, frames) that came
        back, then publish both into the render store, the video first: the loop publishes from there."""


        job = item.job
        video = store_video(item.config.path("renders"), job.key)
        report = Report.from_dict(json.loads(files["report.json"]), where=f"the report of job {job.key[:16]}")
        with atomic_path(video) as scratch:
            scratch.write_bytes(files["video.mp4"])
            verify_video(scratch, width=int(job.settings["width"]), height=int(job.settings["height"]),
                         fps=int(job.settings["fps"]), frames=int(report.video.frames))
        dataclasses.replace(report, video=dataclasses.replace(report.video, path=str(video))).write(report_path(video))

    def _receive_style(self, item: WorkItem, files: Parcel) -> None:
        from daemon.style import Style

        job = item.job
        folder = Library(item.config.path("library")).folder_for(job.style_name, job.style_id)
        with atomic_replace_dir(folder) as scratch:
            for name, data in files.items():
                if name.startswith("style/"):
                    path = scratch / name.removeprefix("style/")
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_bytes(data)
            Style.load(scratch)  # a damaged folder never replaces a good one

    def _follow(self, running: Running) -> None:
        """Under the lock: place a waiting job, ask for progress, enforce the time limit and stops."""
        now = time.monotonic()
        if running.actor is None:
            if not running.stopping and not self._place(running) and self._never_fits(running):
                self._end(running, self._outcome(running, "failed", ConfigError(
                    f"no node of the cluster can hold a {running.item.job.kind} "
                    f"({self.settings.train_gpus:g} GPUs / {self.settings.train_cpus:g} CPUs each)",
                    key="executor.train_gpus", hint="lower [executor] train_gpus / train_cpus, or add a larger node")))
            return
        if running.progress_ref is not None:
            ready, _ = ray.wait([running.progress_ref], timeout=0)
            if ready:
                try:
                    running.done, running.total = ray.get(running.progress_ref)
                except ray.exceptions.RayError as e:  # the actor is dying: _collect reports it
                    log.debug("ray.progress_lost", job=running.item.job.key[:16], error=str(e))
                running.progress_ref = None
        if running.progress_ref is None and running.ref is not None:
            running.progress_ref = running.actor.handle.progress.remote()
        if running.stop_at is not None and now >= running.stop_at:
            ray.kill(running.actor.handle, no_restart=True)
            running.stop_at = None
        limit = self.limit(running.item, frames=running.total if running.item.job.kind == "render" else None)
        if running.timeout is None and running.started is not None and now - running.started > limit:
            job = running.item.job
            running.timeout = JobTimeout(
                f"{job.label()} ran past its wall-clock limit of {limit:.0f} s and was stopped", path=job.track_path,
                key="executor", hint="lower the spec's [render] size or fps (or training size), or raise "
                                     "[executor] job_base_s, render_pixels_per_s / train_pixels_per_s or max_job_s")
            log.error("job.timeout", job=job.key[:16], limit_s=round(limit, 1))
            self._request_stop(running)

    def _request_stop(self, running: Running) -> None:
        running.stopping = True
        if running.actor is None:
            self._end(running, self._outcome(running, "stopped", None))
            return
        running.actor.handle.stop.remote()
        if running.stop_at is None:
            running.stop_at = time.monotonic() + self.grace_s

    def _end(self, running: Running, outcome: Outcome) -> None:
        """Under the lock: the job is over; its actor goes back to the pool (a render's) or away."""
        job = running.item.job
        if self._running.get(job.key) is not running:
            return
        del self._running[job.key]
        actor = running.actor
        if actor is not None:
            broken = isinstance(outcome.error, (JobCrashed, JobTimeout)) or running.timeout is not None
            if actor.kind == "train" or broken or running.stop_at is not None or running.dead:
                if actor in self._actors:
                    self._actors.remove(actor)
                if not running.dead:
                    ray.kill(actor.handle, no_restart=True)
            else:
                actor.key, actor.last_used = None, time.monotonic()
                actor.styles = [s for s in actor.styles if s != job.style_id][-max(1, self.settings.warm_styles):]
                actor.styles.append(job.style_id)
        if running.timeout is not None and outcome.status != "failed":
            outcome = self._outcome(running, "failed", running.timeout)
        self._outcomes.append(outcome)
        self.wake()

    def _outcome(self, running: Running, status: str, error: BaseException | None) -> Outcome:
        return Outcome(key=running.item.job.key, status=status, error=error, output=None,
                       seconds=round(time.monotonic() - running.submitted, 3), worker=running.where or "ray")

