"""Identity: one naming rule for outputs, atomic writes, stable style names and upgrade-safe style ids."""

from __future__ import annotations

import os
import threading
from pathlib import Path, PurePosixPath

import pytest

from daemon.atomic import atomic_path, atomic_replace_dir, atomic_write_text, scratch_pid
from daemon.naming import (INBOX_REPORTS, SPECS_REPORTS, STYLE_REPORTS, error_report_path, report_path,
                           settings_tag, style_stem, track_folder, video_path)

RENDERS = Path("/r")


def published(rel: str, style: str = "neon", tag: str = "") -> Path:
    return video_path(RENDERS, track_folder(PurePosixPath(rel)), style, tag)


# ── the naming rule ──────────────────────────────────────────────────────────────────────────────────────

def test_names_stay_readable_unicode_kept_and_nfc_normalised() -> None:
    assert published("Björk – Jóga.flac") == Path("/r/Björk – Jóga.flac/neon.mp4")
    assert published("live/set 1.flac") == Path("/r/live/set 1.flac/neon.mp4")
    decomposed = "Bjo\u0308rk.wav"  # macOS writes names decomposed: the same folder as the composed name
    assert track_folder(PurePosixPath(decomposed)) == PurePosixPath("Björk.wav")
    assert published("don't stop.mp3", "ネオン") == Path("/r/don't stop.mp3/ネオン.mp4")


@pytest.mark.parametrize("a, b", [
    ("x.wav", "x.mp3"),  # same stem, other extension
    ("sub/song.wav", "sub-song.wav"),  # a folder vs a dash
    ("a?.wav", "a_.wav"),  # an unsafe character vs the character it is replaced by
    ('say "hi".wav', "say _hi_.wav"),
    ("a\nb.wav", "a_b.wav"),  # control characters
    (".hidden.wav", "_hidden.wav"),
    ("x" * 300 + "1.wav", "x" * 300 + "2.wav"),  # long names that share their first 240 bytes
    ("ü" * 200 + ".wav", "ü" * 200 + ".flac"),
    ("a.wav~0123abcd", "a.wav"),  # a name that looks like a hashed one
])
def test_different_tracks_never_share_a_folder(a: str, b: str) -> None:
    assert track_folder(PurePosixPath(a)) != track_folder(PurePosixPath(b))


def test_long_names_are_kept_within_the_file_system_limit_with_a_hash_not_cut() -> None:
    long = "ü" * 300 + ".wav"
    folder = track_folder(PurePosixPath(long)).name
    assert len(folder.encode()) <= 255 and folder.startswith("ü" * 50) and folder[-9] == "~"
    video = published(long, "s" * 300)
    assert all(len(part.encode()) <= 255 for part in error_report_path(video).parts)


@pytest.mark.parametrize("track", ["_specs", "_inbox", "_styles", "_specs.wav", ".store"])
def test_tracks_never_land_in_afx_own_folders(track: str) -> None:
    top = track_folder(PurePosixPath(track)).parts[0]
    assert top not in (SPECS_REPORTS, INBOX_REPORTS, STYLE_REPORTS, ".store") and not top.startswith(".")


def test_a_style_name_can_never_name_another_style_s_report() -> None:
    tiny = published("a.wav", "tiny")
    sneaky = published("a.wav", "tiny.error")
    names = {tiny, report_path(tiny), error_report_path(tiny)}
    assert not names & {sneaky, report_path(sneaky), error_report_path(sneaky)}
    tagged = published("a.wav", "tiny", settings_tag({"width": 64, "height": 36, "fps": 10},
                                                       {"width": 1280, "height": 720, "fps": 30}))
    assert tagged.name == "tiny@64x36-10fps.mp4"
    assert published("a.wav", "tiny@64x36-10fps") != tagged  # `@` in a style name is hashed
    assert style_stem("neon") == "neon" and style_stem("a/b") != "a_b"


def test_the_settings_tag_appears_only_off_the_style_s_own_settings() -> None:
    own = {"width": 1280, "height": 720, "fps": 30}
    assert settings_tag(dict(own), own) == ""
    assert settings_tag({**own, "fps": 24}, own) == "@1280x720-24fps"


# ── atomic writes ────────────────────────────────────────────────────────────────────────────────────────

def test_concurrent_mood_boards_never_collide(tmp_path: Path) -> None:
    """Two trainings finishing together both write library/index.html (a fixed temp name collided)."""
    from daemon.board import write_mood_board
    from daemon.library import Library

    library = Library(tmp_path)
    errors: list[BaseException] = []

    def write() -> None:
        for _ in range(40):
            try:
                write_mood_board(library)
            except BaseException as e:  # noqa: BLE001
                errors.append(e)

    threads = [threading.Thread(target=write) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:1]
    assert (tmp_path / "index.html").read_text().endswith("</html>\n")
    assert [p.name for p in tmp_path.iterdir()] == ["index.html"]


def test_atomic_path_publishes_whole_or_not_at_all(tmp_path: Path) -> None:
    dest = tmp_path / "v.mp4"
    atomic_write_text(dest, "old")
    with pytest.raises(RuntimeError), atomic_path(dest) as tmp:
        assert tmp.parent == tmp_path and tmp.suffix == ".mp4" and scratch_pid(tmp.name) == os.getpid()
        tmp.write_text("half")
        raise RuntimeError("encoder died")
    assert dest.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["v.mp4"]
    with atomic_path(dest) as tmp:
        tmp.write_text("new")
    assert dest.read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["v.mp4"]
    assert oct(dest.stat().st_mode & 0o777) != oct(0o600)  # the umask's mode, not mkstemp's


def test_atomic_replace_dir_swaps_whole_folders(tmp_path: Path) -> None:
    dest = tmp_path / "style"
    with atomic_replace_dir(dest) as scratch:
        (scratch / "a").write_text("1")
    with pytest.raises(RuntimeError), atomic_replace_dir(dest) as scratch:
        (scratch / "b").write_text("2")
        raise RuntimeError("training crashed")
    assert sorted(p.name for p in dest.iterdir()) == ["a"]
    with atomic_replace_dir(dest) as scratch:
        (scratch / "b").write_text("2")
    assert sorted(p.name for p in dest.iterdir()) == ["b"] and [p.name for p in tmp_path.iterdir()] == ["style"]
