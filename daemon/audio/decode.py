"""Decoding: any file the installed ffmpeg reads → mono float32 at the analysis rate, plus a `Track`.

ffmpeg runs as a subprocess with an argument list (ffmpeg-python), never through a shell. The cheap checks
come first (`check_track`: stat, the size limit, ffprobe's stated duration), before a byte is hashed or
decoded; decoding stops at the duration limit, and a decode that ends well short of the stated duration
is reported as a truncated file. This module must not compute features or know about styles.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

import ffmpeg
import numpy as np

from daemon.config import Limits  # what input is accepted: afx.toml's [limits]
from daemon.errors import AudioError

#: analysis sample rate (Hz): enough for the 20 kHz treble band's lower part and cheap to analyse
ANALYSIS_RATE = 22050
PROBE_TIMEOUT_S = 30.0  # ffprobe reads headers only; longer means a stuck network mount


@dataclass(frozen=True)
class Track:
    """An input track: its identity is the content hash, not the name."""

    path: Path
    sha256: str
    duration_s: float
    sample_rate: int  # the analysis rate the samples were decoded at
    peak: float  # largest absolute sample before any rescaling (decoded Vorbis can exceed 1.0)

    def to_dict(self) -> dict[str, object]:
        return {"path": str(self.path), "sha256": self.sha256, "duration_s": round(self.duration_s, 6),
                "sample_rate": self.sample_rate}


def ffmpeg_binary(name: str = "ffmpeg") -> str:
    """The path of ffmpeg/ffprobe, or an AudioError saying how to install it."""
    found = shutil.which(name)
    if found is None:
        raise AudioError(f"{name} was not found on PATH", hint="install it: sudo apt-get install -y ffmpeg")
    return found


def file_sha256(path: Path, *, chunk: int = 1 << 20) -> str:
    """sha256 of a file's bytes, streamed."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class StatedDuration:
    """What the container says about a track's length, before decoding it."""

    seconds: float | None  # None: ffprobe could not tell (decoding will)
    estimated: bool  # ffprobe guessed it from the bitrate (an MP3 without a header): not exact


def stated_duration(path: Path) -> StatedDuration:
    """ffprobe's duration of `path` (milliseconds, whatever the file's size); never raises for a bad file."""
    try:
        proc = subprocess.run([ffmpeg_binary("ffprobe"), "-v", "warning", "-show_entries", "format=duration",
                               "-of", "json", str(Path(path).resolve())], stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, errors="replace", timeout=PROBE_TIMEOUT_S)
        seconds = float(json.loads(proc.stdout or "{}").get("format", {}).get("duration"))
    except (subprocess.TimeoutExpired, OSError, ValueError, TypeError):
        return StatedDuration(seconds=None, estimated=False)
    return StatedDuration(seconds=seconds, estimated="Estimating duration from bitrate" in proc.stderr)


def check_track(path: Path, limits: Limits) -> StatedDuration:
    """The cheap checks, before hashing or decoding: a regular, non-empty file within the size and duration
    limits. Returns the stated duration (for the truncation check after decoding)."""
    _check_file(path, limits)
    ffmpeg_binary("ffmpeg")  # both tools come in one package: name the one people know
    stated = stated_duration(path)
    if stated.seconds is not None and not stated.estimated and stated.seconds > limits.max_duration_s + 1.0:
        _check_duration(path, stated.seconds, limits)
    return stated


