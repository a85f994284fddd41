"""The service's parts on their own: settle detection, the ledger's exactly-once and leases, assignment,
sd_notify, progress callbacks. Real files, real SQLite, real sockets; no subprocess (see test_service_e2e)."""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
import uuid
from pathlib import Path, PurePosixPath

import pytest

from daemon.config import Limits
from daemon.library import Library
from daemon.service.executor import JobControl, JobStopped
from daemon.service.ledger import Ledger, NewJob, render_key, train_key
from daemon.service.notify import Notifier
from daemon.naming import store_video
from daemon.report import Report
from daemon.service.planner import Plan, Planner, ProblemBook, Publication, SpecCatalog
from daemon.service.watch import SettleTracker
from daemon.tracks import glob_matches, is_ignored

REPORT_EXAMPLE = Path(__file__).parent / "data" / "reports" / "render.json"

SPEC = """prompts = ["{prompt}"]
{extra}
[network]
width = 16
depth = 2
[render]
width = 64
height = 36
fps = 10
"""


# ── watching ─────────────────────────────────────────────────────────────────────────────────────────────

@pytest.mark.parametrize("rel, ignored", [
    ("song.wav", False), ("albums/a b/ü -x.flac", False), (".hidden.wav", True), ("song.wav.part", True),
    ("song.tmp", True), ("~lock.wav", True), (".song.wav.swp", True), ("song.swx", True), ("4913", True),
    (".git/objects/ab", True), ("sub/.git/HEAD", True), ("x.crdownload", True), ("backup.wav~", True),
])
def test_ignored_names(rel: str, ignored: bool) -> None:
    assert is_ignored(PurePosixPath(rel)) is ignored


def test_a_file_settles_only_after_size_and_mtime_stay_unchanged(tmp_path: Path) -> None:
    tracker = SettleTracker(settle_s=5.0)
    track = tmp_path / "a.wav"
    track.write_bytes(b"x" * 100)
    first = tracker.scan(tmp_path, now=100.0)
    assert first.pending == (track,) and not first.settled and first.next_check == pytest.approx(105.0)
    assert not tracker.scan(tmp_path, now=104.0).settled
    with open(track, "ab") as f:  # still being copied: the clock starts again
        f.write(b"y" * 100)
    assert not tracker.scan(tmp_path, now=106.0).settled
    assert not tracker.scan(tmp_path, now=110.0).settled
    done = tracker.scan(tmp_path, now=111.5)
    assert [f.rel for f in done.settled] == [PurePosixPath("a.wav")] and done.settled[0].size == 200


def test_files_known_from_an_earlier_run_are_settled_at_once_unless_changed(tmp_path: Path) -> None:
    tracker = SettleTracker(settle_s=60.0)
    (tmp_path / "a.wav").write_bytes(b"x" * 10)
    (tmp_path / "b.wav").write_bytes(b"x" * 10)
    for name in ("a.wav", "b.wav"):
        st = (tmp_path / name).stat()
        tracker.seed(tmp_path / name, size=st.st_size, mtime_ns=st.st_mtime_ns)
    with open(tmp_path / "b.wav", "ab") as f:
        f.write(b"more")
    result = tracker.scan(tmp_path, now=1.0)
    assert [f.rel.name for f in result.settled] == ["a.wav"] and result.pending == (tmp_path / "b.wav",)


def test_ignored_names_never_settle_and_unusable_files_are_refused_not_left_pending(tmp_path: Path) -> None:
    """Issue 9, defect 4: an empty file, a FIFO or a dangling link once waited forever, unreported, and
    asked for a rescan every 0.1 s. Now each is refused with its reason, and nothing asks for a rescan."""
    tracker = SettleTracker(settle_s=5.0)
    (tmp_path / "empty.wav").write_bytes(b"")
    os.mkfifo(tmp_path / "pipe.wav")
    (tmp_path / "gone.wav").symlink_to(tmp_path / "nowhere.wav")
    (tmp_path / "x.wav.part").write_bytes(b"data")
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "blob").write_bytes(b"data")
    early = tracker.scan(tmp_path, now=1.0)
    assert early.pending == (tmp_path / "empty.wav",) and early.next_check == 6.0  # settling: not yet judged
    result = tracker.scan(tmp_path, now=7.0)
    assert not result.settled and not result.pending and result.next_check is None
    assert dict((p.name, why) for p, why in result.refused) == {
        "empty.wav": "the file is empty (0 bytes)", "pipe.wav": "not a regular file (a FIFO, socket or device)",
        "gone.wav": "the symlink's target does not exist"}
    (tmp_path / "empty.wav").write_bytes(b"now it has content")  # …and it comes back once it changes
    assert tracker.scan(tmp_path, now=8.0).pending == (tmp_path / "empty.wav",)


