"""One rule for what a track is: the planner renders, and training samples, the same inbox files."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from daemon.config import Limits
from daemon.spec import parse_spec
from daemon.tracks import inbox_references, is_track


def test_training_samples_the_files_the_service_renders(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    names = ["song.wav", "song.toml", "cover.jpg", "notes.txt", "x.wav.part", ".hidden.wav", "~lock.wav",
             "live/clip.mp4", "live/.git/head.wav"]
    for name in names:
        (inbox / name).parent.mkdir(parents=True, exist_ok=True)
        (inbox / name).write_bytes(b"\0")
    spec = parse_spec({"prompts": ["x"]}, path=None, name="any", limits=Limits())
    rendered = [inbox / n for n in sorted(names) if is_track(PurePosixPath(n))]
    # a video with sound is a track to the service (ffmpeg decodes it), so training may sample it too
    assert rendered == [inbox / "live" / "clip.mp4", inbox / "song.wav"]
    assert inbox_references(spec, inbox) == rendered
