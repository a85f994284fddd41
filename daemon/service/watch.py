"""Watching the inbox and specs folders: which files exist, and which have settled.

Two parts. `SettleTracker.scan(root)` lists a folder recursively and decides, from what it saw in earlier
scans, which files are *settled*: size and mtime unchanged for `settle_s` and readable (a copy over the
network takes minutes, and a half-written file must never be picked up). A settled file that cannot be
used (empty, unreadable, a FIFO, a dangling or escaping symlink) is *refused* with the reason, never
left pending: pending files are only those still inside their settle time, so an idle service with bad
files present sleeps until its next rescan. `FolderWatcher` wraps watchdog's
observer: its events only mark a debounced "rescan needed"; full rescans also run at start and every
`rescan_s`, because watchdog misses events on network mounts and under inotify overflow. Nothing here
deletes anything: a missing or empty folder is reported as such and the caller keeps its state.
"""

from __future__ import annotations

import os
import stat
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver
from watchdog.observers.polling import PollingObserver

from daemon.logs import get_logger
from daemon.tracks import is_ignored

log = get_logger("afx.watch")

#: watchdog events that do not change a file (our own reads must not trigger rescans)
QUIET_EVENTS = frozenset({"opened", "closed_no_write"})


#: why a settled file is refused (the report's message), and what to do about it
EMPTY = "the file is empty (0 bytes)"
NOT_REGULAR = "not a regular file (a FIFO, socket or device)"
DANGLING = "the symlink's target does not exist"
UNREADABLE = "the file cannot be opened for reading"
LEADS_OUT = "the symlink leads out of the watched folder"
REFUSAL_HINTS = {
    EMPTY: "the copy may have failed: copy it again (it is picked up once it has content)",
    NOT_REGULAR: "put an audio file there instead",
    DANGLING: "fix or remove the link",
    UNREADABLE: "check its permissions (the service's user must read it)",
    LEADS_OUT: "copy the file into the inbox instead of linking it",
}


def refusal_hint(reason: str) -> str:
    return next((hint for start, hint in REFUSAL_HINTS.items() if reason.startswith(start)), "")


@dataclass(frozen=True)
class Observation:
    """What a scan saw of one file, and since when it has looked like this."""

    size: int  # bytes
    mtime_ns: int  # modification time
    stable_since: float  # monotonic time of the first scan that saw this size and mtime


@dataclass(frozen=True)
class SeenFile:
    """A settled file."""

    path: Path  # as found under the root (not resolved: a symlink inside the root keeps its own name)
    rel: PurePosixPath  # relative to the root, with '/' separators
    size: int  # bytes
    mtime_ns: int  # modification time


@dataclass(frozen=True)
class ScanResult:
    """One scan of one folder."""

    root: Path  # the folder scanned
    available: bool  # False: the folder is missing or unreadable — keep every earlier decision
    settled: tuple[SeenFile, ...] = ()  # files ready to use
    pending: tuple[Path, ...] = ()  # files still changing (or not yet seen for settle_s)
    refused: tuple[tuple[Path, str], ...] = ()  # files that will never be used, and why
    next_check: float | None = None  # monotonic time when a pending file may have settled

    @property
    def empty(self) -> bool:
        return not (self.settled or self.pending or self.refused)


class SettleTracker:
    """Remembers, per path, the size and mtime last seen and since when (in memory only)."""

    def __init__(self, *, settle_s: float) -> None:
        self.settle_s = settle_s
        self.observations: dict[Path, Observation] = {}

    def scan(self, root: Path, *, now: float | None = None,
             include: Callable[[PurePosixPath], bool] | None = None) -> ScanResult:
        """List `root` recursively and classify each file as settled, pending or refused."""
        now = time.monotonic() if now is None else now
        root = Path(root)
        if not root.is_dir():
            return ScanResult(root=root, available=False)
        settled: list[SeenFile] = []
        pending: list[Path] = []
        refused: list[tuple[Path, str]] = []
        next_check: float | None = None
        seen: set[Path] = set()
        real_root = root.resolve()
        for path, rel in walk(root):
            if include is not None and not include(rel):
                continue
            reason = _refusal(path, real_root)
            if reason:
                refused.append((path, reason))
                continue
            try:
                st = path.stat()
            except FileNotFoundError:
                if path.is_symlink():
                    refused.append((path, DANGLING))
                continue  # vanished between listing and stat: nothing to do
            except OSError as e:
                refused.append((path, f"{UNREADABLE} ({e.strerror})"))
                continue
            if not stat.S_ISREG(st.st_mode):
                refused.append((path, NOT_REGULAR))  # a FIFO would block the first read forever
                continue
            seen.add(path)
            ready_at = self._observe(path, st.st_size, st.st_mtime_ns, now)
            if ready_at > now:
                pending.append(path)
                next_check = ready_at if next_check is None else min(next_check, ready_at)
            elif st.st_size == 0:
                refused.append((path, EMPTY))  # it leaves this state by changing, which a scan notices
            elif not _opens(path):
                refused.append((path, UNREADABLE))
            else:
                settled.append(SeenFile(path=path, rel=rel, size=st.st_size, mtime_ns=st.st_mtime_ns))
        for path in [p for p in self.observations if _under(p, root) and p not in seen]:
            del self.observations[path]
        return ScanResult(root=root, available=True, settled=tuple(settled), pending=tuple(pending),
                          refused=tuple(refused), next_check=next_check)

    def seed(self, path: Path, *, size: int, mtime_ns: int) -> None:
        """A file known settled from before (the ledger hashed it): settled at once while it still looks so."""
        self.observations[Path(path)] = Observation(size=size, mtime_ns=mtime_ns, stable_since=float("-inf"))

    def _observe(self, path: Path, size: int, mtime_ns: int, now: float) -> float:
        """Record this sighting; returns the monotonic time from which the file counts as settled."""
        old = self.observations.get(path)
        if old is None or (old.size, old.mtime_ns) != (size, mtime_ns):
            old = Observation(size=size, mtime_ns=mtime_ns, stable_since=now)
            self.observations[path] = old
        return old.stable_since + self.settle_s