def test_symlinks_out_of_the_folder_are_refused_inside_ones_are_not(tmp_path: Path) -> None:
    inbox, outside = tmp_path / "inbox", tmp_path / "secret.wav"
    inbox.mkdir()
    outside.write_bytes(b"x" * 10)
    (inbox / "real.wav").write_bytes(b"y" * 10)
    (inbox / "escape.wav").symlink_to(outside)
    (inbox / "alias.wav").symlink_to(inbox / "real.wav")
    (inbox / "dir-link").symlink_to(tmp_path)  # a linked folder is never followed
    result = SettleTracker(settle_s=0.0).scan(inbox, now=1.0)
    assert [p.name for p, _ in result.refused] == ["escape.wav"]
    assert "leads out" in result.refused[0][1]
    assert sorted(f.rel.name for f in result.settled) == ["alias.wav", "real.wav"]


def test_a_missing_folder_is_unavailable_and_forgets_nothing(tmp_path: Path) -> None:
    tracker = SettleTracker(settle_s=10.0)
    (tmp_path / "inbox").mkdir()
    (tmp_path / "inbox" / "a.wav").write_bytes(b"x")
    tracker.scan(tmp_path / "inbox", now=1.0)
    (tmp_path / "inbox").rename(tmp_path / "away")
    result = tracker.scan(tmp_path / "inbox", now=2.0)
    assert not result.available and len(tracker.observations) == 1


@pytest.mark.parametrize("polling", [False, True])
def test_events_trigger_a_debounced_rescan_and_a_dead_observer_is_restarted(tmp_path: Path, polling: bool) -> None:
    from daemon.service.watch import FolderWatcher

    inbox, specs = tmp_path / "inbox", tmp_path / "specs"
    inbox.mkdir()
    woken = threading.Event()
    watcher = FolderWatcher([inbox, specs], polling=polling, rescan_s=3600, debounce_s=0.2, wake=woken.set)
    watcher.start()
    try:
        watcher.scanned()
        assert not watcher.rescan_due()
        (inbox / "a.wav").write_bytes(b"x")
        assert woken.wait(5), "no file-system event arrived"
        deadline = time.monotonic() + 5
        while not watcher.rescan_due() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert watcher.rescan_due()
        watcher.scanned()
        with open(inbox / "a.wav", "rb") as f:  # our own reads (settle checks, hashing) must not trigger rescans
            f.read()
        time.sleep(1.5 if polling else 0.5)
        assert not watcher.rescan_due()

        specs.mkdir()  # a folder that was missing at start is watched once it exists
        watcher.ensure_alive()
        assert watcher._scheduled == {inbox, specs}
        watcher._observer.stop()  # the observer thread dies (inotify overflow, a bug): it is replaced
        watcher._observer.join(5)
        watcher.ensure_alive()
        assert watcher._observer.is_alive()
    finally:
        watcher.stop()


# ── the ledger ───────────────────────────────────────────────────────────────────────────────────────────

def _render_job(i: int, style: str = "s1") -> NewJob:
    settings = {"width": 64, "height": 36, "fps": 10}
    return NewJob(key=render_key(f"sha{i}", style, settings), kind="render", style_id=style, style_name="neon",
                  settings=settings, output=f"/r/{i}/neon.mp4", track_sha=f"sha{i}", track_path=f"/in/{i}.wav")


def test_keys_depend_on_content_style_and_settings_only() -> None:
    settings = {"width": 64, "height": 36, "fps": 10}
    key = render_key("abc", "s1", settings)
    assert key == render_key("abc", "s1", dict(reversed(settings.items())))
    assert len({key, render_key("abd", "s1", settings), render_key("abc", "s2", settings),
                render_key("abc", "s1", {**settings, "fps": 30})}) == 4
    assert train_key("s1") == "train:s1"


