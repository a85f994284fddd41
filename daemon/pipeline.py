"""The one place the stages are chained: decode → features → (train) → render → encode → verify → report.

Each function here takes data and settings and publishes its outputs atomically: a video is encoded to a
hidden scratch file beside its destination, verified with ffprobe, then renamed into place, and its report
is written after it. On any error the scratch file is removed, so no partial video or report is left.
The CLI and the service call these functions; they never chain stages themselves.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from daemon.audio.cache import FeatureCache, cache_key
from daemon.audio.decode import ANALYSIS_RATE, AudioLimits, Track, decode_audio
from daemon.audio.features import FeatureTimeline, extract_features
from daemon.encode import EncodeSettings, VideoWriter, verify_video
from daemon.errors import RenderError
from daemon.metrics import TemporalMetrics
from daemon.render import RenderSettings, render_frames, resolve_device
from daemon.report import REPORT_SCHEMA, now_iso, versions, write_json_atomic
from daemon.style import Style

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class AudioContext:
    """How tracks are read: limits, analysis rate and the feature cache."""

    limits: AudioLimits = AudioLimits()
    cache: FeatureCache = FeatureCache(None)
    sample_rate: int = ANALYSIS_RATE


def track_features(audio_path: Path, sets: Sequence[str], *, fps: float,
                   ctx: AudioContext) -> tuple[Track, FeatureTimeline, np.ndarray | None]:
    """Decode a track and compute (or load cached) features; samples are returned only when decoded."""
    track, samples = decode_audio(audio_path, sample_rate=ctx.sample_rate, limits=ctx.limits)
    key = cache_key(track.sha256, sets=sets, fps=fps, sample_rate=ctx.sample_rate)
    timeline, _ = ctx.cache.get_or_compute(
        key, lambda: extract_features(samples, sr=ctx.sample_rate, fps=fps, sets=sets))
    return track, timeline, samples


def default_output(audio_path: Path, style: Style, renders: Path) -> Path:
    """renders/<track stem>/<style name>.mp4"""
    from daemon.library import safe_name

    return renders / safe_name(Path(audio_path).stem) / f"{safe_name(style.name)}.mp4"


def check_writable(folder: Path) -> None:
    """Create `folder` if needed and fail early, clearly, when it cannot be written."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RenderError(f"cannot create the output folder ({e.strerror})", path=folder,
                          hint="choose another output with -o, or fix the folder's permissions") from e
    if not os.access(folder, os.W_OK | os.X_OK):
        raise RenderError("the output folder is not writable", path=folder,
                          hint="choose another output with -o, or fix the folder's permissions")


def render_track(audio_path: Path, style: Style, settings: RenderSettings, *, out_path: Path,
                 ctx: AudioContext = AudioContext(), encode: EncodeSettings = EncodeSettings(),
                 on_progress: Progress | None = None, extra_report: dict[str, Any] | None = None) -> dict[str, Any]:
    """Render `audio_path` with `style` to `out_path` (+ its JSON report); returns the report."""
    started = time.perf_counter()
    settings.validate()
    out_path = Path(out_path)
    check_writable(out_path.parent)
    device = resolve_device(settings.device)
    track, timeline, _ = track_features(Path(audio_path), style.features.sets, fps=settings.fps, ctx=ctx)
    features_s = time.perf_counter() - started

    scratch = out_path.with_name(f".{out_path.stem}.partial-{os.getpid()}.mp4")
    render_started = time.perf_counter()
    try:
        metrics = encode_video(style, timeline, settings, audio_path=Path(audio_path), scratch=scratch,
                               device=device, encode=encode, on_progress=on_progress)
        probe = verify_video(scratch, width=settings.width, height=settings.height, fps=settings.fps,
                             frames=timeline.n_frames)
        os.replace(scratch, out_path)
    except BaseException:
        scratch.unlink(missing_ok=True)
        raise
    render_s = time.perf_counter() - render_started
    total_s = time.perf_counter() - started
    report = {
        "schema": REPORT_SCHEMA, "ok": True, "created": now_iso(),
        "track": track.to_dict(),
        "style": style.describe(),
        "features": {"sets": list(timeline.sets), "columns": len(timeline.names),
                     "normalisation": timeline.normalisation["method"]},
        "video": {"path": str(out_path), "width": settings.width, "height": settings.height, "fps": settings.fps,
                  "frames": timeline.n_frames, "duration_s": round(probe["duration_s"], 4), "bytes": probe["bytes"],
                  "video_codec": probe["video_codec"], "audio_codec": probe["audio_codec"]},
        "timing": {"features_s": round(features_s, 3), "render_s": round(render_s, 3), "total_s": round(total_s, 3),
                   "realtime_factor": round(track.duration_s / total_s, 4) if total_s > 0 else None},
        "metrics": metrics,
        "device": device_name(device),
        "versions": versions(),
        **(extra_report or {}),
    }
    write_json_atomic(out_path.with_suffix(".json"), report)
    return report


def encode_video(style: Style, timeline: FeatureTimeline, settings: RenderSettings, *, audio_path: Path,
                 scratch: Path, device: Any, encode: EncodeSettings,
                 on_progress: Progress | None) -> dict[str, Any]:
    """Stream the rendered frames into ffmpeg; returns the temporal metrics."""
    writer = VideoWriter(scratch, width=settings.width, height=settings.height, fps=settings.fps,
                         audio_path=audio_path, settings=encode)
    metrics = TemporalMetrics(timeline.n_frames)
    try:
        done = 0
        for batch in render_frames(style, timeline, settings, device=device):
            metrics.update(batch)
            writer.write(batch.cpu().numpy())
            done += batch.shape[0]
            if on_progress:
                on_progress(done, timeline.n_frames)
        writer.close()
    except BaseException:
        writer.abort()
        raise
    return metrics.result(timeline.onset)


def device_name(device: Any) -> str:
    import torch

    if getattr(device, "type", str(device)) == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return "cpu"
