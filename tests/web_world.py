"""A small afx world for the dashboard's tests, built without torch or a service: an afx.toml, a ledger with
a done, a failed and a queued render, a real (tiny) published MP4 with its report, a style version in the
library and a sweep comparison page."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from PIL import Image

from daemon.config import ServiceConfig, load_config
from daemon.library import Library
from daemon.naming import store_video, track_folder, video_path
from daemon.service.ledger import Ledger, NewJob, render_key
from tests.conftest import synth, write_wav

STYLE_ID = "0123456789ab"
EVIL = "<script>alert(1)</script>"  # in style names, prompts and error messages
EVIL_TRACK = "<script>alert(1).wav"  # a file name cannot hold the `/` of a closing tag; unclosed is worse


@dataclass
class World:
    root: Path
    config: ServiceConfig
    track: Path  # inbox/<script>alert(1).wav
    video: Path  # its published video
    style_folder: Path
    done_key: str
    failed_key: str
    queued_key: str


def tiny_mp4(path: Path, *, seconds: float = 4.0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc=size=64x36:rate=10:d={seconds}",
                    "-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}", "-c:v", "libx264", "-pix_fmt",
                    "yuv420p", "-g", "10", "-c:a", "aac", "-shortest", "-movflags", "+faststart", str(path)],
                   check=True, capture_output=True, timeout=60)
    return path


def build_world(root: Path, *, web: str = 'listen = "127.0.0.1:0"') -> World:
    (root / "afx.toml").write_text(f"settle_s = 0.5\nrescan_s = 2.0\ndevice = \"cpu\"\n\n[web]\n{web}\n")
    for name in ("inbox", "specs", "library", "renders", "state"):
        (root / name).mkdir(parents=True, exist_ok=True)
    config = load_config(root / "afx.toml")
    track = write_wav(root / "inbox" / EVIL_TRACK, synth(1.0))
    other = write_wav(root / "inbox" / "calm.wav", synth(1.0, seed=3))
    (root / "specs" / "neon.toml").write_text('prompts = ["neon"]\n')
    ledger = Ledger(root / "state" / "ledger.sqlite3")
    sha, other_sha = "a" * 64, "b" * 64
    for path, digest in ((track, sha), (other, other_sha)):
        st = path.stat()
        ledger.record_track(path, sha256=digest, size=st.st_size, mtime_ns=st.st_mtime_ns)
    ledger.set_spec_styles(str(root / "specs" / "neon.toml"), [(STYLE_ID, "neon", {"name": "neon"}),
                                                                ("fedcba987654", EVIL, {"name": EVIL})])
    settings = {"width": 64, "height": 36, "fps": 10}
    done_key = render_key(sha, STYLE_ID, settings)
    failed_key = render_key(other_sha, STYLE_ID, settings)
    queued_key = render_key(sha, "fedcba987654", settings)
    renders = config.path("renders")
    ledger.ensure_jobs([
        NewJob(key=done_key, kind="render", style_id=STYLE_ID, style_name="neon", settings=settings,
               output=str(store_video(renders, done_key)), track_sha=sha, track_path=str(track)),
        NewJob(key=failed_key, kind="render", style_id=STYLE_ID, style_name="neon", settings=settings,
               output=str(store_video(renders, failed_key)), track_sha=other_sha, track_path=str(other)),
        NewJob(key=queued_key, kind="render", style_id="fedcba987654", style_name=EVIL, settings=settings,
               output=str(store_video(renders, queued_key)), track_sha=sha, track_path=str(track))])
    failure_report = renders / "calm.wav" / "neon.error.json"
    failure_report.parent.mkdir(parents=True)
    error = {"type": "AudioError", "message": f"bad {EVIL}", "summary": f"calm.wav: ffmpeg could not decode {EVIL}",
             "hint": "re-export the file", "transient": False, "report": str(failure_report),
             "time": "2026-12-02T08:00:00+00:00"}
    failure_report.write_text(json.dumps({"schema": "afx.failure/1", "ok": False, "stage": "render",
                                          "error": error, "time": error["time"]}))
    with ledger.transaction() as conn:
        conn.execute("UPDATE jobs SET state = 'done', started = 100.0, updated = 112.5 WHERE key = ?", (done_key,))
        conn.execute("UPDATE jobs SET state = 'bad_input', attempts = 1, error_json = ? WHERE key = ?",
                     (json.dumps(error), failed_key))
    video = tiny_mp4(video_path(renders, track_folder(PurePosixPath(EVIL_TRACK)), "neon"))
    video.with_suffix(".json").write_text(json.dumps({
        "schema": "afx.report/1", "ok": True, "video": {"width": 64, "height": 36, "fps": 10, "frames": 40,
                                                       "duration_s": 4.0},
        "timing": {"total_s": 2.0, "realtime_factor": 2.0}, "device": "cpu",
        "metrics": {"temporal_ssim_mean": 0.91, "motion_energy": 0.2, "onset_alignment": 0.4,
                    "loud_quiet_contrast": 1.5, "onset_correlation": 0.3}}))
    ledger.set_output(video, key=done_key, track_path=str(track), style_name="neon")
    ledger.close()
    folder = Library(config.path("library")).folder_for("neon", STYLE_ID)
    folder.mkdir(parents=True)
    (folder / "style.json").write_text(json.dumps({
        "name": "neon", "id": STYLE_ID, "created": "2026-12-02T08:00:00+00:00",
        "spec": {"prompts": [{"text": f"neon {EVIL}"}], "palette": ["#ff0088", "red;background:url(x)", "#00ffcc"]},
        "guidance": {"clip_model": "afx-tiny", "trained_guidance": False},
        "training": {"mean_similarity": 0.25, "seconds": 3.0, "metrics": {"motion_energy": 0.3}}}))
    Image.new("RGB", (192, 36), (200, 40, 120)).save(folder / "preview.png")
    Image.new("RGB", (160, 90), (30, 30, 30)).save(folder / "curve.png")
    sweep = config.path("library") / "_sweeps" / "organic"
    sweep.mkdir(parents=True)
    (sweep / "comparison.html").write_text("<!doctype html><title>sweep</title><h1>organic sweep</h1>")
    (sweep / "comparison.json").write_text(json.dumps({"title": "sweep: organic.toml", "variants": [{}, {}]}))
    return World(root=root, config=config, track=track, video=video, style_folder=folder, done_key=done_key,
                 failed_key=failed_key, queued_key=queued_key)