def test_a_hundred_jobs_planned_by_racing_threads_exist_exactly_once(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.sqlite3")
    jobs = [_render_job(i) for i in range(100)]
    created: list[int] = []
    threads = [threading.Thread(target=lambda: created.append(ledger.ensure_jobs(jobs))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(created) == 100
    assert ledger.counts()["render"]["queued"] == 100


def test_racing_claims_take_each_job_once(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.sqlite3")
    ledger.ensure_jobs([_render_job(i) for i in range(40)])
    claimed: list[str] = []
    lock = threading.Lock()

    def worker(n: int) -> None:
        while (job := ledger.claim(owner=f"host:{n}", lease_s=60, ready=lambda j: True)) is not None:
            with lock:
                claimed.append(job.key)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(claimed) == 40 and len(set(claimed)) == 40
    assert ledger.counts()["render"]["running"] == 40


def test_trainings_are_claimed_first_and_readiness_is_respected(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.sqlite3")
    ledger.ensure_jobs([_render_job(1), NewJob(key=train_key("s1"), kind="train", style_id="s1",
                                               style_name="neon", settings={}, output="/lib/neon/s1")])
    first = ledger.claim(owner="h:1", lease_s=60, ready=lambda j: True)
    assert first is not None and first.kind == "train" and first.attempts == 1
    assert ledger.claim(owner="h:1", lease_s=60, ready=lambda j: False) is None


def test_dead_owners_and_expired_leases_return_to_the_queue(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.sqlite3")
    ledger.ensure_jobs([_render_job(i) for i in range(3)])
    a = ledger.claim(owner="here:111", lease_s=600, ready=lambda j: True)
    b = ledger.claim(owner="elsewhere:222", lease_s=600, ready=lambda j: True)
    c = ledger.claim(owner="elsewhere:333", lease_s=1, ready=lambda j: True)
    assert a and b and c
    recovered = ledger.recover(host="here", alive=lambda pid: False, now=time.time() + 5)
    assert sorted(recovered) == sorted([a.key, c.key])  # b: another host, lease still valid
    assert ledger.get(b.key).state == "running"


def test_failures_retries_and_superseding(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.sqlite3")
    ledger.ensure_jobs([_render_job(1), _render_job(2)])
    job = ledger.claim(owner="h:1", lease_s=60, ready=lambda j: True)
    ledger.fail(job.key, owner="h:1", state="bad_input", error={"summary": "corrupt"})
    assert ledger.get(job.key).state == "bad_input" and ledger.get(job.key).error == {"summary": "corrupt"}
    assert ledger.ensure_jobs([_render_job(1)]) == 0 and ledger.get(job.key).state == "bad_input"  # not retried
    assert ledger.retry(keys=[job.key]) == 1 and ledger.get(job.key).state == "queued"
    other = _render_job(2).key
    ledger.ensure_jobs([_render_job(3, style="s2")])
    assert ledger.get(other).state == "queued"
    with ledger.transaction() as conn:
        conn.execute("UPDATE jobs SET state = 'superseded' WHERE key = ?", (other,))
    assert ledger.ensure_jobs([_render_job(2)]) == 0 and ledger.get(other).state == "queued"  # wanted again


def test_set_aside_jobs_come_back_and_a_training_whose_style_left_the_library_runs_again(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.sqlite3")
    train = NewJob(key=train_key("s1"), kind="train", style_id="s1", style_name="neon", settings={},
                   output="/lib/neon/s1")
    ledger.ensure_jobs([train, _render_job(1)])
    assert ledger.set_aside([_render_job(1).key, "no-such-key"]) == 1
    assert ledger.get(_render_job(1).key).state == "superseded"
    job = ledger.claim(owner="h:1", lease_s=60, ready=lambda j: True)
    assert job is not None and job.kind == "train"
    ledger.finish(job.key, owner="h:1", output="/lib/neon/s1")
    ledger.ensure_jobs([_render_job(1)])  # the style is in the library: no training planned
    assert ledger.get(train.key).state == "done" and ledger.get(_render_job(1).key).state == "queued"
    ledger.ensure_jobs([train, _render_job(1)])  # the planner asks for it again only when the style is gone
    again = ledger.get(train.key)
    assert again.state == "queued" and again.attempts == 0
    assert ledger.claim(owner="h:1", lease_s=60, ready=lambda j: True).key == train.key  # before its renders


def test_a_reader_sees_the_ledger_while_a_writer_holds_it(tmp_path: Path) -> None:
    writer = Ledger(tmp_path / "ledger.sqlite3")
    writer.ensure_jobs([_render_job(1)])
    reader = Ledger(tmp_path / "ledger.sqlite3", create=False)
    with writer.transaction() as conn:
        conn.execute("UPDATE jobs SET state = 'running'")
        assert reader.counts()["render"]["queued"] == 1  # WAL: the reader is not blocked, sees the last commit


# ── assignment ───────────────────────────────────────────────────────────────────────────────────────────

@pytest.mark.parametrize("rel, patterns, matches", [
    ("song.wav", ["*.wav"], True), ("albums/x/song.flac", ["albums/**/*.flac"], True),
    ("albums/song.flac", ["albums/**/*.flac"], True), ("albums/x/song.flac", ["song.flac"], True),
    ("song.mp3", ["*.wav"], False), ("Song.WAV", ["*.wav"], False),
])
def test_track_globs(rel: str, patterns: list[str], matches: bool) -> None:
    assert glob_matches(PurePosixPath(rel), patterns) is matches


def _planner(tmp_path: Path, specs: dict[str, str], defaults: tuple[str, ...] = ()) -> tuple[Planner, Ledger]:
    (tmp_path / "specs").mkdir(exist_ok=True)
    for name, extra in specs.items():
        (tmp_path / "specs" / f"{name}.toml").write_text(SPEC.format(prompt=name, extra=extra))
    ledger = Ledger(tmp_path / "state" / "ledger.sqlite3")
    catalog = SpecCatalog(ledger=ledger, limits=Limits(), renders=tmp_path / "renders", problems=ProblemBook(ledger))
    catalog.refresh(SettleTracker(settle_s=0.0).scan(tmp_path / "specs", include=lambda r: r.suffix == ".toml"))
    planner = Planner(ledger=ledger, catalog=catalog, library=Library(tmp_path / "library"),
                      renders=tmp_path / "renders", default_styles=defaults, hash_file=lambda p: p.name)
    return planner, ledger


def _plan(planner: Planner, inbox: Path) -> Plan:
    """Plan until the background checks and hashes are done (the first passes see new tracks as hashing)."""
    deadline = time.monotonic() + 30
    while (plan := planner.plan(SettleTracker(settle_s=0.0).scan(inbox))).hashing:
        assert time.monotonic() < deadline, f"still hashing {plan.hashing}"
        time.sleep(0.02)
    return plan


def _assigned(planner: Planner, inbox: Path) -> dict[str, set[str]]:
    plan = _plan(planner, inbox)
    found: dict[str, set[str]] = {}
    for job in plan.jobs:
        if job.kind == "render":
            found.setdefault(Path(str(job.track_path)).name, set()).add(job.style_name)
    return found


def test_globs_sidecars_and_defaults_assign_styles(tmp_path: Path) -> None:
    planner, _ = _planner(tmp_path, {"neon": 'tracks = ["live/*.wav"]', "calm": "", "warm": ""}, defaults=("calm",))
    inbox = tmp_path / "inbox"
    for rel in ("live/a.wav", "b.wav", "c.wav"):
        (inbox / rel).parent.mkdir(parents=True, exist_ok=True)
        (inbox / rel).write_bytes(b"RIFF" + rel.encode())
    (inbox / "c.toml").write_text('styles = ["warm", "neon"]\n')
    assert _assigned(planner, inbox) == {"a.wav": {"neon"}, "b.wav": {"calm"}, "c.wav": {"warm", "neon"}}


def test_empty_defaults_mean_every_style_and_trainings_come_with_renders(tmp_path: Path) -> None:
    planner, _ = _planner(tmp_path, {"neon": "", "calm": ""})
    (tmp_path / "inbox").mkdir()
    (tmp_path / "inbox" / "a.wav").write_bytes(b"x")
    plan = _plan(planner, tmp_path / "inbox")
    kinds = sorted((j.kind, j.style_name) for j in plan.jobs)
    assert kinds == [("render", "calm"), ("render", "neon"), ("train", "calm"), ("train", "neon")]
    render = next(j for j in plan.jobs if j.kind == "render" and j.style_name == "neon")
    assert render.output == str(tmp_path / "renders" / ".store" / render.key[:2] / f"{render.key}.mp4")
    [published] = [p for p in plan.outputs if p.key == render.key]
    assert published.video == tmp_path / "renders" / "a.wav" / "neon.mp4"


def test_a_bad_sidecar_is_a_problem_and_assigns_nothing(tmp_path: Path) -> None:
    planner, _ = _planner(tmp_path, {"neon": ""})
    (tmp_path / "inbox").mkdir()
    (tmp_path / "inbox" / "a.wav").write_bytes(b"x")
    (tmp_path / "inbox" / "a.toml").write_text('styles = ["noen"]\n')
    plan = _plan(planner, tmp_path / "inbox")
    assert not plan.jobs
    error, report, _ = plan.problems[str(tmp_path / "inbox" / "a.toml")]
    assert "no style named 'noen'" in str(error) and "did you mean 'neon'" in error.user_line()
    assert report == tmp_path / "renders" / "_inbox" / "a.toml.error.json"


def test_a_broken_spec_keeps_its_last_good_version_across_restarts(tmp_path: Path) -> None:
    planner, ledger = _planner(tmp_path, {"neon": ""})
    good = planner.catalog.styles()[0].style_id
    (tmp_path / "specs" / "neon.toml").write_text("prompts = [\n")  # syntax error
    time.sleep(0.01)
    os.utime(tmp_path / "specs" / "neon.toml", ns=(time.time_ns(), time.time_ns() + 10**9))
    scan = SettleTracker(settle_s=0.0).scan(tmp_path / "specs")
    planner.catalog.refresh(scan)
    assert [s.style_id for s in planner.catalog.styles()] == [good]
    report = tmp_path / "renders" / "_specs" / "neon.toml.error.json"
    assert report.is_file() and "not valid TOML" in report.read_text()
    assert [r["source"] for r in ledger.problems()] == [str(tmp_path / "specs" / "neon.toml")]
    restarted = SpecCatalog(ledger=ledger, limits=Limits(), renders=tmp_path / "renders", problems=ProblemBook(ledger))
    restarted.refresh(SettleTracker(settle_s=0.0).scan(tmp_path / "specs"))
    assert [s.style_id for s in restarted.styles()] == [good]


# ── sd_notify and progress ───────────────────────────────────────────────────────────────────────────────

@pytest.mark.parametrize("abstract", [True, False])
def test_notify_reaches_a_datagram_socket(tmp_path: Path, abstract: bool) -> None:
    name = f"@afx-test-{uuid.uuid4().hex}" if abstract else str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(b"\0" + name[1:].encode() if abstract else name)
        sock.settimeout(5)
        notifier = Notifier({"NOTIFY_SOCKET": name, "WATCHDOG_USEC": "4000000", "WATCHDOG_PID": str(os.getpid())})
        assert notifier.enabled and notifier.watchdog_s == 4.0
        notifier.ready("3 queued")
        assert sock.recv(4096) == b"READY=1\nSTATUS=3 queued"
        notifier.watchdog(now=100.0)
        notifier.watchdog(now=100.5)  # within a quarter of WatchdogSec: not sent again
        notifier.stopping()
        assert sock.recv(4096) == b"WATCHDOG=1"
        assert sock.recv(4096) == b"STOPPING=1\nSTATUS=stopping"


def test_notify_is_silent_without_systemd() -> None:
    notifier = Notifier({})
    assert not notifier.enabled and notifier.send("READY=1") is False


def test_job_control_reads_progress_and_stops_renders() -> None:
    control = JobControl()
    control.progress(3, 10)
    assert (control.done, control.total) == (3, 10)
    control.on_step(type("Record", (), {"step": 7})(), 30)  # train_style's (record, total)
    assert (control.done, control.total) == (7, 30)
    control.on_step(step=8, total=30)
    assert control.done == 8
    control.stop()
    assert control.should_stop()
    with pytest.raises(JobStopped):
        control.progress(4, 10)


def test_the_example_config_is_valid_and_documents_the_defaults() -> None:
    import dataclasses

    from daemon.config import ServiceConfig, load_config

    example = load_config(Path(__file__).resolve().parents[1] / "afx.toml.example")
    defaults = ServiceConfig()
    for f in dataclasses.fields(ServiceConfig):
        if f.name in ("base", "folders"):
            continue
        assert getattr(example, f.name) == getattr(defaults, f.name), f.name
    assert {k: str(v) for k, v in dataclasses.asdict(example.folders).items()} == \
        {k: str(v) for k, v in dataclasses.asdict(defaults.folders).items()}


def test_failure_policy_retries_transient_errors_with_backoff_then_gives_up(tmp_path: Path) -> None:
    """Service.publish: transient → requeued after back-off, then failed; bad input → not retried; a later
    success removes the stale failure report."""
    from dataclasses import replace

    from daemon.config import ServiceConfig
    from daemon.errors import AudioError, StorageError
    from daemon.service.executor import Outcome
    from daemon.service.service import Service

    config = replace(ServiceConfig(base=tmp_path), retries=1, retry_backoff_s=10.0, device="cpu")
    service = Service(config)
    service.start()
    try:
        track = tmp_path / "inbox" / "a.wav"
        track.write_bytes(b"x")
        out = tmp_path / "renders" / "a.wav" / "neon.mp4"
        job = replace(_render_job(1), track_path=str(track), output=str(store_video(tmp_path / "renders", "k")))
        service.ledger.ensure_jobs([job, replace(_render_job(2), track_path=str(track))])
        service.publications = {job.key: [Publication(video=out, key=job.key, track_path=str(track),
                                                      style_name="neon")]}
        report = out.with_name("neon.error.json")

        def attempt(error: BaseException | None) -> None:
            with service.ledger.transaction() as conn:
                conn.execute("UPDATE jobs SET not_before = 0 WHERE key = ?", (job.key,))
            claimed = service.ledger.claim(owner=service.owner, lease_s=60, ready=lambda j: j.key == job.key)
            assert claimed is not None
            status = "failed" if error else "done"
            service.publish(Outcome(key=job.key, status=status, error=error, output=str(out), seconds=0.1, worker="cpu"))

        attempt(StorageError("disk full"))
        row = service.ledger.get(job.key)
        assert row.state == "queued" and row.attempts == 1
        assert row.not_before == pytest.approx(row.started + 10.0, abs=5.0)  # retry_backoff_s × 2^0
        assert '"state": "queued"' in report.read_text()
        attempt(StorageError("disk full"))
        assert service.ledger.get(job.key).state == "failed"
        assert '"state": "failed"' in report.read_text()
        service.ledger.retry(keys=[job.key])
        stored = store_video(tmp_path / "renders", job.key)  # what render_track leaves in the store
        stored.parent.mkdir(parents=True)
        stored.write_bytes(b"video")
        stored.with_suffix(".json").write_text('{"track": null}')  # damaged: rendered again, not a loop error
        attempt(None)
        assert service.ledger.get(job.key).state == "queued" and not out.exists()
        assert "missing from the store" in report.read_text()
        shutil.copy(REPORT_EXAMPLE, stored.with_suffix(".json"))  # a whole report (tests/data), as rendered
        attempt(None)
        assert service.ledger.get(job.key).state == "done" and not report.exists()
        assert out.read_bytes() == b"video" and out.stat().st_ino == stored.stat().st_ino  # a hard link
        published = Report.load(out.with_suffix(".json"))
        assert published.track.path == str(track) and published.video.path == str(out)
        assert published.published is not None and published.track.sha256 == Report.load(REPORT_EXAMPLE).track.sha256
        assert service.ledger.outputs() == {str(out): job.key}

        other = service.ledger.claim(owner=service.owner, lease_s=60, ready=lambda j: True)
        st = track.stat()  # the track is there, with the job's content: an AudioError is the content's fault
        service.ledger.record_track(track, sha256=str(other.track_sha), size=st.st_size, mtime_ns=st.st_mtime_ns)
        service.publish(Outcome(key=other.key, status="failed", error=AudioError("corrupt", path=track),
                                output=None, seconds=0.1, worker="cpu"))
        assert service.ledger.get(other.key).state == "bad_input"
        track.unlink()  # …whereas a track that vanished while queued waits for the file to come back
        service.ledger.retry(keys=[other.key])
        other = service.ledger.claim(owner=service.owner, lease_s=60, ready=lambda j: True)
        service.publish(Outcome(key=other.key, status="failed", error=AudioError("file not found", path=track),
                                output=None, seconds=0.1, worker="cpu"))
        assert service.ledger.get(other.key).state == "queued" and service.ledger.get(other.key).attempts == 0

        # a job that brought the whole service down every time it ran (attempts never ended) is given up
        crasher = NewJob(key=train_key("s9"), kind="train", style_id="s9", style_name="crashy", settings={},
                         output=str(tmp_path / "library" / "crashy" / "s9"))
        service.ledger.ensure_jobs([crasher])
        with service.ledger.transaction() as conn:
            conn.execute("UPDATE jobs SET attempts = 2 WHERE key = ?", (crasher.key,))
        service.dispatch()
        assert service.ledger.get(crasher.key).state == "failed" and not service.items
        assert "stopped 2 times" in (tmp_path / "renders" / "_styles" / "crashy.error.json").read_text()
    finally:
        service.shutdown()


def test_a_backlog_behind_a_failed_training_does_not_hide_runnable_jobs(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.sqlite3")
    train = NewJob(key=train_key("s1"), kind="train", style_id="s1", style_name="neon", settings={}, output="/l")
    ledger.ensure_jobs([train] + [_render_job(i, style="s1") for i in range(800)])
    ledger.ensure_jobs([_render_job(1000, style="s2")])
    claimed = ledger.claim(owner="h:1", lease_s=60, ready=lambda j: True)
    ledger.fail(claimed.key, owner="h:1", state="bad_input", error={"summary": "no CLIP weights"})
    job = ledger.claim(owner="h:1", lease_s=60, ready=lambda j: True)
    assert job is not None and job.style_id == "s2"
    assert ledger.claim(owner="h:1", lease_s=60, ready=lambda j: True) is None


def test_the_first_spec_to_claim_a_name_keeps_it_whatever_the_path_order(tmp_path: Path) -> None:
    """Defect 3: a newcomer declaring an existing style's name used to win by alphabetical path."""
    specs = tmp_path / "specs"
    specs.mkdir()
    ledger = Ledger(tmp_path / "state" / "ledger.sqlite3")

    def catalog_now() -> SpecCatalog:
        catalog = SpecCatalog(ledger=ledger, limits=Limits(), renders=tmp_path / "renders", problems=ProblemBook(ledger))
        catalog.refresh(SettleTracker(settle_s=0.0).scan(specs, include=lambda r: r.suffix == ".toml"))
        return catalog

    (specs / "zz.toml").write_text(SPEC.format(prompt="the original", extra='name = "neon"'))
    catalog = catalog_now()
    original = catalog.styles()[0].style_id
    (specs / "aa.toml").write_text(SPEC.format(prompt="the newcomer", extra='name = "neon"'))
    catalog.refresh(SettleTracker(settle_s=0.0).scan(specs, include=lambda r: r.suffix == ".toml"))
    assert [s.style_id for s in catalog.styles()] == [original]
    report = tmp_path / "renders" / "_specs" / "aa.toml.error.json"
    assert "style name 'neon' already belongs to" in report.read_text() and "zz.toml" in report.read_text()
    assert [s.style_id for s in catalog_now().styles()] == [original], "…and after a restart"
    unmounted = SpecCatalog(ledger=ledger, limits=Limits(), renders=tmp_path / "renders", problems=ProblemBook(ledger))
    assert [s.style_id for s in unmounted.styles()] == [original], "…even before the specs folder is read"

    (specs / "zz.toml").unlink()  # the owner gives the name up: the newcomer may have it now
    newcomer = catalog_now().styles()
    assert [s.source.name for s in newcomer if s.source] == ["aa.toml"] and not report.exists()
