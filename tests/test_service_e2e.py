"""`afx run` as a real subprocess on temporary folders, with real files, ffmpeg, SQLite and signals.

Tiny everything: 64×36 videos at 10 fps of 1.5 s tracks, CPPNs of width 16, the untrained `afx-tiny` CLIP
model for 3 steps. Tests that are not about training place a random style in the library under the
spec's style id ("already trained"), which is what a trained style is to the service. Every wait polls
files or the ledger with a timeout; a failure prints the service's log tail.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
from scipy.io import wavfile

import daemon.pipeline
from daemon.library import Library
from daemon.audio.decode import file_sha256
from daemon.naming import STORE, store_video, track_folder, video_path
from daemon.report import FailureReport, Report
from daemon.service.ledger import render_key
from daemon.spec import load_specs
from daemon.style import random_style
from tests.conftest import SR, synth, write_wav

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
needs_training = pytest.mark.skipif(not hasattr(daemon.pipeline, "train_style"),
                                    reason="daemon.pipeline.train_style is not there yet")

CONFIG = """# written by tests/test_service_e2e.py
settle_s = {settle_s}
rescan_s = {rescan_s}
device = "cpu"
workers = {workers}
retries = 1
retry_backoff_s = 1.0
stop_timeout_s = {stop_timeout_s}
lease_s = 30.0
log_json = true
default_styles = {default_styles}

[folders]
inbox = "inbox"
specs = "specs"
library = "library"
renders = "renders"
state = "state"

[web]
listen = "127.0.0.1:0"  # a free port: services of parallel tests never share one
preview_s = 0  # no quick previews: these scenarios count full renders (tests/test_web.py covers previews)

[limits]  # last: tests/test_faults.py appends to it
min_duration_s = 0.5
"""

SPEC = """prompts = ["{prompt}"]

[network]
width = 16
depth = 2

[render]
width = {width}
height = {height}
fps = {fps}

