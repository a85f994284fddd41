"""Bad input: one clear line naming the file and what to do, a non-zero exit, nothing partial left behind."""

from __future__ import annotations

from pathlib import Path

import pytest

from daemon.cli import main


def run_render(audio: Path, out: Path, capsys) -> tuple[int, str]:
    code = main(["render", str(audio), "--style", "random:1", "--size", "32x18", "--fps", "10", "-o", str(out)])
    err = capsys.readouterr().err.strip()
    return code, err


def assert_clean_failure(code: int, err: str, out: Path, *, mentions: list[str]) -> None:
    assert code != 0
    lines = err.splitlines()
    assert len(lines) == 1, f"expected one line, got: {err!r}"
    assert lines[0].startswith("afx: error: ")
    for word in mentions:
        assert word in lines[0], f"{word!r} not in {lines[0]!r}"
    assert " — " in lines[0], "the line must say what to do"
    if out.parent.exists():
        assert sorted(p.name for p in out.parent.iterdir()) == [], "no partial video or report may remain"


@pytest.mark.parametrize("name,content,words", [
    ("corrupt.flac", b"fLaC\x00\x00\x00\x22" + bytes(range(256)) * 8, ["could not decode"]),
    ("empty.wav", b"", ["empty"]),
    ("notes.mp3", b"This is a text file, not audio.\n" * 20, ["could not decode"]),
])
def test_undecodable_files(tmp_path, capsys, name, content, words):
    audio = tmp_path / name
    audio.write_bytes(content)
    out = tmp_path / "out" / "v.mp4"
    code, err = run_render(audio, out, capsys)
    assert_clean_failure(code, err, out, mentions=[str(audio), *words])


def test_track_below_minimum_length(tmp_path, make_wav, capsys):
    audio = make_wav("blip.wav", 0.4)
    out = tmp_path / "out" / "v.mp4"
    code, err = run_render(audio, out, capsys)
    assert_clean_failure(code, err, out, mentions=[str(audio), "below the minimum"])


def test_missing_file(tmp_path, capsys):
    out = tmp_path / "out" / "v.mp4"
    code, err = run_render(tmp_path / "nope.ogg", out, capsys)
    assert_clean_failure(code, err, out, mentions=["nope.ogg", "not found"])


def test_missing_ffmpeg(tmp_path, make_wav, capsys, monkeypatch):
    audio = make_wav("fine.wav", 1.5)
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    out = tmp_path / "out" / "v.mp4"
    code, err = run_render(audio, out, capsys)
    assert_clean_failure(code, err, out, mentions=["ffmpeg was not found", "apt-get install"])


def test_unwritable_output_folder(tmp_path, make_wav, capsys):
    audio = make_wav("fine.wav", 1.5)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")  # tests run as root, so permissions alone would not block a write
    out = blocker / "sub" / "v.mp4"
    code, err = run_render(audio, out, capsys)
    assert code != 0 and err.startswith("afx: error: ") and "output folder" in err and "-o" in err
    assert blocker.read_text() == "not a folder"


def test_unknown_style(tmp_path, make_wav, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    audio = make_wav("fine.wav", 1.5)
    code = main(["render", str(audio), "--style", "no-such-style"])
    err = capsys.readouterr().err
    assert code != 0 and "no style named 'no-such-style'" in err and "afx train" in err
