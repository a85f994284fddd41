"""`afx run`: the loop — scan → plan → claim → execute → publish.

The loop owns the ledger writes; workers (see `executor`) only run pipeline stages and report outcomes.
Signal handlers only set flags (and wake the loop through a pipe): SIGTERM/SIGINT stop taking jobs, ask the
running ones to stop (a render aborts and is requeued, a training checkpoints) and exit 0 within
`stop_timeout_s`; SIGHUP reloads afx.toml. On start, jobs of a crashed or killed run go back to the queue
and its scratch files are removed. systemd is told READY / WATCHDOG / STATUS / STOPPING when it asks.
"""

from __future__ import annotations

import fcntl
import json
import os
import select
import shutil
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

from daemon.atomic import HOST, SCRATCH_MARK, atomic_link, scratch_is_ours, scratch_owner
from daemon.audio.decode import file_sha256
from daemon.config import ServiceConfig, load_config
from daemon.errors import (AfxError, AudioError, ConfigError, JobCrashed, LedgerError, StorageError,
                           TrackRemoved, storage_errors)
from daemon.library import STYLE_FILE, Library
from daemon.logs import configure_logging, get_logger
from daemon.naming import error_report_path, report_path, store_video
from daemon.report import FailedJob, FailureReport, now_iso, published_report, write_json_atomic
from daemon.service.executor import Executor, Outcome, WorkItem, make_executor, worker_devices
from daemon.service.ledger import Job, Ledger
from daemon.service.notify import Notifier
from daemon.service.planner import (Plan, Planner, PreviewSettings, ProblemBook, Publication, SpecCatalog,
                                    held_out_reason, style_report_path)
from daemon.service.status import HEARTBEAT_S, ledger_path, pid_alive
from daemon.service.upgrade import upgrade_state
from daemon.spec import StyleSpec
from daemon.service.watch import FolderWatcher, ScanResult, SettleTracker
from daemon.tracks import inbox_references  # the references a training samples, as `afx train` chooses them

log = get_logger("afx.service")
T = TypeVar("T")

LOCK_FILE = "service.lock"
PROGRESS_S = 1.0  # how often running jobs' progress is written (and leases renewed)
DISPATCH_S = 2.0  # how often idle workers look for work when nothing woke them (back-offs, `afx retry`)
STOP_MARGIN_S = 3.0  # of stop_timeout_s, kept for publishing and exiting after workers stop
SCRATCH_AGE_S = 600.0  # scratch files without an owner pid are removed once this old
RESTART_SETTINGS = ("device", "workers", "embeddings", "web")  # read once at start, not on SIGHUP
MAX_LOOP_FAILURES = 30  # consecutive failures of the loop's own duties before the service gives up


class Waker:
    """A self-pipe: signals (via set_wakeup_fd), watchdog events and finished jobs interrupt the loop's sleep."""

    def __init__(self) -> None:
        self.read_fd, self.write_fd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    def poke(self) -> None:
        try:
            os.write(self.write_fd, b"\0")
        except BlockingIOError:
            pass  # already awake

    def wait(self, timeout: float) -> None:
        ready, _, _ = select.select([self.read_fd], [], [], max(0.0, timeout))
        if ready:
            try:
                while os.read(self.read_fd, 4096):
                    pass
            except BlockingIOError:
                pass

    def close(self) -> None:
        os.close(self.read_fd)
        os.close(self.write_fd)


@dataclass
class Flags:
    """What signal handlers may touch: plain attributes, read by the loop."""

    stop: str | None = None  # the signal's name
    force: bool = False  # a second stop signal: do not wait for jobs
    reload: bool = False


@dataclass
class Timers:
    """Monotonic times of the loop's periodic duties."""

    next_scan: float = 0.0
    next_dispatch: float = 0.0
    next_progress: float = 0.0
    next_heartbeat: float = 0.0
    next_sweep: float = 0.0


def weights_ready(spec: StyleSpec, *, models: Path) -> bool:
    """False while a style's guide needs pretrained hub weights that the models cache lacks."""
    from daemon.guidance import guide_ready  # torch and open_clip: not for the planner's import

    return guide_ready(spec.training.clip_model, spec.training.pretrained, cache_dir=models)


