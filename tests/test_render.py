"""A real render through ffmpeg: a playable MP4 with sound, the right length, and its report."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from daemon.cli import main
from daemon.encode import probe
from daemon.report import Report

METRICS = {"temporal_ssim_mean", "temporal_ssim_min", "motion_energy", "onset_alignment", "loud_quiet_contrast",
           "onset_correlation"}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> tuple[Path, Report, Path]:
    from tests.conftest import synth, write_wav

    root = tmp_path_factory.mktemp("render")
    audio = write_wav(root / "three seconds.wav", synth(3.0))
    out = root / "out" / "video.mp4"
    code = main(["render", str(audio), "--style", "random:5", "--size", "64x36", "--fps", "24", "-o", str(out)])
    assert code == 0
    return out, Report.load(out.with_suffix(".json")), audio


def test_video_has_audio_and_matches_the_track_length(rendered):
    out, _, _ = rendered
    info = probe(out)
    kinds = {s["codec_type"]: s for s in info["streams"]}
    assert kinds["video"]["codec_name"] == "h264" and kinds["video"]["pix_fmt"] == "yuv420p"
    assert (kinds["video"]["width"], kinds["video"]["height"]) == (64, 36)
    assert kinds["audio"]["codec_name"] == "aac"
    video_s = float(kinds["video"]["duration"])
    assert abs(video_s - 3.0) <= 1 / 24, f"video lasts {video_s} s for 3 s of audio"
    assert abs(float(kinds["audio"]["duration"]) - 3.0) < 0.05
    # +faststart: the moov atom comes before the media data
    head = out.read_bytes()[:4096]
    assert head.find(b"moov") != -1 and (head.find(b"mdat") == -1 or head.find(b"moov") < head.find(b"mdat"))


def test_report_fields(rendered):
    out, report, audio = rendered
    assert report.schema == "afx.report/1" and report.ok is True and report.job is None
    assert METRICS <= set(report.metrics), f"metrics lack {METRICS - set(report.metrics)}"
    assert report.track.path == str(audio) and report.track.duration_s == pytest.approx(3.0, abs=1e-3)
    assert report.video.frames == 72 and report.video.fps == 24 and (report.video.width, report.video.height) == (64, 36)
    assert report.video.bytes == out.stat().st_size and report.video.path == str(out)
    assert report.style.trained is False and report.style.id.startswith("random-5-")
    assert report.timing.realtime_factor == pytest.approx(3.0 / report.timing.total_s, rel=0.01)
    m = report.metrics
    assert isinstance(m["temporal_ssim_min"], float) and isinstance(m["temporal_ssim_mean"], float)
    assert 0.0 < m["temporal_ssim_min"] <= m["temporal_ssim_mean"] <= 1.0
    assert isinstance(m["onset_correlation"], float) and -1.0 <= m["onset_correlation"] <= 1.0
    assert isinstance(m["motion_energy"], float) and m["motion_energy"] > 0
    assert isinstance(m["onset_alignment"], float) and 0.0 <= m["onset_alignment"] <= 1.0
    assert report.device == "cpu" and {"afx", "torch", "ffmpeg"} <= set(report.versions)
    assert not list(out.parent.glob(".*partial*")), "scratch files must be gone"
    # whoever may read the video may read its report (mkstemp alone makes it 0600)
    assert stat.S_IMODE(out.with_suffix(".json").stat().st_mode) == stat.S_IMODE(out.stat().st_mode)


def test_default_output_goes_to_renders(tmp_path, make_wav, monkeypatch, capsys):
    """The service's naming rule: the inbox path kept (Unicode, extension), and a settings tag unless the
    render is at the style's own settings — so a small test render never replaces another's video."""
    monkeypatch.chdir(tmp_path)
    audio = make_wav("inbox/live/Mÿ Sóng.wav", 1.5, kind="silence")  # silence renders fine too
    assert main(["render", str(audio), "--style", "random:1", "--size", "32x18", "--fps", "10"]) == 0
    video = tmp_path / "renders" / "live" / "Mÿ Sóng.wav" / "random-1@32x18-10fps.mp4"
    assert video.is_file() and video.with_suffix(".json").is_file()
    line = capsys.readouterr().out
    assert "x real time" in line and str(video) in line
    first = video.stat()

    assert main(["render", str(audio), "--style", "random:1", "--size", "48x28", "--fps", "10"]) == 0
    other = video.with_name("random-1@48x28-10fps.mp4")
    assert other.is_file() and video.stat().st_ino == first.st_ino and video.stat().st_mtime_ns == first.st_mtime_ns

    outside = make_wav("elsewhere/Mÿ Sóng.wav", 1.5, kind="silence")  # not in the inbox: a hash of its path
    assert main(["render", str(outside), "--style", "random:1", "--size", "32x18", "--fps", "10"]) == 0
    [folder] = [p for p in (tmp_path / "renders").iterdir() if p.name.startswith("Mÿ Sóng.wav~")]
    assert (folder / "random-1@32x18-10fps.mp4").is_file() and video.stat().st_ino == first.st_ino