[training]
clip_model = "afx-tiny"
pretrained = "none"
iterations = 3
resolution = 32
cutouts = 2
time_points = 2
checkpoint_every = 1
"""


class ServiceUnderTest:
    """One folder tree, its afx.toml, and the `afx run` processes started on it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.log = root / "service.log"
        self.proc: subprocess.Popen[bytes] | None = None
        for name in ("inbox", "specs"):
            (root / name).mkdir(parents=True, exist_ok=True)
        self.configure()

    def configure(self, *, settle_s: float = 0.5, rescan_s: float = 2.0, stop_timeout_s: float = 15.0,
                  default_styles: tuple[str, ...] = (), workers: int = 1) -> None:
        (self.root / "afx.toml").write_text(CONFIG.format(
            settle_s=settle_s, rescan_s=rescan_s, stop_timeout_s=stop_timeout_s, workers=workers,
            default_styles=json.dumps(list(default_styles))))

    # ── files ────────────────────────────────────────────────────────────────────────────────────────────

    def spec(self, name: str, prompt: str | None = None, *, size: tuple[int, int] = (64, 36), fps: int = 10,
             trained: bool = False, seed: int = 0) -> Path:
        """Write specs/<name>.toml (atomically); `trained`: its style is in the library before the spec lands."""
        path = self.root / "specs" / f"{name}.toml"
        draft = self.root / "drafts" / f"{name}.toml"
        draft.parent.mkdir(exist_ok=True)
        draft.write_text(SPEC.format(prompt=prompt or f"{name} shapes", width=size[0], height=size[1], fps=fps))
        if trained:
            self.place_style(draft, seed=seed)
        os.replace(draft, path)
        return path

    def place_style(self, spec_path: Path, *, seed: int = 0) -> str:
        """Put a random style in the library under the spec's id: to the service it is trained."""
        spec = load_specs(spec_path)[0]
        style = random_style(seed, network=spec.network, encoder=spec.encoder, sets=tuple(spec.audio.features))
        style.name, style.style_id = spec.name, spec.style_id
        style.save(Library(self.root / "library").folder_for(spec.name, spec.style_id))
        return spec.style_id

    def track(self, name: str, seconds: float = 1.5, *, seed: int = 0) -> Path:
        """A WAV written beside the inbox and moved in, as a finished copy would arrive."""
        scratch = write_wav(self.root / "scratch" / f"{uuid.uuid4().hex}.wav", synth(seconds, seed=seed))
        return Path(shutil.move(scratch, self.root / "inbox" / name))

    # ── the process ──────────────────────────────────────────────────────────────────────────────────────

    def start(self, env: dict[str, str] | None = None) -> None:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        full_env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC")}
        full_env.update(env or {})
        with open(self.log, "ab") as log:
            log.write(b"--- start ---\n")
            self.proc = subprocess.Popen([sys.executable, "-m", "daemon.cli", "--config", str(self.root / "afx.toml"),
                                          "run"], cwd=ROOT, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                         env=full_env)
        self.starts = len(self.events("service.start"))

    def stop(self, sig: int = signal.SIGTERM, *, timeout: float = 30.0) -> tuple[int, float]:
        assert self.proc is not None
        started = time.monotonic()
        self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            pytest.fail(f"the service did not exit within {timeout} s after {signal.Signals(sig).name}\n{self.tail()}")
        return code, time.monotonic() - started

    def cleanup(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def wait(self, predicate: Callable[[], Any], *, timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if self.proc is not None and self.proc.poll() is not None:
                pytest.fail(f"the service exited ({self.proc.returncode}) while waiting for {what}\n{self.tail()}")
            if time.monotonic() > deadline:
                pytest.fail(f"timed out after {timeout} s waiting for {what}\n{self.tail()}")
            time.sleep(0.1)

    def tail(self, lines: int = 40) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    # ── what it did ──────────────────────────────────────────────────────────────────────────────────────

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        found = []
        for line in (self.log.read_text(errors="replace").splitlines() if self.log.exists() else []):
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict) and (name is None or event.get("event") == name):
                found.append(event)
        return found

    def jobs(self) -> list[dict[str, Any]]:
        path = self.root / "state" / "ledger.sqlite3"
        if not path.exists():
            return []
        conn = sqlite3.connect(path, timeout=10)
        conn.row_factory = sqlite3.Row
        try:
            return [dict(r) for r in conn.execute("SELECT * FROM jobs ORDER BY created")]
        except sqlite3.OperationalError:  # the schema is not there yet
            return []
        finally:
            conn.close()

    def states(self, kind: str = "render") -> list[str]:
        return sorted(j["state"] for j in self.jobs() if j["kind"] == kind)

    def status(self) -> dict[str, Any]:
        out = subprocess.run([sys.executable, "-m", "daemon.cli", "--config", str(self.root / "afx.toml"),
                              "status", "--json"], cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)

    def renders(self) -> list[str]:
        """Every file under renders/, relative, hidden ones included (partial files must not be there), but
        not the store of kept renders (renders/.store/, published by hard links)."""
        files, _ = self._listing()
        return sorted(f for f in files if STORE not in PurePosixPath(f).parts)

    def partials(self) -> list[str]:
        files, folders = self._listing()
        return [p for p in files + folders if ".partial" in p or p.endswith(".tmp")]

    def _listing(self) -> tuple[list[str], list[str]]:
        """(files, folders) under renders/, relative. The service is running: a folder may vanish or appear
        between being listed and being read (Path.rglob then raises FileNotFoundError); os.walk skips it."""
        base = self.root / "renders"
        files, folders = [], []
        for top, dirs, names in os.walk(base):
            rel = Path(top).relative_to(base)
            folders += [str(rel / d) for d in dirs]
            files += [str(rel / n) for n in names if (Path(top) / n).is_file()]
        return files, folders


@pytest.fixture
def service(tmp_path: Path) -> Iterator[ServiceUnderTest]:
    svc = ServiceUnderTest(tmp_path)
    yield svc
    svc.cleanup()


def report(svc: ServiceUnderTest, rel: str) -> Report:
    return Report.load(svc.root / "renders" / rel)


def failure(svc: ServiceUnderTest, rel: str) -> FailureReport:
    return FailureReport.load(svc.root / "renders" / rel)


def all_done(svc: ServiceUnderTest, count: int) -> Callable[[], bool]:
    return lambda: svc.states() == ["done"] * count


# ── the scenarios of issue 4 ─────────────────────────────────────────────────────────────────────────────

@needs_training
def test_three_tracks_and_two_specs_give_six_videos_exactly_once(service: ServiceUnderTest) -> None:
    service.spec("neon")
    service.spec("calm")
    names = {n: str(track_folder(PurePosixPath(n))) for n in ("one.wav", "two two.flac.wav", "-odd 'name' ü\nline.wav")}
    assert names["two two.flac.wav"] == "two two.flac.wav" and names["-odd 'name' ü\nline.wav"].startswith(
        "-odd 'name' ü_line.wav~")
    for i, name in enumerate(names):
        service.track(name, seed=i)
    service.start()
    service.wait(all_done(service, 6), timeout=150, what="six renders done")

    expected = sorted(f"{folder}/{style}.{ext}" for folder in names.values() for style in ("neon", "calm")
                      for ext in ("mp4", "json"))
    assert service.renders() == expected
    for rel in [e for e in expected if e.endswith(".json")]:
        r = report(service, rel)
        assert r.ok and r.video.frames == 15 and r.video.width == 64
        assert r.style.trained is True and r.job is not None and r.job.by == "afx run"
    done = service.events("job.done")
    assert sorted(e["kind"] for e in done) == ["render"] * 6 + ["train"] * 2
    assert len({e["job"] for e in done}) == 8

    # renaming a file or dropping a copy of it redoes nothing
    (service.root / "inbox" / "one.wav").rename(service.root / "inbox" / "renamed.wav")
    shutil.copy(service.root / "inbox" / "renamed.wav", service.root / "inbox" / "copy.wav")
    service.wait(lambda: any(e.get("tracks") == 4 for e in service.events("scan.done")), timeout=30,
                 what="a scan that sees the copy")
    status = service.status()
    assert status["service"]["state"] == "running"
    assert status["totals"]["done"] == 8 and status["totals"]["queued"] == 0 and not status["running"]
    assert status["counts"]["train"]["done"] == 2 and status["counts"]["render"]["done"] == 6
    code, _ = service.stop()
    assert code == 0

    # …and so does a restart
    service.start()
    service.wait(lambda: len(service.events("service.ready")) == 2, timeout=60, what="the restart's first scan")
    time.sleep(1.0)
    assert service.stop()[0] == 0
    assert len(service.events("job.start")) == 8 and len(service.jobs()) == 8


def test_a_file_written_slowly_is_not_picked_up_before_it_settles(service: ServiceUnderTest) -> None:
    service.configure(settle_s=1.5)
    service.spec("neon", trained=True)
    service.start()
    service.wait(lambda: service.events("service.ready"), timeout=60, what="the service to be ready")

    buffer = io.BytesIO()
    wavfile.write(buffer, SR, synth(2.0, seed=3))
    data = buffer.getvalue()
    target = service.root / "inbox" / "slow.wav"
    chunks = 10
    with open(target, "wb") as f:  # 10 pieces over ~4 s, as a slow network copy writes
        for i in range(chunks):
            f.write(data[i * len(data) // chunks:(i + 1) * len(data) // chunks])
            f.flush()
            time.sleep(0.4)
    finished = time.time()
    service.wait(lambda: "slow.wav/neon.mp4" in service.renders() and service.states()
                 and not {"queued", "running"} & set(service.states()), timeout=60, what="the slow file's render")
    assert service.states() == ["done"], "a half-written file was picked up (and failed)"

    seen = [e for e in service.events("track.seen") if e["track"].endswith("slow.wav")]
    assert len(seen) == 1, "hashed exactly once: only the complete file was ever picked up"
    picked = datetime.fromisoformat(seen[0]["timestamp"].replace("Z", "+00:00")).timestamp()
    assert picked >= finished + 0.9  # the last write was at finished - 0.4; settle_s is 1.5
    assert report(service, "slow.wav/neon.json").track.duration_s == pytest.approx(2.0, abs=0.05)
    assert len(service.jobs()) == 1


def test_a_corrupt_file_gets_a_failure_report_and_the_rest_completes(service: ServiceUnderTest) -> None:
    service.spec("neon", trained=True)
    service.track("good.wav")
    (service.root / "inbox" / "corrupt.wav").write_bytes(b"RIFF\x00\x01\x02\x03WAVEfmt " + os.urandom(3000))
    outside = write_wav(service.root / "outside" / "secret.wav", synth(1.5))
    (service.root / "inbox" / "escape.wav").symlink_to(outside)
    service.start()
    service.wait(lambda: service.states() == ["bad_input", "done"], timeout=90, what="good done, corrupt bad input")

    files = service.renders()
    assert "good.wav/neon.mp4" in files and "corrupt.wav/neon.mp4" not in files
    corrupt = failure(service, "corrupt.wav/neon.error.json")
    assert corrupt.ok is False and corrupt.stage == "render"
    assert corrupt.error.type == "AudioError" and corrupt.error.transient is False
    assert corrupt.track is not None and corrupt.track.endswith("corrupt.wav")
    assert corrupt.job is not None and corrupt.job.state == "bad_input"
    refused = failure(service, "_inbox/escape.wav.error.json")
    assert "leads out of the watched folder" in refused.error.message

    status = service.status()
    assert status["totals"]["bad_input"] == 1 and status["totals"]["done"] == 1
    assert [e["state"] for e in status["errors"]] == ["bad_input"] and "corrupt.wav" in status["errors"][0]["job"]
    assert [p["kind"] for p in status["problems"]] == ["inbox"]

    # bad input is not retried until the file changes; a fixed file renders and clears the report
    write_wav(service.root / "fixed.wav", synth(1.5, seed=9))
    os.replace(service.root / "fixed.wav", service.root / "inbox" / "corrupt.wav")
    service.wait(lambda: service.states() == ["bad_input", "done", "done"], timeout=60, what="the fixed file")
    service.wait(lambda: "corrupt.wav/neon.error.json" not in service.renders(), timeout=10, what="stale report gone")
    assert service.stop()[0] == 0


def test_sigkill_during_a_render_then_restart_completes_without_partial_or_duplicate_output(
        service: ServiceUnderTest) -> None:
    service.spec("big", size=(320, 180), fps=25, trained=True)
    service.spec("small", trained=True, seed=1)
    service.track("long.wav", seconds=8.0)
    service.track("short.wav", seed=2)
    service.start()
    service.wait(service.partials, timeout=90, what="a render in progress")
    service.stop(signal.SIGKILL)
    assert any(j["state"] == "running" for j in service.jobs()), "killed while a job held its lease"

    service.start()
    service.wait(all_done(service, 4), timeout=120, what="every render after the restart")
    service.wait(lambda: not service.partials(), timeout=20, what="scratch files of the killed run removed")
    assert service.events("job.recovered")
    assert not service.events("jobs.superseded"), "a restart must not set aside the jobs of known tracks"
    assert service.renders() == sorted(f"{t}/{s}.{e}" for t in ("long.wav", "short.wav") for s in ("big", "small")
                                       for e in ("json", "mp4"))
    assert report(service, "long.wav/big.json").video.frames == 200
    assert service.stop()[0] == 0


def test_sigterm_stops_cleanly_within_the_timeout_and_systemd_hears_of_it(service: ServiceUnderTest) -> None:
    service.configure(stop_timeout_s=10.0)
    service.spec("big", size=(320, 180), fps=25, trained=True)
    address = f"@afx-test-{uuid.uuid4().hex}"
    messages: list[str] = []
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(b"\0" + address[1:].encode())
        sock.settimeout(0.2)

        def listen() -> None:
            while not stopped.is_set():
                try:
                    messages.append(sock.recv(4096).decode())
                except OSError:
                    pass

        stopped = threading.Event()
        listener = threading.Thread(target=listen, daemon=True)
        listener.start()
        service.start(env={"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "4000000"})
        service.wait(lambda: any(m.startswith("READY=1") for m in messages), timeout=60, what="READY=1")

        service.configure(stop_timeout_s=10.0, rescan_s=3.0, workers=2)  # SIGHUP reloads afx.toml
        service.proc.send_signal(signal.SIGHUP)
        service.wait(lambda: service.events("config.reloaded"), timeout=20, what="the reload")
        assert service.events("config.reloaded")[0]["changed"] == ["workers", "rescan_s"]
        assert service.events("config.needs_restart")[0]["settings"] == ["workers"]

        service.track("long.wav", seconds=16.0)  # 400 frames at 320×180: seconds of rendering
        service.wait(lambda: any(j["progress_total"] for j in service.jobs()), timeout=60,
                     what="a render in progress")
        [running] = service.status()["running"]
        assert running["job"] == "render long.wav × big" and running["total"] == 400 and running["device"] == "cpu"
        assert 0 < running["done"] <= 400 and running["eta_s"] is not None
        assert service.partials(), "still rendering when SIGTERM comes"
        code, seconds = service.stop(signal.SIGTERM)
        time.sleep(0.3)
        stopped.set()
        listener.join(timeout=2)
    assert code == 0 and seconds < 10.0
    assert not service.partials() and "long.wav/big.mp4" not in service.renders()
    [job] = service.jobs()
    assert job["state"] == "queued" and job["attempts"] == 0 and job["lease_owner"] is None
    assert service.events("job.stopped")
    assert any(m.startswith("WATCHDOG=1") for m in messages)
    assert any(m.startswith("STATUS=") or "\nSTATUS=" in m for m in messages)
    assert messages[-1].startswith("STOPPING=1")


@needs_training
def test_an_edited_spec_retrains_and_rerenders(service: ServiceUnderTest) -> None:
    service.spec("neon", "neon shapes")
    service.track("song.wav")
    service.start()
    service.wait(all_done(service, 1), timeout=120, what="the first version's render")
    first = report(service, "song.wav/neon.json").style.id

    service.spec("neon", "neon shapes, but pink")
    service.wait(lambda: service.states() == ["done", "done"] and service.states("train") == ["done", "done"],
                 timeout=120, what="the edited spec's training and render")
    second = report(service, "song.wav/neon.json").style.id
    assert second != first
    assert sorted(p.name for p in (service.root / "library" / "neon").iterdir() if p.is_dir()) == sorted([first, second])
    assert [f for f in service.renders() if f.startswith("song.wav/")] == ["song.wav/neon.json", "song.wav/neon.mp4"]
    status = service.status()
    assert status["counts"]["train"]["done"] == 2 and status["counts"]["render"]["done"] == 2

    shutil.rmtree(service.root / "library" / "neon" / second)  # deleted by hand: trained again, not waited for
    service.track("other.wav", seed=1)
    service.wait(lambda: service.states() == ["done", "done", "done"], timeout=120, what="a render after retraining")
    assert (service.root / "library" / "neon" / second / "style.json").is_file()
    assert len([e for e in service.events("job.start") if e["kind"] == "train"]) == 3
    assert report(service, "other.wav/neon.json").style.id == second
    assert service.stop()[0] == 0


def test_a_spec_with_a_syntax_error_is_reported_and_its_previous_version_keeps_serving(
        service: ServiceUnderTest) -> None:
    spec = service.spec("neon", trained=True)
    good_id = load_specs(spec)[0].style_id
    service.track("first.wav")
    service.start()
    service.wait(all_done(service, 1), timeout=90, what="the first render")

    spec.write_text(spec.read_text() + "\n[[[ a syntax error\n")
    error_report = service.root / "renders" / "_specs" / "neon.toml.error.json"
    service.wait(error_report.is_file, timeout=30, what="the spec's error report")
    broken = FailureReport.load(error_report)
    assert broken.error.type == "SpecError" and "not valid TOML" in broken.error.message
    assert broken.still_serving == [good_id]
    service.wait(lambda: service.status()["problems"], timeout=20, what="status to show the problem")
    assert "neon.toml" in service.status()["problems"][0]["source"]

    service.track("second.wav", seed=5)
    service.wait(all_done(service, 2), timeout=60, what="the second track, rendered with the previous version")
    assert report(service, "second.wav/neon.json").style.id == good_id

    new_id = load_specs(service.spec("neon", "neon shapes, fixed", trained=True, seed=4))[0].style_id
    service.wait(lambda: not error_report.exists(), timeout=30, what="the error report to go away")
    service.wait(lambda: sorted(j["style_id"] for j in service.jobs() if j["state"] == "done").count(new_id) == 2,
                 timeout=60, what="both tracks re-rendered with the fixed spec")
    assert not service.status()["problems"]
    assert service.stop()[0] == 0


# ── identity: names, "current" videos, stable style names (issue 9) ─────────────────────────────────────

def published(svc: ServiceUnderTest, track: str, style: str) -> Path:
    return video_path(svc.root / "renders", track_folder(PurePosixPath(track)), style)


def assert_current(svc: ServiceUnderTest, track: str, style: str) -> Report:
    """The pair's video and report exist, and the report describes the file now at the track's path."""
    video = published(svc, track, style)
    r = Report.load(video.with_suffix(".json"))
    assert r.track.path == str(svc.root / "inbox" / track) and r.video.path == str(video)
    assert r.track.sha256 == file_sha256(svc.root / "inbox" / track), f"{video} is stale"
    assert video.is_file() and r.video.bytes == video.stat().st_size and r.published is not None
    return r


def test_a_burst_of_colliding_and_non_ascii_names_gets_one_video_each(service: ServiceUnderTest) -> None:
    service.spec("tiny", trained=True)
    service.spec("tiny.error", trained=True, seed=1)  # its files must never be taken for tiny's error report
    names = ["x.wav", "x.flac", "sub/song.wav", "sub-song.wav", 'Björk – "Jóga".wav', "ネオン's track.wav",
             "Bjo\u0308rk.wav", "Björk.wav", "_specs", "_inbox.wav", "a?b.wav", "a_b.wav",
             "deep/er/" + "ü" * 120 + ".wav"]
    for i, name in enumerate(names):
        (service.root / "inbox" / name).parent.mkdir(parents=True, exist_ok=True)
        service.track(name, seed=i)
    service.start()
    service.wait(all_done(service, 2 * len(names)), timeout=300, what="every track × style rendered")

    videos = {published(service, n, s) for n in names for s in ("tiny", "tiny.error")}
    assert len(videos) == 2 * len(names), "two pairs share a video"
    for name in names:
        for style in ("tiny", "tiny.error"):
            assert_current(service, name, style)
    assert len({v.stat().st_ino for v in videos}) == len(videos), "each pair shows its own render"
    assert not [f for f in service.renders() if f.endswith(".error.json")]
    assert not (service.root / "renders" / "_specs").exists() and not (service.root / "renders" / "_inbox").exists()
    assert sum(f.endswith(".mp4") for f in service.renders()) == 2 * len(names)
    assert service.stop()[0] == 0


def test_reverts_publish_the_current_version_again_without_rendering_it_again(service: ServiceUnderTest) -> None:
    settings = {"width": 64, "height": 36, "fps": 10}
    v1 = load_specs(service.spec("neon", "version one", trained=True))[0].style_id
    song = service.track("song.wav", seed=1)
    content_a = file_sha256(song)
    service.start()
    service.wait(all_done(service, 1), timeout=90, what="content A rendered")
    video = published(service, "song.wav", "neon")

    def shows(sha: str, style_id: str) -> Callable[[], bool]:
        stored = store_video(service.root / "renders", render_key(sha, style_id, settings))
        return lambda: (video.is_file() and stored.is_file() and video.stat().st_ino == stored.stat().st_ino
                        and Report.load(video.with_suffix(".json")).track.sha256 == sha)

    service.track("song.wav", seed=2)  # content B
    content_b = file_sha256(song)
    service.wait(shows(content_b, v1), timeout=90, what="content B published")
    service.track("song.wav", seed=1)  # back to A: its kept render is published again
    service.wait(shows(content_a, v1), timeout=60, what="content A published again")
    assert_current(service, "song.wav", "neon")

    v2 = load_specs(service.spec("neon", "version two", trained=True, seed=3))[0].style_id
    service.wait(shows(content_a, v2), timeout=90, what="spec v2 published")
    assert load_specs(service.spec("neon", "version one", trained=True))[0].style_id == v1
    service.wait(shows(content_a, v1), timeout=60, what="spec v1 published again")
    renders_started = len([e for e in service.events("job.start") if e["kind"] == "render"])
    assert renders_started == 3, "A×v1, B×v1, A×v2: a revert renders nothing again"

    # a newcomer claiming the name is refused: nothing of it is trained, rendered or published
    intruder = service.root / "specs" / "aaa.toml"
    intruder.write_text('name = "neon"\n' + SPEC.format(prompt="intruder", width=64, height=36, fps=10))
    error = service.root / "renders" / "_specs" / "aaa.toml.error.json"
    service.wait(error.is_file, timeout=30, what="the intruder's error report")
    assert "already belongs to" in FailureReport.load(error).error.message
    time.sleep(2.5)  # a rescan later: still nothing of it
    assert service.states("train") == [] and shows(content_a, v1)()
    intruder.unlink()
    service.wait(lambda: not error.exists(), timeout=30, what="the report to go once the intruder is gone")
    assert shows(content_a, v1)() and service.states("train") == []
    assert len([e for e in service.events("job.start") if e["kind"] == "render"]) == 3
    assert service.stop()[0] == 0


# ── sweeps (issue 11 item 6) ─────────────────────────────────────────────────────────────────────────────

@needs_training
def test_the_service_writes_a_sweeps_comparison_as_afx_train_does(service: ServiceUnderTest) -> None:
    """A sweep spec dropped into specs/ (any depth): the service trains its variants and, through the same
    pipeline function as `afx train`, writes library/_sweeps/<spec>/comparison.html after each one."""
    sweep = service.root / "specs" / "sweeps" / "sw.toml"
    sweep.parent.mkdir()
    sweep.write_text(SPEC.format(prompt="sweep shapes", width=64, height=36, fps=10)
                     + '[sweep]\n"network.width" = [8, 16]\n')
    service.track("song.wav")
    service.start()
    service.wait(lambda: service.states("train") == ["done", "done"] and all_done(service, 2)(), timeout=300,
                 what="two variants trained and rendered")
    out = service.root / "library" / "_sweeps" / "sw"
    service.wait(lambda: (out / "comparison.json").is_file() and all(
        v["trained"] for v in json.loads((out / "comparison.json").read_text())["variants"]), timeout=30,
        what="the comparison with both variants")
    assert service.stop()[0] == 0
    table = json.loads((out / "comparison.json").read_text())
    assert [v["name"] for v in table["variants"]] == ["sw--width-8", "sw--width-16"]
    for v in table["variants"]:
        assert v["audio"].startswith("song.wav ")  # the inbox track both variants were trained on
        assert 0 < v["temporal_ssim_mean"] <= 1 and v["detail"] > 0 and v["render_fps"] > 0
        assert v["seconds"] > 0 and v["clip_similarity"] is None  # afx-tiny: no trained guide, no similarity
    page = (out / "comparison.html").read_text()
    assert page.count("<tr>") == 3 and "palette match" in page and "render fps" in page
    assert len(service.events("sweep.comparison")) == 2  # rewritten after each variant
    assert not any(e.get("event") == "sweep.comparison_failed" for e in service.events())
