"""The ledger: one SQLite file (WAL mode) in the state folder, the single source of truth for what was done.

A job's key says what it produces — a render: (track content hash, style id, render settings, renderer
version); a training: the style id — so renaming or re-dropping a file redoes nothing, an edited spec makes
new keys, and `INSERT OR IGNORE` makes each key exist once however many scans race to plan it. Claiming is
one `BEGIN IMMEDIATE` transaction that moves a queued row to running under a lease; a lease that is not
renewed (a crash, a kill) returns the job to the queue. Readers (`afx status`) work while the service runs.

This module knows rows, not tensors, files or specs.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from daemon.errors import LedgerError

LEDGER_FILE = "ledger.sqlite3"
SCHEMA_VERSION = 2
RENDERER_VERSION = "afx.render/1"

#: job states. superseded: queued work whose style version is no longer current (an edited spec).
STATES = ("queued", "running", "done", "failed", "bad_input", "superseded")
KINDS = ("train", "render")

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS tracks (
    path TEXT PRIMARY KEY,            -- absolute path where the track was last seen
    sha256 TEXT NOT NULL,             -- content hash: the track's identity
    size INTEGER NOT NULL,            -- with mtime_ns: the hash is reused while these are unchanged
    mtime_ns INTEGER NOT NULL,
    seen REAL NOT NULL                -- unix time of the scan that (re)hashed it
);
CREATE INDEX IF NOT EXISTS tracks_sha ON tracks (sha256);
CREATE TABLE IF NOT EXISTS styles (
    style_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    spec_path TEXT NOT NULL,          -- the spec file this version came from
    state TEXT NOT NULL,              -- current | superseded | removed
    spec_json TEXT NOT NULL,          -- StyleSpec.to_dict(): the last good version survives a restart
    updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS jobs (
    key TEXT PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('train', 'render')),
    track_sha TEXT,                   -- render only
    track_path TEXT,                  -- render only: where the track was when planned
    style_id TEXT NOT NULL,
    style_name TEXT NOT NULL,
    settings_json TEXT NOT NULL,      -- render: {width, height, fps}
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    not_before REAL NOT NULL DEFAULT 0,
    lease_owner TEXT,
    lease_expires REAL,
    output TEXT,                      -- render: the video's path; train: the style folder
    error_json TEXT,                  -- the last error (AfxError.to_dict())
    progress_done INTEGER,
    progress_total INTEGER,
    started REAL,                     -- unix time the current attempt started
    worker TEXT,                      -- the device it runs on
    created REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs (state, not_before);
CREATE INDEX IF NOT EXISTS jobs_style ON jobs (style_id);
CREATE TABLE IF NOT EXISTS problems (
    source TEXT PRIMARY KEY,          -- the file at fault (a spec, a sidecar, a refused symlink)
    kind TEXT NOT NULL,               -- spec | sidecar | inbox
    error_json TEXT NOT NULL,
    report TEXT,                      -- the failure report written for it
    updated REAL NOT NULL
);
"""

#: schema 2 (issue 9, identity): which render each published video shows, and who claimed each style
#: name first. `migrate_identity` adds these to a schema-1 ledger; nothing else changed.
IDENTITY_SCHEMA = """
CREATE TABLE IF NOT EXISTS outputs (
    path TEXT PRIMARY KEY,            -- a published video, renders/<track>/<style>.mp4
    job_key TEXT NOT NULL,            -- the render it shows (kept in renders/.store/ under this key)
    track_path TEXT NOT NULL,         -- the track it belongs to
    style_name TEXT NOT NULL,         -- …and the style
    published REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS name_claims (
    name TEXT NOT NULL,               -- a style name
    spec_path TEXT NOT NULL,          -- a spec file that defines it
    first_seen REAL NOT NULL,         -- when the ledger first saw this file claim it: the earliest owns it
    PRIMARY KEY (name, spec_path)
);
"""


