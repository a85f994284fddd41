"""Highlights (issue 13): the most energetic window of a track, and `afx render --highlight`'s clip of it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from daemon.audio.features import FeatureTimeline
from daemon.highlight import best_window
from tests.conftest import synth, write_wav


def timeline(level: np.ndarray, onset: np.ndarray, fps: float = 10.0) -> FeatureTimeline:
    n = len(level)
    channels = np.stack([np.zeros(n), np.zeros(n), level], axis=1).astype(np.float32)
    return FeatureTimeline(sets=("fft",), names=("x",), values=np.zeros((n, 1), np.float32), fps=fps,
                           onset=onset.astype(np.float32), normalisation={}, channels=channels)


def test_the_loudest_busiest_window_wins_and_says_why() -> None:
    level = np.full(300, 0.2)
    level[100:160] = 0.9  # a loud drone …
    level[200:260] = 0.8  # … loses to a slightly quieter passage full of hits
    onset = np.zeros(300)
    onset[200:260:5] = 1.0
    onset[200:260] += 0.3
    w = best_window(timeline(level, onset), seconds=6.0)
    assert (w.start, w.stop, w.start_s, w.duration_s) == (200, 260, 20.0, 6.0)
    report = w.to_report()
    assert report["start_s"] == 20.0 and report["frames"] == 60 and not w.whole_track
    assert "most energetic 6 s" in report["why"] and "0.80" in report["why"]
    json.dumps(report)  # plain JSON values


def test_a_track_shorter_than_the_window_is_taken_whole() -> None:
    w = best_window(timeline(np.full(50, 0.5), np.zeros(50)), seconds=30.0)
    assert (w.start, w.stop, w.whole_track) == (0, 50, True) and "only 5.0 s long" in w.why()
    with pytest.raises(ValueError):
        best_window(timeline(np.full(50, 0.5), np.zeros(50)), seconds=0)


@pytest.mark.slow
def test_afx_render_highlight_writes_the_window_and_its_report(tmp_path: Path) -> None:
    audio = np.concatenate([synth(3.0, kind="silence"), synth(2.0, gain=0.8), synth(3.0, kind="silence")])
    track = write_wav(tmp_path / "quiet-loud-quiet.wav", audio)
    out = subprocess.run([sys.executable, "-m", "daemon.cli", "render", str(track), "--style", "random:1",
                          "--size", "64x36", "--fps", "10", "--highlight", "2"], cwd=tmp_path, capture_output=True,
                         text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stderr
    assert "highlight: 2 s from" in out.stdout
    video = next((tmp_path / "renders").rglob("random-1@64x36-10fps@highlight-2s.mp4"))
    report = json.loads(video.with_suffix(".json").read_text())
    from daemon.report import Report
    assert Report.load(video.with_suffix(".json")).highlight == report["highlight"]  # the schema knows it
    h = report["highlight"]
    assert 2.5 <= h["start_s"] <= 3.5 and h["duration_s"] == 2.0 and "most energetic" in h["why"]
    assert report["video"]["frames"] == 20
    probe = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "stream=codec_type,duration", "-of", "json",
                            str(video)], capture_output=True, text=True, check=True)
    durations = {s["codec_type"]: float(s["duration"]) for s in json.loads(probe.stdout)["streams"]}
    assert durations["video"] == pytest.approx(2.0, abs=0.05)
    assert durations["audio"] == pytest.approx(2.0, abs=0.1)
    pcm = subprocess.run(["ffmpeg", "-v", "error", "-i", str(video), "-f", "f32le", "-ac", "1", "-"],
                         capture_output=True, check=True).stdout
    rms = float(np.sqrt(np.mean(np.frombuffer(pcm, dtype=np.float32) ** 2)))
    assert rms > 0.05, rms  # the loud window's sound, not the track's silent first 2 s
    bad = subprocess.run([sys.executable, "-m", "daemon.cli", "render", str(track), "--style", "random:1",
                          "--highlight", "0"], cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False)
    assert bad.returncode == 2 and "--highlight" in bad.stderr
