"""ffmpeg-python: raw RGB frames in, H.264 yuv420p + AAC MP4 (+faststart) out; and ffprobe verification.

Frames go to ffmpeg's stdin from a writer thread behind a bounded queue, so the renderer computes the
next batch while ffmpeg encodes the last one, and memory stays bounded. ffmpeg's stderr is drained by
another thread (a full pipe would stall it) and its tail is kept for error reports. No shell is involved.
"""

from __future__ import annotations

import collections
import queue
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ffmpeg
import numpy as np

from daemon.audio.decode import ffmpeg_binary
from daemon.errors import EncodeError, RenderError, StorageError, storage_message


@dataclass(frozen=True)
class EncodeSettings:
    """Codec settings: browser-playable H.264 + AAC."""

    crf: int = 20  # x264 quality (lower is better and bigger)
    preset: str = "medium"  # x264 speed/size trade-off
    audio_bitrate: str = "192k"
    queue_batches: int = 4  # frame batches waiting for ffmpeg at most (bounds memory)


class VideoWriter:
    """Streams uint8 RGB frames [B, H, W, 3] into an MP4 with `audio_path`'s sound muxed in."""

    def __init__(self, out_path: Path, *, width: int, height: int, fps: float, audio_path: Path,
                 settings: EncodeSettings = EncodeSettings()) -> None:
        self.out_path = Path(out_path)
        self.frame_bytes = width * height * 3
        self.frames_written = 0
        video = ffmpeg.input("pipe:", format="rawvideo", pix_fmt="rgb24", s=f"{width}x{height}", framerate=fps)
        # absolute paths: a name starting with '-' or containing ':' is never read as an option or protocol
        audio = ffmpeg.input(str(Path(audio_path).resolve())).audio
        stream = (
            ffmpeg.output(video, audio, str(self.out_path.resolve()), f="mp4", vcodec="libx264", pix_fmt="yuv420p",
                          preset=settings.preset, crf=settings.crf, acodec="aac",
                          audio_bitrate=settings.audio_bitrate, movflags="+faststart")
            .global_args("-hide_banner", "-loglevel", "error")
            .overwrite_output()
        )
        self._proc = stream.run_async(cmd=ffmpeg_binary("ffmpeg"), pipe_stdin=True, pipe_stderr=True)
        self._stderr: collections.deque[str] = collections.deque(maxlen=40)
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=settings.queue_batches)
        self._error: BaseException | None = None
        self._drain = threading.Thread(target=self._drain_stderr, daemon=True)
        self._writer = threading.Thread(target=self._write_loop, daemon=True)
        self._drain.start()
        self._writer.start()

    def write(self, frames: np.ndarray) -> None:
        """Queue a batch of frames (uint8, [B, H, W, 3], C-contiguous)."""
        if self._error is not None:
            raise self._encode_error("ffmpeg stopped accepting frames") from self._error
        data = np.ascontiguousarray(frames, dtype=np.uint8)
        if data.size % self.frame_bytes:
            raise RenderError(f"frame batch of {data.size} bytes is not a whole number of frames")
        self.frames_written += data.size // self.frame_bytes
        self._queue.put(data.tobytes())

    def close(self) -> None:
        """Flush, wait for ffmpeg and raise EncodeError (with its stderr tail) if it failed."""
        self._queue.put(None)
        self._writer.join()
        code = self._proc.wait()
        self._drain.join(timeout=5)
        # ffmpeg exits 0 after "Error writing trailer …: No space left on device": read what it said too
        if code != 0 or self._error is not None or storage_message(self.stderr_tail()):
            raise self._encode_error(f"ffmpeg exited with status {code}")

    def abort(self) -> None:
        """Stop ffmpeg at once (after an error elsewhere); the partial file is the caller's to remove."""
        try:
            self._proc.kill()
        except OSError:
            pass
        try:
            while True:
                self._queue.get_nowait()
        except queue.Empty:
            pass
        self._queue.put(None)
        self._writer.join(timeout=5)
        self._proc.wait()

    def stderr_tail(self) -> str:
        return "\n".join(self._stderr)

    def _encode_error(self, message: str) -> EncodeError | StorageError:
        """The encode boundary's translation: a storage failure (in ffmpeg's words or as the pipe's OSError)
        is a StorageError (retried); anything else is an EncodeError quoting ffmpeg's informative line."""
        tail = self.stderr_tail()
        storage = storage_message(tail)
        pipe = self._error if isinstance(self._error, OSError) and not storage else None
        if storage or (pipe is not None and self._proc.poll() is None):
            return StorageError(f"writing the video failed: {storage or pipe}", path=self.out_path,
                                stderr_tail=tail, hint="free disk space or fix the device; the job is retried")
        line = informative_line(tail)
        return EncodeError(f"{message}{': ' + line if line else ''}", path=self.out_path, stderr_tail=tail,
                           hint="see the ffmpeg output in the report; check disk space and the audio file")

    def _write_loop(self) -> None:
        stdin = self._proc.stdin
        try:
            while (chunk := self._queue.get()) is not None:
                if self._error is None:
                    stdin.write(chunk)
        except (BrokenPipeError, OSError) as e:
            self._error = e
            while self._queue.get() is not None:  # keep draining so write() never blocks forever
                pass
        finally:
            try:
                stdin.close()
            except OSError:
                pass

    def _drain_stderr(self) -> None:
        for line in iter(self._proc.stderr.readline, b""):
            self._stderr.append(line.decode("utf-8", "replace").rstrip())