def migrate_identity(conn: sqlite3.Connection, *, from_version: int) -> None:
    """Schema 1 → 2: add the identity tables. A schema-1 ledger's finished videos still lie at the old
    names and its style ids are the old ones: `meta.identity_upgrade` tells the service to re-key them
    (daemon.service.upgrade) once."""
    conn.executescript(IDENTITY_SCHEMA)
    if from_version == 1:
        conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('identity_upgrade', ?)",
                     (json.dumps({"from": 1}),))


def render_key(track_sha: str, style_id: str, settings: dict[str, Any]) -> str:
    """sha256 of what decides a render's pixels: the track's bytes, the style, the settings, the renderer."""
    material = json.dumps({"track": track_sha, "style": style_id, "settings": settings,
                           "renderer": RENDERER_VERSION}, sort_keys=True)
    return hashlib.sha256(material.encode()).hexdigest()


def train_key(style_id: str) -> str:
    return f"train:{style_id}"


@dataclass(frozen=True)
class NewJob:
    """A job the planner wants to exist."""

    key: str  # render_key(...) or train_key(...)
    kind: str  # train | render
    style_id: str  # the style version
    style_name: str  # the style's name (library folder)
    settings: dict[str, Any]  # render: {width, height, fps}; train: {}
    output: str  # where the result goes
    track_sha: str | None = None  # render only
    track_path: str | None = None  # render only


@dataclass(frozen=True)
class Job:
    """One row of the jobs table."""

    key: str  # see NewJob
    kind: str  # train | render
    style_id: str  # the style version
    style_name: str  # its name
    settings: dict[str, Any]  # render settings
    state: str  # one of STATES
    attempts: int  # how many times it was started
    not_before: float  # unix time before which it is not claimed (back-off)
    output: str | None  # destination
    track_sha: str | None  # render only
    track_path: str | None  # render only
    lease_owner: str | None  # host:pid of the service running it
    error: dict[str, Any] | None  # the last error
    progress_done: int | None  # frames or steps done
    progress_total: int | None  # frames or steps in all
    started: float | None  # unix time the current attempt started
    worker: str | None  # device it runs on
    created: float  # unix time
    updated: float  # unix time

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Job:
        return cls(key=row["key"], kind=row["kind"], style_id=row["style_id"], style_name=row["style_name"],
                   settings=json.loads(row["settings_json"]), state=row["state"], attempts=row["attempts"],
                   not_before=row["not_before"], output=row["output"], track_sha=row["track_sha"],
                   track_path=row["track_path"], lease_owner=row["lease_owner"],
                   error=json.loads(row["error_json"]) if row["error_json"] else None,
                   progress_done=row["progress_done"], progress_total=row["progress_total"],
                   started=row["started"], worker=row["worker"], created=row["created"], updated=row["updated"])

    def label(self) -> str:
        """`train neon` / `render song.wav × neon`: how logs and `afx status` name a job."""
        if self.kind == "train":
            return f"train {self.style_name}"
        return f"render {Path(self.track_path or '?').name} × {self.style_name}"