def decode_audio(path: str | Path, *, sample_rate: int = ANALYSIS_RATE,
                 limits: Limits = Limits()) -> tuple[Track, np.ndarray]:
    """Decode `path` to mono float32 at `sample_rate`; returns the Track and its samples in [-1, 1]."""
    path = Path(path)
    stated = check_track(path, limits)
    binary = ffmpeg_binary("ffmpeg")
    sha = file_sha256(path)
    try:
        out, _ = (
            ffmpeg.input(str(path))
            # stop one second past the limit: enough to refuse the file, never a 3-hour decode in memory
            .output("pipe:", format="f32le", acodec="pcm_f32le", ac=1, ar=sample_rate, vn=None, sn=None,
                    t=limits.max_duration_s + 1.0)
            .global_args("-nostdin", "-hide_banner", "-loglevel", "error")
            .run(cmd=binary, capture_stdout=True, capture_stderr=True)
        )
    except ffmpeg.Error as e:
        tail = _tail(e.stderr)
        if "does not contain any stream" in tail:  # an image, a video without sound
            raise AudioError("the file has no audio stream", path=path, stderr_tail=tail,
                             hint="give an audio file (or a video with sound)") from e
        raise AudioError(f"ffmpeg could not decode this file ({_first_line(tail)})", path=path,
                         hint="check it plays in a media player; re-export it as FLAC, WAV, MP3 or Ogg",
                         stderr_tail=tail) from e
    samples = np.frombuffer(out, dtype=np.float32).copy()
    if samples.size == 0:
        raise AudioError("no audio stream could be decoded", path=path,
                         hint="the file may be empty, truncated or not audio; re-export it")
    samples = np.nan_to_num(samples, nan=0.0, posinf=0.0, neginf=0.0)
    peak = float(np.max(np.abs(samples)))
    if peak > 1.0:
        # Lossy decoders overshoot full scale; scaling (not clipping) keeps the waveform's shape.
        samples /= peak
    duration = samples.size / sample_rate
    _check_duration(path, duration, limits)
    _check_complete(path, duration, stated)
    return Track(path=path, sha256=sha, duration_s=duration, sample_rate=sample_rate, peak=peak), samples


def _check_file(path: Path, limits: Limits) -> None:
    try:
        st = path.stat()
    except FileNotFoundError:
        raise AudioError("file not found", path=path, hint="check the path") from None
    except OSError as e:
        raise AudioError(f"cannot read the file ({e.strerror})", path=path, hint="check its permissions") from e
    if not stat.S_ISREG(st.st_mode):
        raise AudioError("not a regular file", path=path, hint="give an audio file, not a folder, FIFO or device")
    if st.st_size == 0:
        raise AudioError("file is empty (0 bytes)", path=path, hint="the copy may have failed; copy it again")
    if st.st_size > limits.max_file_bytes:
        mib = 1024 * 1024
        raise AudioError(f"file is {st.st_size / mib:.0f} MB, above the limit of {limits.max_file_bytes / mib:.0f} MB",
                         path=path, hint="raise limits.max_file_mb in afx.toml or compress the file")


#: a decode may end this much short of the stated duration (rounding, encoder padding) without complaint
TRUNCATION_SLACK_S = 2.0
TRUNCATION_SLACK_FRACTION = 0.05


def _check_complete(path: Path, decoded_s: float, stated: StatedDuration) -> None:
    """A decode that ends well short of what the container states is a truncated (or still copying) file."""
    if stated.seconds is None or stated.estimated:
        return
    if stated.seconds - decoded_s > max(TRUNCATION_SLACK_S, TRUNCATION_SLACK_FRACTION * stated.seconds):
        raise AudioError(f"the file is truncated: it decodes to {decoded_s:.1f} s of the {stated.seconds:.1f} s "
                         "its header states", path=path,
                         hint="copy it again (an interrupted copy?) or re-export it")


def _check_duration(path: Path, duration: float, limits: Limits) -> None:
    if duration < limits.min_duration_s:
        raise AudioError(f"track is {duration:.2f} s long, below the minimum of {limits.min_duration_s:g} s",
                         path=path, hint="use a longer track or lower limits.min_duration_s in afx.toml")
    if duration > limits.max_duration_s:
        raise AudioError(f"track is {duration:.0f} s long, above the maximum of {limits.max_duration_s:g} s",
                         path=path, hint="split the track or raise limits.max_duration_s in afx.toml")


def _tail(stderr: bytes | None, lines: int = 12) -> str:
    text = (stderr or b"").decode("utf-8", "replace").strip()
    return "\n".join(text.splitlines()[-lines:])


def _first_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1][:160] if lines else "no output"