@dataclass
class Scanning:
    """The scanning half of the service, rebuilt when SIGHUP changes the config."""

    specs: SettleTracker
    inbox: SettleTracker
    watcher: FolderWatcher
    catalog: SpecCatalog
    planner: Planner
    library: Library
    last_counts: dict[str, int] = field(default_factory=dict)
    last_held_out: list[dict[str, str]] | None = None  # as last written to the ledger for `afx status`


class Service:
    """One service process on one state folder (a lock file makes sure of that)."""

    def __init__(self, config: ServiceConfig, *, config_file: Path | None = None,
                 notifier: Notifier | None = None) -> None:
        self.config = config
        self.config_file = config_file
        self.notifier = notifier or Notifier()
        self.owner = f"{HOST}:{os.getpid()}"
        self.flags = Flags()
        self.timers = Timers()
        self.waker = Waker()
        self.items: dict[str, WorkItem] = {}  # running jobs, by key
        self.publications: dict[str, list[Publication]] = {}  # render key → the videos that should show it
        self.started = time.time()
        self.ready = False
        self.abandoned = False  # a job did not stop within the timeout
        self.failures: dict[str, int] = {}  # consecutive failures of each of the loop's duties
        self.scans = 0  # full scans so far (an idle service must not rescan in a loop)
        self.preview_lane: str | None = None  # the slot that runs only previews
        self._lock_fd: int | None = None
        self.web: Any = None  # daemon.web.server.WebServer while the dashboard is served
        self.webhooks: Any = None  # daemon.web.webhooks.Webhooks

    # ── life cycle ───────────────────────────────────────────────────────────────────────────────────────

    def run(self) -> int:
        """Serve until SIGTERM/SIGINT; returns the exit status (0 after a clean stop)."""
        self._install_signals()
        self.start()
        try:
            while self.flags.stop is None:
                self.step()
        finally:
            self.shutdown()
        if self.abandoned:  # a worker thread is stuck in a stage: do not wait for it at interpreter exit
            sys.stderr.flush()
            os._exit(0)
        return 0

    def start(self) -> None:
        config = self.config
        access = self._web_access()  # before anything else: a dashboard open to the network refuses to start
        for name in ("inbox", "specs", "library", "renders", "state"):
            try:
                config.path(name).mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise ConfigError(f"cannot create the {name} folder ({e.strerror})", path=config.path(name),
                                  key=f"folders.{name}", hint="fix the path or its permissions") from e
        self._lock(config.path("state") / LOCK_FILE)
        self.ledger = Ledger(ledger_path(config))
        one_brain(self.ledger, state=config.path("state"))
        for key in self.ledger.recover(host=HOST, alive=pid_alive):
            progressed = self._progressed(key)
            if progressed:
                self.ledger.forgive(key)  # the service's death is not this job's fault: it was advancing
            log.warning("job.recovered", job=key, reason="its service stopped without finishing it",
                        progressed=progressed)
        upgrade_state(self.ledger, Library(config.path("library")), renders=config.path("renders"))
        self.devices = worker_devices(config)
        # previews get a slot of their own (on the first device) so that one never waits behind a full render;
        # a Ray cluster names its slots per claim, so there previews only go first in the queue (docs/SCALE.md)
        lane = self.devices[:1] if config.web.preview_s > 0 and config.executor.kind == "local" else []
        self.executor: Executor = make_executor(config, self.devices + lane, wake=self.waker.poke)
        slots = self.executor.idle() if lane else []
        self.preview_lane = slots[-1].name if slots else None
        self._start_web(access)  # after the forkserver: no job process is forked with the web thread in it
        self.problems = ProblemBook(self.ledger)
        self.folders = self._folders(config)
        self.folders.watcher.start()
        sweep_scratch(config)
        self._heartbeat("starting")
        log.info("service.start", pid=os.getpid(), config=str(self.config_file) if self.config_file else None,
                 inbox=str(config.path("inbox")), specs=str(config.path("specs")),
                 renders=str(config.path("renders")), library=str(config.path("library")),
                 ledger=str(self.ledger.path), workers=self.devices, notify=self.notifier.enabled)

    def _web_access(self) -> Any:
        from daemon.web.security import check_webhooks, web_access

        check_webhooks(self.config)
        return web_access(self.config) if self.config.web.enabled else None

    def _start_web(self, access: Any) -> None:
        """The dashboard in a thread and the webhook sender: neither can stop the service (see daemon.web)."""
        try:
            from daemon.web.webhooks import Webhooks

            self.webhooks = Webhooks(self.config.web)
            if access is not None:
                from daemon.web.app import create_app
                from daemon.web.server import WebServer

                self.web = WebServer(create_app(self.config, access, read_only=False), access)
                self.web.start()
        except Exception as e:  # noqa: BLE001 — e.g. a missing web dependency: the service works without it
            log.error("web.unavailable", error=f"{type(e).__name__}: {e}", exc_info=e)

    def _hook(self, event: str, job: Job, report: dict[str, Any] | None) -> None:
        """A webhook delivery about a finished or failed job (queued: never waits for the receiver)."""
        if self.webhooks is None or not self.webhooks.enabled:
            return
        try:
            self.webhooks.send(event, {"job": {"key": job.key, "kind": job.kind, "track": job.track_path,
                                               "style": job.style_name, "style_id": job.style_id,
                                               "attempts": job.attempts, "output": job.output},
                                       "report": report, "time": now_iso()})
        except Exception as e:  # noqa: BLE001
            log.error("webhook.error", error=str(e), exc_info=e)

    def _done_report(self, job: Job) -> dict[str, Any] | None:
        path = (report_path(store_video(self.config.path("renders"), job.key)) if job.kind == "render"
                else Path(job.output or "") / STYLE_FILE)
        try:
            report = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return report if isinstance(report, dict) else None

    def _progressed(self, key: str) -> bool:
        """Whether a job its service died under had made lasting progress: a training whose checkpoint was
        written during that attempt (a render starts over, so it never has)."""
        job = self.ledger.get(key)
        if job is None or job.kind != "train" or job.started is None:
            return False
        from daemon.train import CHECKPOINT_FILE

        checkpoint = self.config.path("state") / "checkpoints" / job.style_id / CHECKPOINT_FILE
        try:
            return checkpoint.stat().st_mtime > job.started
        except OSError:
            return False

    def _folders(self, config: ServiceConfig) -> Scanning:
        library = Library(config.path("library"))
        catalog = SpecCatalog(ledger=self.ledger, limits=config.limits, renders=config.path("renders"),
                              problems=self.problems, override=config.spec_override)
        planner = Planner(ledger=self.ledger, catalog=catalog, library=library, renders=config.path("renders"),
                          default_styles=config.default_styles, hash_file=file_sha256,
                          limits=config.limits, on_checked=lambda: self.folders.watcher.changed(),
                          previews=PreviewSettings(seconds=config.web.preview_s, width=config.web.preview_width,
                                                   fps=config.web.preview_fps),
                          weights_ready=lambda spec: weights_ready(spec, models=config.path("models")))
        watcher = FolderWatcher([config.path("inbox"), config.path("specs")], polling=config.polling,
                                rescan_s=config.rescan_s, wake=self.waker.poke)
        inbox = SettleTracker(settle_s=config.settle_s)
        for row in self.ledger.query("SELECT path, size, mtime_ns FROM tracks"):
            # hashed by an earlier run and unchanged since: settled already, no need to wait again
            inbox.seed(Path(row["path"]), size=row["size"], mtime_ns=row["mtime_ns"])
        return Scanning(specs=SettleTracker(settle_s=config.settle_s), inbox=inbox,
                       watcher=watcher, catalog=catalog, planner=planner, library=library)

    def _lock(self, path: Path) -> None:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as e:
            os.close(fd)
            raise LedgerError("another afx service is running on this state folder", path=path,
                              hint="stop it first (systemctl stop afx), or give this one another state folder") from e
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._lock_fd = fd

    def _install_signals(self) -> None:
        def stop(signum: int, _frame: FrameType | None) -> None:
            if self.flags.stop is not None:
                self.flags.force = True
            self.flags.stop = signal.Signals(signum).name

        def reload(_signum: int, _frame: FrameType | None) -> None:
            self.flags.reload = True

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGHUP, reload)
        signal.set_wakeup_fd(self.waker.write_fd, warn_on_full_buffer=False)

    def shutdown(self) -> None:
        reason = self.flags.stop or "error"
        self.notifier.stopping()
        log.info("service.stopping", reason=reason, running=len(self.items))
        if not hasattr(self, "ledger"):
            return
        if self.web is not None:
            self.web.stop()
        try:
            self.folders.watcher.stop()
            self.folders.planner.checks.close()
            deadline = time.monotonic() + max(1.0, self.config.stop_timeout_s - STOP_MARGIN_S)
            left = self.executor.running()
            while left and time.monotonic() < deadline and not self.flags.force:  # a second signal: at once
                left = self.executor.shutdown(timeout=0.2)
            if left:
                self.executor.kill()  # jobs in child processes: end them, they are requeued below
                left = self.executor.shutdown(timeout=5.0)
            self.collect()
            for key in left:
                self.ledger.release(key, owner=self.owner)
                log.warning("job.abandoned", job=key, reason="did not stop within the stop timeout; requeued")
                self.abandoned = True
            self._heartbeat("stopped")
        finally:
            if self.webhooks is not None:
                self.webhooks.close()
            if hasattr(self, "executor"):
                self.executor.close()
            self.ledger.close()
            if self._lock_fd is not None:
                os.close(self._lock_fd)
            log.info("service.stop", reason=reason, uptime_s=round(time.time() - self.started, 1))

    # ── one pass of the loop ─────────────────────────────────────────────────────────────────────────────

    def step(self) -> None:
        now = time.monotonic()
        if self.flags.reload:
            self.flags.reload = False
            self.reload()
        changed = False
        if now >= self.timers.next_scan or self.folders.watcher.rescan_due(now):
            self.timers.next_scan = now + self.config.rescan_s  # unless scan() finds sooner work
            changed |= bool(self._guarded("scan", self.scan))
            if not self.ready:
                self.ready = True
                self.notifier.ready(self._guarded("status", self.status_line) or "")
                log.info("service.ready")
        changed |= bool(self._guarded("collect", self.collect))
        if now >= self.timers.next_progress:
            self.timers.next_progress = now + PROGRESS_S
            self._guarded("renew", self.renew)
        if changed or now >= self.timers.next_dispatch:
            self.timers.next_dispatch = now + DISPATCH_S
            self._guarded("dispatch", self.dispatch)
        if now >= self.timers.next_heartbeat:
            self.timers.next_heartbeat = now + HEARTBEAT_S
            self._guarded("heartbeat", self._beat)
        self.notifier.watchdog()
        if self.flags.stop is None:
            wake_at = min(self.timers.next_scan, self.folders.watcher.next_due(), self.timers.next_dispatch,
                          self.timers.next_heartbeat, self.timers.next_progress if self.items else float("inf"))
            pause = 1.0 if any(self.failures.values()) else min(1.0, max(0.02, wake_at - time.monotonic()))
            self.waker.wait(pause)

    def _guarded(self, what: str, fn: Callable[..., T], *args: Any) -> T | None:
        """One failing duty (a full disk, a locked ledger) is logged and retried next pass, not fatal —
        unless it keeps failing: then the service exits non-zero and systemd restarts it."""
        try:
            result = fn(*args)
        except Exception as e:  # noqa: BLE001
            self.failures[what] = self.failures.get(what, 0) + 1
            log.error("loop.error", duty=what, error=str(e), consecutive=self.failures[what], exc_info=e)
            if self.failures[what] >= MAX_LOOP_FAILURES:
                raise
            return None
        self.failures[what] = 0
        return result

    def scan(self) -> bool:
        """Scan both folders, plan, and record the jobs the files call for; True when jobs changed."""
        config, f = self.config, self.folders
        now = time.monotonic()
        f.watcher.scanned(now)
        f.watcher.ensure_alive()
        if now >= self.timers.next_sweep:
            self.timers.next_sweep = now + config.rescan_s
            sweep_scratch(config)
        specs = f.specs.scan(config.path("specs"), now=now, include=lambda rel: rel.suffix == ".toml")
        f.catalog.refresh(specs)
        inbox = f.inbox.scan(config.path("inbox"), now=now)
        plan = f.planner.plan(inbox, tick=self.notifier.watchdog)
        held_out = [{"style": s.name, "spec": str(s.source), "reason": held_out_reason(s)}
                    for s in f.planner.held_out.values()]
        if held_out != f.last_held_out:  # for `afx status`, which reads only the ledger
            self.ledger.set_meta("held_out", held_out)
            f.last_held_out = held_out
        if inbox.available:
            self.problems.sync("inbox", plan.problems)
        created = self.ledger.ensure_jobs(plan.jobs)
        self.publications = {}
        for publication in plan.outputs:
            self.publications.setdefault(publication.key, []).append(publication)
        self.publish_current(plan.outputs)
        superseded = 0
        if inbox.available and not inbox.empty:
            superseded = self._supersede(plan, inbox)
        self.timers.next_scan = min(t for t in (f.watcher.next_due(), specs.next_check, inbox.next_check)
                                    if t is not None)
        self.scans += 1
        counts = {"tracks": len(plan.tracks), "pending": len(inbox.pending) + len(specs.pending) + len(plan.hashing),
                  "styles": len(f.catalog.styles()), "new_jobs": created, "superseded": superseded}
        if counts != f.last_counts or created:
            log.info("scan.done", **counts, refused=len(inbox.refused), inbox_available=inbox.available,
                     specs_available=specs.available)
        f.last_counts = counts
        return bool(created or superseded)

    def _supersede(self, plan: Plan, inbox: ScanResult) -> int:
        """Queued jobs the current files no longer ask for are set aside: their style version is gone (an
        edited spec), their settled track no longer gets that style, or their track left the inbox. A track
        that is still settling keeps its jobs; a set-aside job comes back when it is asked for again."""
        wanted = {job.key for job in plan.jobs}
        styles = {spec.style_id for spec in self.folders.catalog.styles()}
        planned = {track.sha256 for track in plan.tracks}
        settling = {str(path) for path in (*inbox.pending, *plan.hashing)}

        def stale(job: Job) -> bool:
            if job.key in wanted:
                return False
            if job.style_id not in styles:
                return True
            if job.kind == "train":
                return not settling
            return job.track_sha in planned or job.track_path not in settling

        stale_keys = [j.key for j in self.ledger.jobs("state = 'queued'") if stale(j)]
        count = self.ledger.set_aside(stale_keys)
        if count:
            log.info("jobs.superseded", count=count)
        return count

    # ── claiming and running ─────────────────────────────────────────────────────────────────────────────

    def dispatch(self) -> None:
        idle = sorted(self.executor.idle(), key=lambda s: s.name != self.preview_lane)  # previews to their lane first
        while idle and self.flags.stop is None:
            slot = idle[0]
            device = slot.device
            lane = slot.name == self.preview_lane  # takes previews only

            def ready(job: Job, lane: bool = lane) -> bool:
                return (job.preview or not lane) and self._ready(job)

            job = self.ledger.claim(owner=self.owner, lease_s=self.config.lease_s, ready=ready, worker=device)
            if job is None:
                idle.pop(0)  # nothing this slot may take: the next one may (the preview lane takes less)
                continue
            if job.attempts > self.config.retries + 1:
                # started this often without ever ending or progressing (see `start`): it takes the whole
                # service down
                error = JobCrashed(f"the service stopped {job.attempts - 1} times while running this job",
                                   hint="look for a crash or the out-of-memory killer in the journal; "
                                        "`afx retry` requeues it")
                self._failed(job, Outcome(key=job.key, status="failed", error=error, output=None, seconds=0.0,
                                          worker=slot.name))
                continue
            idle.pop(0)
            try:
                item = self._work_item(job)
                self.executor.submit(item, slot=slot)
            except BaseException:
                self.ledger.release(job.key, owner=self.owner)  # never leave a claimed job running nowhere
                raise
            self.items[job.key] = item
            log.info("job.start", job=job.key[:16], kind=job.kind, what=job.label(), attempt=job.attempts,
                     device=device)

    def _ready(self, job: Job) -> bool:
        """A render waits for its style in the library and for its track's file."""
        if job.kind == "train":
            return True
        return self.folders.library.has(job.style_name, job.style_id) and self._track_path(job) is not None

    def _track_path(self, job: Job) -> Path | None:
        """Where the job's track content is now (it may have been renamed since planning)."""
        candidates = [Path(job.track_path)] if job.track_path else []
        candidates += [p for p in self.ledger.track_paths(job.track_sha or "") if p not in candidates]
        for path in candidates:
            try:
                st = path.stat()
            except OSError:
                continue
            if self.ledger.known_hash(path, size=st.st_size, mtime_ns=st.st_mtime_ns) == job.track_sha:
                return path
        return None

    def _work_item(self, job: Job) -> WorkItem:
        references: tuple[Path, ...] = ()
        sweep: tuple[dict[str, Any], ...] = ()
        if job.kind == "train":

            spec = self.folders.catalog.spec(job.style_id)
            references = tuple(inbox_references(spec, self.config.path("inbox"))) if spec is not None else ()
            sweep = tuple(s.to_dict() for s in self.folders.catalog.sweep_of(job.style_id))
        return WorkItem(job=job, spec=self.ledger.style_spec(job.style_id),
                        track_path=self._track_path(job) if job.kind == "render" else None,
                        reference_tracks=references, config=self.config, sweep=sweep)

    def renew(self) -> None:
        if self.items:
            self.ledger.renew(owner=self.owner, keys=list(self.items), lease_s=self.config.lease_s,
                              progress={k: v for k, v in self.executor.progress().items() if v[0] is not None},
                              workers=self.executor.placement())

    # ── publishing outcomes ──────────────────────────────────────────────────────────────────────────────

    def collect(self) -> bool:
        outcomes = self.executor.poll()
        for outcome in outcomes:
            self.publish(outcome)
        return bool(outcomes)

    def publish_current(self, wanted: list[Publication]) -> None:
        """Make every published video show its pair's current render: after a revert (content A→B→A, a
        spec v1→v2→v1) the kept render is published again instead of rendered again."""
        shown = self.ledger.outputs()
        done = self.ledger.done_renders()
        for publication in wanted:
            if publication.key in done and (shown.get(str(publication.video)) != publication.key
                                            or not publication.video.is_file()):
                self.publish_video(publication)

    def publish_video(self, publication: Publication) -> bool:
        """Hard-link the kept render to the pair's video (atomically), then write its report and record
        the owner in the ledger. A kept render that is gone (or whose report is damaged) is queued to
        render again."""
        stored = store_video(self.config.path("renders"), publication.key)
        report = published_report(report_path(stored), track_path=publication.track_path,
                                  video_path=publication.video)
        if report is None or not stored.is_file():
            self.ledger.retry(keys=[publication.key], include_done=True)
            log.warning("render.store_missing", job=publication.key[:16], video=str(publication.video),
                        reason="its kept render is gone; rendering it again")
            return False
        atomic_link(stored, publication.video)
        write_json_atomic(report_path(publication.video), report)
        error_report_path(publication.video).unlink(missing_ok=True)
        self.ledger.set_output(publication.video, key=publication.key, track_path=publication.track_path,
                               style_name=publication.style_name)
        log.info("render.published", job=publication.key[:16], video=str(publication.video))
        return True

    def publish(self, outcome: Outcome) -> None:
        item = self.items.pop(outcome.key, None)
        job = self.ledger.get(outcome.key) if item is None else item.job
        if job is None:
            return
        if outcome.status == "done":
            for path in self._report_paths(job):
                path.unlink(missing_ok=True)  # a stale failure report from an earlier attempt
            for publication in self.publications.get(job.key, []):  # before "done": done means published
                try:
                    published = self.publish_video(publication)
                except OSError as e:  # a full disk: the next scan publishes it (its video shows another key)
                    log.error("render.publish_failed", job=job.key[:16], video=str(publication.video), error=str(e))
                    continue
                if not published:
                    error = StorageError("the finished render is missing from the store",
                                         path=store_video(self.config.path("renders"), job.key))
                    self._failed(job, replace(outcome, status="failed", error=error))
                    return
            self.ledger.finish(job.key, owner=self.owner, output=outcome.output)
            self._hook("job.done", job, self._done_report(job))
            log.info("job.done", job=job.key[:16], kind=job.kind, what=job.label(), output=outcome.output,
                     seconds=outcome.seconds)
        elif outcome.status == "stopped":
            self.ledger.release(job.key, owner=self.owner)
            log.info("job.stopped", job=job.key[:16], kind=job.kind, what=job.label(), seconds=outcome.seconds)
        else:
            self._failed(job, outcome)

    def _report_paths(self, job: Job) -> list[Path]:
        """Where a job's failure report goes: beside each video that waits for it (or in the store)."""
        if job.kind == "render":
            videos = [p.video for p in self.publications.get(job.key, [])]
            return [error_report_path(v) for v in videos or [store_video(self.config.path("renders"), job.key)]]
        return [style_report_path(self.config.path("renders"), job.style_name)]

    def _failed(self, job: Job, outcome: Outcome) -> None:
        error = outcome.error or RuntimeError("unknown failure")
        if job.kind == "render" and (isinstance(error, TrackRemoved)
                                     or isinstance(error, AudioError) and self._track_path(job) is None):
            # the file went away (or changed) while queued or rendering: not the content's fault; the job
            # waits for it to come back (a changed track is new content: its own job renders it)
            removed = error if isinstance(error, TrackRemoved) else TrackRemoved(
                "track removed before it was rendered", path=job.track_path,
                hint="put it back: it is rendered when it returns")
            self.ledger.release(job.key, owner=self.owner, not_before=time.time() + self.config.rescan_s,
                                error={**removed.to_dict(), "summary": removed.user_line(),
                                       "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
            log.warning("job.track_removed", job=job.key[:16], what=job.label(), error=removed.user_line())
            return
        transient = error.transient if isinstance(error, AfxError) else True  # unclassified: internal error
        retry_at = None
        if not transient:
            state = "bad_input"
        elif job.attempts <= self.config.retries:
            state = "queued"
            retry_at = time.time() + self.config.retry_backoff_s * 2 ** max(0, job.attempts - 1)
        else:
            state = "failed"
        report_paths = self._report_paths(job)
        report = FailureReport.of(error, stage=job.kind, track=job.track_path, style=job.style_name, job=FailedJob(
            key=job.key, kind=job.kind, attempts=job.attempts, state=state,
            retry_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(retry_at)) if retry_at else None,
            style_id=job.style_id, output=job.output))
        for path in report_paths:
            try:
                with storage_errors(path, "writing the failure report"):
                    report.write(path)
            except (StorageError, OSError) as e:  # a full disk must not lose the job's state: the ledger comes first
                log.warning("report.unwritable", report=str(path), error=str(e))
        self.ledger.fail(job.key, owner=self.owner, state=state, not_before=retry_at or 0.0,
                         error={**report.error.to_dict(), "report": str(report_paths[0]), "time": report.time})
        log.error("job.failed", job=job.key[:16], kind=job.kind, what=job.label(), state=state,
                  attempt=job.attempts, error=report.error.summary, report=str(report_paths[0]))
        self._hook("job.failed", job, report.to_dict())

    # ── config reload, heartbeat ─────────────────────────────────────────────────────────────────────────

    def reload(self) -> None:
        try:
            new = load_config(self.config_file)
        except AfxError as e:
            log.error("config.reload_failed", error=e.user_line())
            return
        changed = [f.name for f in fields(ServiceConfig) if getattr(new, f.name) != getattr(self.config, f.name)]
        if restart := [name for name in RESTART_SETTINGS if name in changed]:
            log.warning("config.needs_restart", settings=restart, reason="the workers and their environment "
                        "were set up at start; `systemctl restart afx` applies these")
        if new.path("state") != self.config.path("state"):
            log.warning("config.state_unchanged", reason="a new state folder needs a restart")
            new = _with_state(new, self.config)
        self.folders.watcher.stop()
        self.folders.planner.checks.close()
        self.config = new
        configure_logging(json_lines=new.log_json, level="info")
        self.folders = self._folders(new)
        self.folders.watcher.start()
        self.timers.next_scan = 0.0
        log.info("config.reloaded", changed=changed)

    def _beat(self) -> None:
        """The ledger's heartbeat (for `afx status`) and systemd's STATUS= line."""
        self._heartbeat("running")
        self.notifier.status(self.status_line())

    def _heartbeat(self, state: str) -> None:
        self.ledger.set_meta("service", {
            "pid": os.getpid(), "host": HOST, "state": state, "started": self.started, "heartbeat": time.time(),
            "workers": getattr(self, "devices", []), "config": str(self.config_file) if self.config_file else None,
            "executor": self.executor.describe() if hasattr(self, "executor") else {"kind": self.config.executor.kind},
            "inbox": str(self.config.path("inbox")), "renders": str(self.config.path("renders")),
            "web": self.web.url if self.web is not None else None})

    def status_line(self) -> str:
        counts = self.ledger.counts()
        total = {s: sum(counts[k][s] for k in counts) for s in ("queued", "running", "done", "failed", "bad_input")}
        line = (f"{total['queued']} queued, {total['running']} running, {total['done']} done, "
                f"{total['failed'] + total['bad_input']} failed")
        progress = self.executor.progress()
        for key, item in list(self.items.items())[:1]:
            done, all_ = progress.get(key, (None, None))
            line += f"; {item.job.label()}" + (f" {done}/{all_}" if done is not None and all_ else "")
        return line


NETWORK_FILE_SYSTEMS = ("nfs", "nfs4", "cifs", "smb3", "smbfs", "9p", "fuse.sshfs", "ceph", "glusterfs",
                        "fuse.glusterfs", "lustre", "beegfs", "gpfs", "fuse.s3fs", "fuse.juicefs")


def one_brain(ledger: Ledger, *, state: Path) -> None:
    """The ledger is single-host: refuse one that another host's service is using now (a state folder
    shared over the network, two machines each running `afx run` on it), and warn when it lies on a
    network file system, where SQLite's locking is not safe. Many machines share work through
    `[executor] kind = "ray"` instead (docs/SCALE.md)."""
    meta = ledger.get_meta("service") or {}
    fresh = time.time() - float(meta.get("heartbeat", 0)) < 5 * HEARTBEAT_S
    if meta.get("host") not in (None, HOST) and meta.get("state") in ("starting", "running") and fresh:
        raise LedgerError(f"the ledger is in use by the afx service on host {meta['host']} (pid {meta.get('pid')})",
                          path=ledger.path, hint="one service (the head) owns a state folder; give this machine "
                          "its own state folder, or make it a Ray worker of that head (docs/SCALE.md)")
    fs = file_system_type(state)
    if fs in NETWORK_FILE_SYSTEMS:
        log.warning("ledger.network_fs", state=str(state), fs=fs,
                    reason="SQLite is not safe on a network file system; keep the state folder on the head's local disk")


def file_system_type(path: Path) -> str | None:
    """The type (/proc/mounts) of the file system holding `path`, or None where that is unknown."""
    try:
        mounts = [line.split() for line in Path("/proc/mounts").read_text().splitlines()]
    except OSError:
        return None
    target = str(path.resolve())
    best: tuple[int, str] | None = None
    for fields_ in mounts:
        if len(fields_) < 3:
            continue
        point = fields_[1].replace("\\040", " ")
        if (target == point or target.startswith(point.rstrip("/") + "/")) and (best is None or len(point) > best[0]):
            best = (len(point), fields_[2])
    return best[1] if best else None


def _with_state(new: ServiceConfig, old: ServiceConfig) -> ServiceConfig:
    return replace(new, folders=replace(new.folders, state=old.path("state")))


def sweep_scratch(config: ServiceConfig) -> int:
    """Remove scratch files a killed run left: `.x.partial-HOST-PID-…` (daemon.atomic) of dead pids on this
    host, or, from another host, untouched for SCRATCH_AGE_S; and old `.tmp` files and folders."""
    removed = 0
    now = time.time()
    renders, library = config.path("renders"), config.path("library")
    for root in (renders, library):
        for path in list(root.rglob(f".*{SCRATCH_MARK}*")) if root.is_dir() else []:
            owner = scratch_owner(path.name)
            if owner is None:
                continue
            host, pid = owner
            if scratch_is_ours(host):
                dead = pid != os.getpid() and not pid_alive(pid)
            else:
                dead = _older_than(path, SCRATCH_AGE_S, now)
            if dead:
                _remove(path)
                removed += 1
    for root in (renders, library):
        for path in list(root.rglob(".*.tmp*")) if root.is_dir() else []:
            if _older_than(path, SCRATCH_AGE_S, now):
                _remove(path)
                removed += 1
    if removed:
        log.info("scratch.removed", count=removed)
    return removed


def _remove(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)


def _older_than(path: Path, age_s: float, now: float) -> bool:
    try:
        return now - path.lstat().st_mtime > age_s
    except OSError:
        return False