class Ledger:
    """The SQLite ledger; one connection per thread, WAL mode, short write transactions."""

    def __init__(self, path: Path, *, create: bool = True) -> None:
        self.path = Path(path)
        self._local = threading.local()
        if not create and not self.path.is_file():
            raise LedgerError("no ledger yet", path=self.path, hint="start the service with `afx run`")
        if create:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._errors("open"):
            conn = self.connection()
            conn.execute("PRAGMA journal_mode=WAL")
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise LedgerError(f"ledger schema {version} is newer than this afx ({SCHEMA_VERSION})",
                                  path=self.path, hint="upgrade afx")
            if create:
                conn.executescript(SCHEMA)
                if version < 2:
                    migrate_identity(conn, from_version=version)
                conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def connection(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA busy_timeout=30000")
            conn.execute("PRAGMA synchronous=NORMAL")
            self._local.conn = conn
        return conn

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    @contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as e:
            raise LedgerError(f"ledger {what} failed ({e})", path=self.path,
                              hint="check the disk and the state folder's permissions") from e

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE … COMMIT: takes the write lock up front, so claims never race."""
        conn = self.connection()
        with self._errors("write"):
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def query(self, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]:
        with self._errors("read"):
            return self.connection().execute(sql, tuple(params)).fetchall()

    # ── meta ─────────────────────────────────────────────────────────────────────────────────────────────

    def set_meta(self, key: str, value: Any) -> None:
        with self.transaction() as conn:
            conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, json.dumps(value)))

    def get_meta(self, key: str) -> Any:
        rows = self.query("SELECT value FROM meta WHERE key = ?", (key,))
        return json.loads(rows[0]["value"]) if rows else None

    # ── tracks ───────────────────────────────────────────────────────────────────────────────────────────

    def known_hash(self, path: Path, *, size: int, mtime_ns: int) -> str | None:
        """The sha256 recorded for `path` if its size and mtime are unchanged since."""
        rows = self.query("SELECT sha256 FROM tracks WHERE path = ? AND size = ? AND mtime_ns = ?",
                          (str(path), size, mtime_ns))
        return rows[0]["sha256"] if rows else None

    def record_track(self, path: Path, *, sha256: str, size: int, mtime_ns: int) -> None:
        with self.transaction() as conn:
            conn.execute("INSERT OR REPLACE INTO tracks (path, sha256, size, mtime_ns, seen) VALUES (?, ?, ?, ?, ?)",
                         (str(path), sha256, size, mtime_ns, time.time()))

    def track_paths(self, sha256: str) -> list[Path]:
        """Where a track's content was seen, most recent first."""
        rows = self.query("SELECT path FROM tracks WHERE sha256 = ? ORDER BY seen DESC", (sha256,))
        return [Path(r["path"]) for r in rows]

    # ── styles ───────────────────────────────────────────────────────────────────────────────────────────

    def set_spec_styles(self, spec_path: str, styles: list[tuple[str, str, dict[str, Any]]]) -> None:
        """The styles (id, name, spec dict) a spec file now defines; its earlier versions become superseded."""
        now = time.time()
        with self.transaction() as conn:
            conn.execute("UPDATE styles SET state = 'superseded', updated = ? WHERE spec_path = ? AND state = 'current'",
                         (now, spec_path))
            for style_id, name, spec in styles:
                conn.execute("INSERT OR REPLACE INTO styles (style_id, name, spec_path, state, spec_json, updated) "
                             "VALUES (?, ?, ?, 'current', ?, ?)", (style_id, name, spec_path,
                                                                   json.dumps(spec, sort_keys=True), now))

    def remove_spec(self, spec_path: str) -> None:
        with self.transaction() as conn:
            conn.execute("UPDATE styles SET state = 'removed', updated = ? WHERE spec_path = ? AND state = 'current'",
                         (time.time(), spec_path))

    def current_styles(self) -> list[sqlite3.Row]:
        return self.query("SELECT * FROM styles WHERE state = 'current' ORDER BY spec_path, name")

    def style_spec(self, style_id: str) -> dict[str, Any] | None:
        rows = self.query("SELECT spec_json FROM styles WHERE style_id = ?", (style_id,))
        return json.loads(rows[0]["spec_json"]) if rows else None

    # ── published outputs and style names ────────────────────────────────────────────────────────────────

    def outputs(self) -> dict[str, str]:
        """{published video path: the render key it shows}."""
        return {r["path"]: r["job_key"] for r in self.query("SELECT path, job_key FROM outputs")}

    def set_output(self, path: Path, *, key: str, track_path: str, style_name: str) -> None:
        with self.transaction() as conn:
            conn.execute("INSERT OR REPLACE INTO outputs (path, job_key, track_path, style_name, published)"
                         " VALUES (?, ?, ?, ?, ?)", (str(path), key, track_path, style_name, time.time()))

    def done_renders(self) -> set[str]:
        return {r["key"] for r in self.query("SELECT key FROM jobs WHERE kind = 'render' AND state = 'done'")}

    def name_owners(self, claims: Iterable[tuple[str, str]]) -> dict[str, str]:
        """Record (style name, spec path) claims and return each name's owner: the spec file that has
        claimed it longest (ties: path order). A claim the files no longer make is forgotten, so a file
        that gives up a name and takes it again queues behind the others."""
        claims = set(claims)
        now = time.time()
        with self.transaction() as conn:
            known = {(r["name"], r["spec_path"]) for r in conn.execute("SELECT name, spec_path FROM name_claims")}
            conn.executemany("DELETE FROM name_claims WHERE name = ? AND spec_path = ?", list(known - claims))
            conn.executemany("INSERT OR IGNORE INTO name_claims (name, spec_path, first_seen) VALUES (?, ?, ?)",
                             [(n, p, now) for n, p in sorted(claims - known)])
        return self.recorded_name_owners()

    def recorded_name_owners(self) -> dict[str, str]:
        """Each style name's owner as last recorded (see name_owners)."""
        rows = self.query("SELECT name, spec_path FROM name_claims ORDER BY first_seen DESC, spec_path DESC")
        return {r["name"]: r["spec_path"] for r in rows}

    def rekey_styles(self, mapping: dict[str, str]) -> int:
        """Give styles new ids ({old: new}, an upgrade of the id form): their rows and their jobs' keys
        follow, so nothing done is done again. Returns how many jobs were re-keyed."""
        moved = 0
        with self.transaction() as conn:
            for row in conn.execute("SELECT style_id, spec_json FROM styles").fetchall():
                new = mapping.get(row["style_id"])
                if new:
                    spec = {**json.loads(row["spec_json"]), "style_id": new}
                    conn.execute("UPDATE OR REPLACE styles SET style_id = ?, spec_json = ? WHERE style_id = ?",
                                 (new, json.dumps(spec, sort_keys=True), row["style_id"]))
            for row in conn.execute("SELECT key, kind, style_id, track_sha, settings_json FROM jobs").fetchall():
                new = mapping.get(row["style_id"])
                if not new:
                    continue
                key = train_key(new) if row["kind"] == "train" else render_key(
                    row["track_sha"], new, json.loads(row["settings_json"]))
                moved += conn.execute("UPDATE OR IGNORE jobs SET key = ?, style_id = ? WHERE key = ?",
                                      (key, new, row["key"])).rowcount
        return moved

    def set_output_path(self, key: str, output: str) -> None:
        with self.transaction() as conn:
            conn.execute("UPDATE jobs SET output = ? WHERE key = ?", (output, key))

    # ── planning ─────────────────────────────────────────────────────────────────────────────────────────

    def ensure_jobs(self, jobs: Iterable[NewJob]) -> int:
        """Create the jobs that do not exist yet (superseded ones come back); returns how many were new."""
        now = time.time()
        created = 0
        with self.transaction() as conn:
            for job in jobs:
                cur = conn.execute(
                    "INSERT OR IGNORE INTO jobs (key, kind, track_sha, track_path, style_id, style_name, settings_json,"
                    " state, output, created, updated) VALUES (?, ?, ?, ?, ?, ?, ?, 'queued', ?, ?, ?)",
                    (job.key, job.kind, job.track_sha, job.track_path, job.style_id, job.style_name,
                     json.dumps(job.settings, sort_keys=True), job.output, now, now))
                if cur.rowcount:
                    created += 1
                else:
                    # a superseded job is wanted again; a done training is planned again only when its style
                    # left the library (deleted by hand): train it again, or its renders would wait forever
                    conn.execute("UPDATE jobs SET attempts = CASE state WHEN 'done' THEN 0 ELSE attempts END,"
                                 " state = 'queued', updated = ? WHERE key = ?"
                                 " AND (state = 'superseded' OR (kind = 'train' AND state = 'done'))", (now, job.key))
        return created

    def set_aside(self, keys: Iterable[str]) -> int:
        """Queued jobs the current files no longer ask for become superseded; returns how many."""
        now = time.time()
        with self.transaction() as conn:
            return conn.executemany("UPDATE jobs SET state = 'superseded', updated = ? WHERE key = ? AND state = 'queued'",
                                    [(now, key) for key in keys]).rowcount

    # ── claiming and leases ──────────────────────────────────────────────────────────────────────────────

    def claim(self, *, owner: str, lease_s: float, ready: Callable[[Job], bool],
              worker: str | None = None, now: float | None = None) -> Job | None:
        """Atomically move the first ready queued job (trainings first, then oldest) to running.

        Renders whose style still has an unfinished (or failed) training are not even candidates, so a
        large backlog behind one failed training never hides the jobs that can run.
        """
        now = time.time() if now is None else now
        with self.transaction() as conn:
            rows = conn.execute(
                "SELECT * FROM jobs WHERE state = 'queued' AND not_before <= ? AND NOT (kind = 'render' AND style_id IN"
                " (SELECT style_id FROM jobs WHERE kind = 'train' AND state NOT IN ('done', 'superseded')))"
                " ORDER BY CASE kind WHEN 'train' THEN 0 ELSE 1 END, created, rowid", (now,))
            for row in rows:
                job = Job.from_row(row)
                if not ready(job):
                    continue
                cur = conn.execute(
                    "UPDATE jobs SET state = 'running', attempts = attempts + 1, lease_owner = ?, lease_expires = ?,"
                    " started = ?, progress_done = NULL, progress_total = NULL, worker = ?, updated = ?"
                    " WHERE key = ? AND state = 'queued' AND not_before <= ?",
                    (owner, now + lease_s, now, worker, now, job.key, now))
                if cur.rowcount == 1:
                    return Job.from_row(conn.execute("SELECT * FROM jobs WHERE key = ?", (job.key,)).fetchone())
        return None

    def renew(self, *, owner: str, keys: Iterable[str], lease_s: float,
              progress: dict[str, tuple[int | None, int | None]] | None = None) -> None:
        """Extend the leases this owner holds, and record progress (done, total) of its running jobs."""
        now = time.time()
        progress = progress or {}
        with self.transaction() as conn:
            for key in keys:
                done, total = progress.get(key, (None, None))
                conn.execute("UPDATE jobs SET lease_expires = ?, progress_done = COALESCE(?, progress_done),"
                             " progress_total = COALESCE(?, progress_total), updated = ?"
                             " WHERE key = ? AND lease_owner = ? AND state = 'running'",
                             (now + lease_s, done, total, now, key, owner))

    def recover(self, *, host: str, alive: Callable[[int], bool], now: float | None = None) -> list[str]:
        """Running jobs whose lease expired, or whose owner on this host is dead, go back to the queue."""
        now = time.time() if now is None else now
        recovered = []
        with self.transaction() as conn:
            for row in conn.execute("SELECT key, lease_owner, lease_expires FROM jobs WHERE state = 'running'").fetchall():
                owner_host, _, pid = (row["lease_owner"] or "").rpartition(":")
                dead = owner_host == host and pid.isdigit() and not alive(int(pid))
                if dead or (row["lease_expires"] or 0) < now:
                    conn.execute("UPDATE jobs SET state = 'queued', lease_owner = NULL, lease_expires = NULL,"
                                 " updated = ? WHERE key = ?", (now, row["key"]))
                    recovered.append(row["key"])
        return recovered

    def finish(self, key: str, *, owner: str, output: str | None = None) -> None:
        now = time.time()
        with self.transaction() as conn:
            conn.execute("UPDATE jobs SET state = 'done', output = COALESCE(?, output), error_json = NULL,"
                         " lease_owner = NULL, lease_expires = NULL, not_before = 0, updated = ?"
                         " WHERE key = ? AND lease_owner = ?", (output, now, key, owner))

    def fail(self, key: str, *, owner: str, state: str, error: dict[str, Any], not_before: float = 0.0) -> None:
        """Record an error: state 'queued' (retry after `not_before`), 'failed' or 'bad_input'."""
        if state not in ("queued", "failed", "bad_input"):
            raise ValueError(state)
        now = time.time()
        with self.transaction() as conn:
            conn.execute("UPDATE jobs SET state = ?, error_json = ?, not_before = ?, lease_owner = NULL,"
                         " lease_expires = NULL, updated = ? WHERE key = ? AND lease_owner = ?",
                         (state, json.dumps(error), not_before, now, key, owner))

    def release(self, key: str, *, owner: str, not_before: float = 0.0, error: dict[str, Any] | None = None) -> None:
        """Back to the queue without counting the attempt (stopped by SIGTERM, track file missing); `error`
        says why it waits (shown by `afx status`)."""
        with self.transaction() as conn:
            conn.execute("UPDATE jobs SET state = 'queued', attempts = MAX(attempts - 1, 0), lease_owner = NULL,"
                         " lease_expires = NULL, not_before = ?, updated = ?,"
                         " error_json = COALESCE(?, error_json) WHERE key = ? AND lease_owner = ?",
                         (not_before, time.time(), json.dumps(error) if error else None, key, owner))

    def forgive(self, key: str) -> None:
        """Do not count the attempt a recovered job was in (it was making progress when its service died)."""
        with self.transaction() as conn:
            conn.execute("UPDATE jobs SET attempts = MAX(attempts - 1, 0) WHERE key = ? AND state = 'queued'", (key,))

    def retry(self, *, keys: Iterable[str] | None = None, include_done: bool = False) -> int:
        """Requeue failed and bad-input jobs (all of them, or these keys); returns how many."""
        states = ("failed", "bad_input", "done") if include_done else ("failed", "bad_input")
        marks = ",".join("?" * len(states))
        sql = (f"UPDATE jobs SET state = 'queued', attempts = 0, not_before = 0, error_json = NULL, updated = ?"
               f" WHERE state IN ({marks})")
        with self.transaction() as conn:
            if keys is None:
                return conn.execute(sql, (time.time(), *states)).rowcount
            return sum(conn.execute(sql + " AND key = ?", (time.time(), *states, key)).rowcount for key in keys)

    # ── problems (spec, sidecar and inbox errors that are not jobs) ──────────────────────────────────────

    def set_problem(self, source: str, *, kind: str, error: dict[str, Any], report: str | None) -> None:
        with self.transaction() as conn:
            conn.execute("INSERT OR REPLACE INTO problems (source, kind, error_json, report, updated)"
                         " VALUES (?, ?, ?, ?, ?)", (source, kind, json.dumps(error), report, time.time()))

    def clear_problem(self, source: str) -> bool:
        with self.transaction() as conn:
            return conn.execute("DELETE FROM problems WHERE source = ?", (source,)).rowcount > 0

    def problems(self) -> list[sqlite3.Row]:
        return self.query("SELECT * FROM problems ORDER BY updated DESC")

    # ── reading, for `afx status` and the loop ───────────────────────────────────────────────────────────

    def jobs(self, where: str = "1", params: Iterable[Any] = (), *, order: str = "created") -> list[Job]:
        return [Job.from_row(r) for r in self.query(f"SELECT * FROM jobs WHERE {where} ORDER BY {order}", params)]

    def get(self, key: str) -> Job | None:
        found = self.jobs("key = ?", (key,))
        return found[0] if found else None

    def counts(self) -> dict[str, dict[str, int]]:
        """{kind: {state: n}} for every kind and state (zeros included)."""
        counts = {kind: dict.fromkeys(STATES, 0) for kind in KINDS}
        for row in self.query("SELECT kind, state, COUNT(*) AS n FROM jobs GROUP BY kind, state"):
            counts[row["kind"]][row["state"]] = row["n"]
        return counts