#: lines ffmpeg prints after the one that says what went wrong
GENERIC_LINES = ("Conversion failed!", "Exiting normally", "Error opening output files", "Error closing file",
                 "Terminating thread", "Finishing stream", "received signal")


def informative_line(stderr: str) -> str:
    """The line of ffmpeg's output that says what went wrong: the first specific one (its last are generic)."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    specific = [ln for ln in lines if not any(ln.startswith(g) or g in ln for g in GENERIC_LINES)]
    return (specific[0] if specific else lines[-1] if lines else "")[:200]  # the first says why


def probe(path: Path) -> dict[str, Any]:
    """ffprobe's view of a media file (format and streams)."""
    try:
        info: dict[str, Any] = ffmpeg.probe(str(Path(path).resolve()), cmd=ffmpeg_binary("ffprobe"))
        return info
    except ffmpeg.Error as e:
        tail = (e.stderr or b"").decode("utf-8", "replace").strip()
        raise RenderError("ffprobe could not read the video", path=path, stderr_tail=tail) from e


def verify_video(path: Path, *, width: int, height: int, fps: float, frames: int) -> dict[str, Any]:
    """Check that a finished MP4 has an H.264 video stream of the right size and length and an audio stream.

    Returns a summary (duration, bytes, streams); raises RenderError naming what is wrong.
    """
    info = probe(path)
    streams = info.get("streams", [])
    video = next((s for s in streams if s.get("codec_type") == "video"), None)
    audio = next((s for s in streams if s.get("codec_type") == "audio"), None)
    if video is None or audio is None:
        raise RenderError("video is missing its " + ("video" if video is None else "audio") + " stream", path=path)
    if (int(video["width"]), int(video["height"])) != (width, height):
        raise RenderError(f"video is {video['width']}x{video['height']}, expected {width}x{height}", path=path)
    duration = float(video.get("duration") or info["format"]["duration"])
    expected = frames / fps
    if abs(duration - expected) > 1.5 / fps:
        raise RenderError(f"video lasts {duration:.3f} s, expected {expected:.3f} s", path=path)
    return {"duration_s": duration, "bytes": int(info["format"].get("size", Path(path).stat().st_size)),
            "video_codec": video.get("codec_name"), "audio_codec": audio.get("codec_name"),
            "audio_duration_s": float(audio.get("duration") or 0.0)}