def walk(root: Path) -> Iterator[tuple[Path, PurePosixPath]]:
    """Every non-ignored file under `root` (links to files included, linked folders not followed)."""
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False, onerror=_walk_error):
        base = Path(dirpath)
        rel_base = PurePosixPath(base.relative_to(root).as_posix()) if base != root else PurePosixPath()
        dirnames[:] = sorted(d for d in dirnames if not is_ignored(rel_base / d) and not (base / d).is_symlink())
        for name in sorted(filenames):
            rel = rel_base / name
            if not is_ignored(rel):
                yield base / name, rel


def _walk_error(error: OSError) -> None:
    log.warning("scan.unreadable", path=str(error.filename), error=error.strerror)


def _refusal(path: Path, real_root: Path) -> str | None:
    """Why a file must not be used, if it must not: a symlink whose target leaves the watched folder."""
    if not path.is_symlink():
        return None
    try:
        target = path.resolve(strict=False)
    except (OSError, RuntimeError):
        return "the symlink cannot be resolved (a loop?)"
    if not target.is_relative_to(real_root):
        return f"{LEADS_OUT} (to {target})"
    return None


def _opens(path: Path) -> bool:
    """Whether the file can be opened and read (a copy may hold it locked or unreadable)."""
    try:
        with open(path, "rb") as f:
            f.read(1)
        return True
    except OSError:
        return False


def _under(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


class _Handler(FileSystemEventHandler):
    def __init__(self, on_change: Callable[[], None]) -> None:
        self.on_change = on_change

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type not in QUIET_EVENTS:
            self.on_change()


class FolderWatcher:
    """watchdog observers on some folders, turned into one debounced "rescan needed" flag.

    `rescan_due()` is true after events have been quiet for `debounce_s` (or have kept coming for
    `max_delay_s`), and every `rescan_s` regardless. `ensure_alive()` restarts a dead observer and
    schedules folders that were missing before.
    """

    def __init__(self, folders: list[Path], *, polling: bool, rescan_s: float, debounce_s: float = 0.3,
                 max_delay_s: float = 2.0, wake: Callable[[], None] | None = None) -> None:
        self.folders = [Path(f) for f in folders]
        self.polling = polling
        self.rescan_s = rescan_s
        self.debounce_s = debounce_s
        self.max_delay_s = max_delay_s
        self.wake = wake or (lambda: None)
        self._lock = threading.Lock()
        self._first_event: float | None = None
        self._last_event = 0.0
        self._last_scan: float | None = None
        self._observer: BaseObserver | None = None
        self._scheduled: set[Path] = set()

    def start(self) -> None:
        self._observer = PollingObserver(timeout=1.0) if self.polling else Observer()
        self._scheduled = set()
        for folder in self.folders:
            if folder.is_dir():
                try:
                    self._observer.schedule(_Handler(self._changed), str(folder), recursive=True)
                    self._scheduled.add(folder)
                except OSError as e:  # inotify watch limit, permissions
                    log.warning("watch.failed", folder=str(folder), error=str(e))
        self._observer.daemon = True
        self._observer.start()
        log.info("watch.start", folders=[str(f) for f in self._scheduled], polling=self.polling)

    def stop(self) -> None:
        observer, self._observer = self._observer, None
        if observer is not None:
            observer.stop()
            observer.join(timeout=5)

    def ensure_alive(self) -> None:
        """Restart the observer when it died or when a folder that was missing now exists."""
        dead = self._observer is None or not self._observer.is_alive()
        appeared = any(f.is_dir() and f not in self._scheduled for f in self.folders)
        vanished = any(not f.is_dir() for f in self._scheduled)
        if dead or appeared or vanished:
            log.warning("watch.restart", dead=dead, appeared=appeared, vanished=vanished)
            self.stop()
            self.start()
            self._changed()

    def changed(self) -> None:
        """Ask for a rescan (after the debounce), from any thread: an event, or a track hashed off the loop."""
        self._changed()

    def _changed(self) -> None:
        now = time.monotonic()
        with self._lock:
            self._last_event = now
            if self._first_event is None:
                self._first_event = now
        self.wake()

    def rescan_due(self, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        if self._last_scan is None or now - self._last_scan >= self.rescan_s:
            return True
        with self._lock:
            if self._first_event is None:
                return False
            return now - self._last_event >= self.debounce_s or now - self._first_event >= self.max_delay_s

    def next_due(self, now: float | None = None) -> float:
        """Monotonic time of the next rescan this watcher will ask for (for the loop's sleep)."""
        now = time.monotonic() if now is None else now
        due = (self._last_scan or now) + self.rescan_s
        with self._lock:
            if self._first_event is not None:
                due = min(due, self._last_event + self.debounce_s, self._first_event + self.max_delay_s)
        return due

    def scanned(self, now: float | None = None) -> None:
        """Called by the loop right before it scans: events from here on need another scan."""
        with self._lock:
            self._first_event = None
        self._last_scan = time.monotonic() if now is None else now
