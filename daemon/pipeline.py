"""The one place the stages are chained: decode → features → (train) → render → encode → verify → report.

Each function here takes data and settings and publishes its outputs atomically: a video is encoded to a
hidden scratch file beside its destination, verified with ffprobe, then renamed into place, and its report
is written after it. On any error the scratch file is removed, so no partial video or report is left.
The CLI and the service call these functions; they never chain stages themselves. What a chain produces
is built by the module that owns it: the report by `daemon.report`, output names by `daemon.naming`, which
tracks are references by `daemon.tracks`, a trained style's previews and curves by `daemon.artifacts`.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from daemon.atomic import atomic_path
from daemon.audio.cache import FeatureCache, cache_key
from daemon.audio.decode import ANALYSIS_RATE, Track, decode_audio
from daemon.audio.embeddings import (EmbeddingPlan, Reduction, TrackAudio, TrackEmbeddings, embedding_sets,
                                     fit_reductions, plan_for_style)
from daemon.audio.features import FeatureTimeline, extract_features
from daemon.board import write_mood_board, write_sweep_report
from daemon.config import Limits, ServiceConfig
from daemon.encode import EncodeSettings, VideoWriter, verify_video
from daemon.evaluate import measure_span
from daemon.errors import AfxError, RenderError, TrackRemoved, storage_errors
from daemon.export.player import check_player_path, write_player
from daemon.guidance import load_guide
from daemon.highlight import best_window
from daemon.library import Library, safe_name
from daemon.logs import Logger, get_logger
from daemon.metrics import TemporalMetrics
from daemon.palette import PaletteMatch
from daemon.render import RenderSettings, device_name, render_frames, resolve_device
from daemon.report import Metrics, RenderJob, Report, TimingSection, now_iso, palette_colours
from daemon.spec import NO_CLIP, StyleSpec
from daemon.style import FeatureDescription, Style
from daemon.tracks import missing_references, reference_paths
from daemon.train import OnStep, StepLogger, clear_checkpoint, optimise, prior_walk

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class AudioContext:
    """How tracks are read: limits, analysis rate and the feature cache."""

    limits: Limits = Limits()
    cache: FeatureCache = FeatureCache(None)
    sample_rate: int = ANALYSIS_RATE

    @classmethod
    def for_config(cls, config: ServiceConfig, *, cache: bool = True) -> AudioContext:
        """How `afx` and the service read tracks: afx.toml's limits, and its feature cache unless `cache` is
        False."""
        return cls(limits=config.limits, cache=FeatureCache(config.path("cache") if cache else None))


def track_features(audio_path: Path, sets: Sequence[str], *, fps: float, ctx: AudioContext,
                   plan: EmbeddingPlan | None = None,
                   keep_raw: bool = False) -> tuple[Track, FeatureTimeline, np.ndarray | None]:
    """Decode a track and compute (or load cached) features; samples are returned only when decoded.

    `plan` says how embedding sets are reduced (a style's: `plan_for_style`); None is the default plan.
    `keep_raw` also keeps the unconditioned values (`afx features --plot`): computed, not cached.
    """
    track, samples = decode_audio(audio_path, sample_rate=ctx.sample_rate, limits=ctx.limits)
    embeddings = None
    if embedding_sets(sets):
        embeddings = TrackEmbeddings(plan or EmbeddingPlan(), sha256=track.sha256, cache=ctx.cache,
                                     label=Path(audio_path).name)
    key = cache_key(track.sha256, sets=sets, fps=fps, sample_rate=ctx.sample_rate,
                    extra=embeddings.plan.cache_material(sets) if embeddings else None)
    if keep_raw:
        timeline = extract_features(samples, sr=ctx.sample_rate, fps=fps, sets=sets, embeddings=embeddings,
                                    keep_raw=True)
        return track, timeline, samples
    timeline, _ = ctx.cache.get_or_compute(
        key, lambda: extract_features(samples, sr=ctx.sample_rate, fps=fps, sets=sets, embeddings=embeddings))
    return track, timeline, samples


def check_writable(folder: Path) -> list[Path]:
    """Create `folder` if needed and fail early, clearly, when it cannot be written; returns the folders it
    created (outermost first), for `remove_empty` to take back when the render fails."""
    created = [p for p in (folder, *folder.parents) if not p.exists()][::-1]
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RenderError(f"cannot create the output folder ({e.strerror})", path=folder,
                          hint="choose another output with -o, or fix the folder's permissions") from e
    if not os.access(folder, os.W_OK | os.X_OK):
        raise RenderError("the output folder is not writable", path=folder,
                          hint="choose another output with -o, or fix the folder's permissions")
    return created


def remove_empty(folders: Sequence[Path]) -> None:
    """Take back folders a failed render created, innermost first, where they are still empty."""
    for folder in reversed(folders):
        try:
            folder.rmdir()
        except OSError:
            return  # not empty (another render's files), or gone


def track_state(path: Path) -> tuple[int, int] | None:
    """(size, mtime) of the track's file, None when it is gone: a render publishes only if this held still."""
    try:
        st = Path(path).stat()
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


def check_track_unchanged(path: Path, before: tuple[int, int] | None) -> None:
    now = track_state(path)
    if now is None:
        raise TrackRemoved("track removed while it was being rendered", path=path,
                           hint="put it back: it is rendered when it returns")
    if now != before:
        raise TrackRemoved("the track changed while it was being rendered (a copy still in progress?)",
                           path=path, hint="nothing to do: its new content is rendered once it settles")


def render_track(audio_path: Path, style: Style, settings: RenderSettings, *, out_path: Path,
                 ctx: AudioContext = AudioContext(), encode: EncodeSettings = EncodeSettings(),
                 on_progress: Progress | None = None, job: RenderJob | None = None,
                 highlight_s: float | None = None) -> Report:
    """Render `audio_path` with `style` to `out_path` (+ its JSON report); returns the report.

    `job`: the service's job, recorded in the report. `highlight_s`: only the track's most energetic window
    of that length (daemon.highlight); the report's `highlight` section says where it starts and why."""
    started = time.perf_counter()
    settings.validate()
    out_path = Path(out_path)
    if out_path.suffix.lower() != ".mp4":
        raise RenderError(f"afx writes MP4 videos (H.264 + AAC); '{out_path.name}' does not end in .mp4",
                          path=out_path, hint=f"use -o {out_path.with_suffix('.mp4').name}")
    taken = track_state(Path(audio_path))
    created = check_writable(out_path.parent)
    try:
        device = resolve_device(settings.device)
        track, timeline, _ = track_features(Path(audio_path), style.features.sets, fps=settings.fps, ctx=ctx,
                                            plan=plan_for_style(style))
        features_s = time.perf_counter() - started
        window = best_window(timeline, seconds=highlight_s) if highlight_s else None
        frames = (window.start, window.stop) if window else (0, timeline.n_frames)
        render_started = time.perf_counter()
        # the scratch name records its owner (host and pid): sweep_scratch removes it once that process is gone
        with storage_errors(out_path, "publishing the video"), atomic_path(out_path) as scratch:
            measured = encode_video(style, timeline, settings, audio_path=Path(audio_path), scratch=scratch,
                                    device=device, encode=encode, on_progress=on_progress, frames=frames)
            probe = verify_video(scratch, width=settings.width, height=settings.height, fps=settings.fps,
                                 frames=frames[1] - frames[0])
            check_track_unchanged(Path(audio_path), taken)
    except BaseException as e:
        remove_empty(created)
        if isinstance(e, (AfxError, OSError)) and not isinstance(e, TrackRemoved) \
                and track_state(Path(audio_path)) != taken:
            try:
                check_track_unchanged(Path(audio_path), taken)
            except TrackRemoved as removed:
                raise removed from e  # the track went away: not ffmpeg's fault, nor the content's
        raise
    render_s = time.perf_counter() - render_started
    timing = TimingSection.of(features_s=features_s, render_s=render_s, total_s=time.perf_counter() - started,
                              track_s=window.duration_s if window else track.duration_s)
    metrics, palette_match = measured
    report = Report.for_render(track=track, style=style, timeline=timeline, settings=settings, out_path=out_path,
                               probe=probe, timing=timing, metrics=metrics, device=device_name(device), job=job,
                               palette_match=palette_match, frames=frames[1] - frames[0],
                               highlight=window.to_report() if window else None)
    with storage_errors(out_path, "writing the report"):
        report.write(out_path.with_suffix(".json"))
    return report


def encode_video(style: Style, timeline: FeatureTimeline, settings: RenderSettings, *, audio_path: Path,
                 scratch: Path, device: torch.device, encode: EncodeSettings,
                 on_progress: Progress | None, frames: tuple[int, int] | None = None) -> tuple[Metrics, float | None]:
    """Stream the rendered frames (all, or `frames` = (start, stop) of the track) into ffmpeg; returns the
    temporal metrics and the palette match."""
    start, stop = frames or (0, timeline.n_frames)
    total = stop - start
    writer = VideoWriter(scratch, width=settings.width, height=settings.height, fps=settings.fps,
                         audio_path=audio_path, settings=encode, audio_start_s=start / settings.fps,
                         audio_duration_s=total / settings.fps if frames else None)
    metrics = TemporalMetrics(total, fps=settings.fps)
    match = PaletteMatch(style.palette, total)
    try:
        done = 0
        for batch in render_frames(style, timeline, settings, device=device, start=start, stop=stop):
            metrics.update(batch)
            match.update(batch)
            writer.write(batch.cpu().numpy())
            done += batch.shape[0]
            if on_progress:
                on_progress(done, total)
        writer.close()
    except BaseException:
        writer.abort()
        raise
    return (metrics.result(timeline.onset[start:stop], level=timeline.channel_values()[start:stop, 2]),
            match.result())


def export_player(audio_path: Path, style: Style, *, out_path: Path, fps: int = 30,
                  ctx: AudioContext = AudioContext()) -> dict[str, Any]:
    """features → HTML player: OUT.html playing `audio_path` (copied beside it) with `style` live in WebGL2.

    The features are the renderer's own (`track_features`, the style's sets and reductions, at `fps`), so
    the player shows at i / fps what `render_track` writes as frame i.
    """
    out_path = Path(out_path)
    check_player_path(out_path, fps=fps)  # before the features, which take a while
    check_writable(out_path.parent)
    track, timeline, _ = track_features(Path(audio_path), style.features.sets, fps=fps, ctx=ctx,
                                        plan=plan_for_style(style))
    files = write_player(style, timeline, audio_path=Path(audio_path), out=out_path)
    return {"html": files["html"], "audio": files["audio"], "frames": timeline.n_frames, "fps": fps,
            "duration_s": track.duration_s}


# ── training ─────────────────────────────────────────────────────────────────────────────────────────────

def train_style(spec: StyleSpec, *, library: Library, ctx: AudioContext = AudioContext(),
                reference_tracks: Sequence[Path] = (), device: str = "auto", checkpoint_dir: Path | None = None,
                models_dir: Path | None = None, allow_download: bool = True, on_step: OnStep | None = None,
                should_stop: Callable[[], bool] | None = None) -> Style:
    """Train `spec` into the library (library/<name>/<id>/ with previews and history); returns the Style.

    Resumes from `checkpoint_dir`; raises daemon.train.TrainingInterrupted after checkpointing when
    `should_stop()` turns true.
    """
    from daemon.artifacts import write_training_artifacts  # matplotlib: only a training draws curves

    log = get_logger("afx.train").bind(style=spec.name, style_id=spec.style_id)
    torch_device = resolve_device(device)
    guide = None if spec.training.clip_model == NO_CLIP else load_guide(
        spec.training.clip_model, spec.training.pretrained, cache_dir=models_dir, device=torch_device,
        allow_download=allow_download)
    guidance = guide.describe() if guide is not None else {"clip_model": NO_CLIP, "pretrained": None,
                                                          "trained_guidance": False}
    trained_guidance = bool(guidance["trained_guidance"])
    perceptual = None
    if spec.training.perceptual_weight > 0:  # independent of CLIP: VGG16 from the same models cache
        from daemon.perceptual import load_perceptual

        perceptual = load_perceptual(models_dir, device=torch_device, allow_download=allow_download)
    paths = reference_paths(spec, reference_tracks)
    warnings = []
    if missing := missing_references(spec):
        warnings.append(f"audio.reference_tracks: no file matches {', '.join(map(repr, missing))} (relative to "
                        f"{Path(spec.source).parent if spec.source else Path.cwd()}); trained on "
                        + ("the other reference tracks" if paths else "the synthetic audio prior"))
        log.warning("train.reference_missing", missing=missing, found=len(paths), warning=warnings[-1])
    reductions = style_reductions(spec, paths, ctx=ctx, log=log)
    references = reference_features(paths, spec, ctx=ctx, log=log, reductions=reductions)
    timelines = [timeline for _, timeline in references]
    log.info("train.start", clip_model=guidance["clip_model"], pretrained=guidance["pretrained"],
             trained_guidance=trained_guidance, iterations=spec.training.iterations, device=str(torch_device),
             reference_tracks=len(timelines))
    result = optimise(spec, guide, timelines, device=torch_device, checkpoint_dir=checkpoint_dir,
                      on_step=StepLogger(log, on_step, trained_guidance=trained_guidance), should_stop=should_stop,
                      perceptual=perceptual)
    final = result.final_similarity()
    palette = spec.resolved_palette()
    style = Style(name=spec.name, style_id=spec.style_id, network=spec.network, encoder=spec.encoder,
                  features=FeatureDescription.for_sets(spec.audio.features, reduction=reductions,
                                                       embedding_dims=spec.audio.embedding_dims),
                  model=result.model, trained=True, palette=palette,
                  guidance=guidance, spec=spec.to_dict(), created=now_iso(),
                  training={"final_similarity": final, "mean_similarity": _mean(final), "seconds": round(result.seconds, 2),
                            "iterations": spec.training.iterations, "audio_source": result.audio_source,
                            "resumed_from": result.resumed_from, "variant": spec.variant,
                            "reference_tracks": [{"path": str(t.path), "sha256": t.sha256} for t, _ in references],
                            **({"warnings": warnings} if warnings else {})})
    # the clip metrics of docs/ART.md, for the mood board (60 frames at 160×90 of the first reference track's
    # most energetic stretch, else of the synthetic prior walk: a second or two on a CPU)
    style.training["metrics"] = clip_metrics(style, timelines[0] if timelines else prior_walk(
        spec.audio.features, n_frames=90, fps=spec.render.fps, seed=0, embedding_dims=spec.audio.embedding_dims))
    collapsed = collapse_warning(spec.name, style.training["metrics"])
    if collapsed:
        style.training.setdefault("warnings", []).append(collapsed)
        log.warning("train.collapsed", warning=collapsed, detail=style.training["metrics"].get("detail"),
                    motion_energy=style.training["metrics"].get("motion_energy"))
    folder = library.folder_for(spec.name, spec.style_id)
    style.save(folder, extras=lambda scratch: write_training_artifacts(scratch, style, result, timelines))
    clear_checkpoint(checkpoint_dir)
    write_mood_board(library)
    log.info("train.done", seconds=round(result.seconds, 2), similarity=_mean(final),
             palette_match=style.training["metrics"].get("palette_match"), trained_guidance=trained_guidance,
             folder=str(folder))
    return style


def style_reductions(spec: StyleSpec, paths: Sequence[Path], *, ctx: AudioContext,
                     log: Logger) -> dict[str, Reduction]:
    """The embedding reductions a style of `spec` gets: PCA over the reference tracks, else the seeded projection.

    Deterministic for the same tracks, so a sweep's comparison (comparison_clip) sees the same mapping.
    """
    if not embedding_sets(spec.audio.features):
        return {}
    tracks = []
    for path in paths:
        try:
            track, samples = decode_audio(path, sample_rate=ctx.sample_rate, limits=ctx.limits)
        except AfxError as e:
            log.warning("train.reference_skipped", track=str(path), error=e.user_line())
            continue
        tracks.append(TrackAudio(samples, ctx.sample_rate, track.sha256, Path(path).name))
    reductions = fit_reductions(spec.audio.features, tracks, dims=spec.audio.embedding_dims, cache=ctx.cache,
                                on_skip=lambda t, e: log.warning("train.reference_skipped", track=t.label,
                                                                 error=e.user_line()))
    for name, r in reductions.items():
        log.info("train.reduction", set=name, method=r.method, dims=r.dims, **{
            k: v for k, v in r.info.items() if k in ("fitted_frames", "tracks")})
    return reductions


def reference_timelines(paths: Sequence[Path], spec: Any, *, ctx: AudioContext, log: Any,
                        reductions: dict[str, Any] | None = None) -> list[FeatureTimeline]:
    """Feature timelines of the reference tracks; a track that cannot be read is skipped with a warning."""
    return [timeline for _, timeline in reference_features(paths, spec, ctx=ctx, log=log, reductions=reductions)]


def reference_features(paths: Sequence[Path], spec: StyleSpec, *, ctx: AudioContext, log: Logger,
                       reductions: dict[str, Reduction] | None = None) -> list[tuple[Track, FeatureTimeline]]:
    """Each readable reference track with its feature timeline (what a style records it was trained on)."""
    plan = EmbeddingPlan(dims=spec.audio.embedding_dims, reductions=reductions or {})
    found = []
    for path in paths:
        try:
            track, timeline, _ = track_features(path, spec.audio.features, fps=spec.render.fps, ctx=ctx, plan=plan)
        except AfxError as e:
            log.warning("train.reference_skipped", track=str(path), error=e.user_line())
            continue
        found.append((track, timeline))
    return found


CLIP_FRAMES = 60  # the comparison clip: this many frames of the track's most energetic stretch ...
CLIP_SIZE = (160, 90)  # ... at this size, rendered on the CPU


FLAT_DETAIL = 0.5  # gray levels: a clip whose frames have less detail than this is one flat colour
STILL_MOTION = 1.0  # gray levels/s: a clip that changes less than this does not move (metrics.motion_energy)


def collapse_warning(name: str, metrics: dict[str, Any]) -> str | None:
    """What to tell the user when a trained style's clip is one flat colour or does not move, else None.

    The keep term (training.collapse_weight) usually prevents this, but not always: in the palette colour mode
    a network pushed into one flat band of the gradient has no gradient left to climb out with."""
    detail, motion = metrics.get("detail"), metrics.get("motion_energy")
    if detail is not None and detail < FLAT_DETAIL:
        what = f"a flat field of one colour (detail {detail:.2f} gray levels)"
    elif motion is not None and motion < STILL_MOTION:
        what = f"a still picture (motion {motion:.2f} gray levels/s on its most energetic clip)"
    else:
        return None
    return (f"style {name!r} trained to {what}: its videos will not show the music. Retrain it with a "
            "different training.seed, or undo the last change to its [encoder] or [training] settings")


def clip_metrics(style: Style, timeline: FeatureTimeline, *, frames: int = CLIP_FRAMES,
                 size: tuple[int, int] = CLIP_SIZE) -> dict[str, Any]:
    """The metrics of docs/ART.md on a short low-resolution clip (mood board, sweep comparisons), plus
    `render_fps`: frames rendered per second of rendering alone (not the metrics), on the CPU at `size`.

    The clip is the track's most energetic `frames` frames (daemon.highlight.best_window), as they are in
    the render of the whole track: a track's first seconds are often a quiet intro, where a reactive
    style rightly hardly moves and the clip would say nothing about how it meets the music."""
    window = best_window(timeline, seconds=frames / timeline.fps)
    measured = measure_span(style, timeline, start=window.start, stop=window.stop, size=size, fps=timeline.fps)
    rendering = measured.pop("render_s")
    return {**measured, "palette": palette_colours(style),
            "render_fps": round((window.stop - window.start) / rendering, 2) if rendering > 0 else None}


# ── sweeps ───────────────────────────────────────────────────────────────────────────────────────────────

SWEEPS = "_sweeps"  # library/_sweeps/<sweep>/: comparison.html, comparison.json, contact_sheet.png


def sweep_folder(library_root: Path, sweep: str) -> Path:
    """library/_sweeps/<sweep>/, `sweep` being the spec file's name without .toml(.example)."""
    return Path(library_root) / SWEEPS / safe_name(sweep)


def sweep_comparison(sweep: str, variants: Sequence[Any], *, library: Any, ctx: AudioContext = AudioContext(),
                     fallback: Sequence[Path] = ()) -> dict[str, Path]:
    """The one way a sweep's comparison is made, by `afx train` and by the service: sweep_folder's
    comparison.json, comparison.html and contact_sheet.png, one row per variant (StyleSpec) side by side.

    Every trained variant's clip (CLIP_FRAMES frames at CLIP_SIZE) is rendered on the same audio: the first
    reference track (`reference_paths(spec, fallback)`), else the seeded prior walk. A row already in the
    folder's comparison.json for the same style id and audio is reused, so the service, which rewrites the
    page after each variant's training, renders each variant once. Variants not in the library yet get a
    row that says so. Returns the paths written.
    """
    out = sweep_folder(library.root, sweep)
    clip = f"the most energetic {CLIP_FRAMES} frames at {CLIP_SIZE[0]}×{CLIP_SIZE[1]} on the CPU"
    earlier = _earlier_rows(out / "comparison.json", clip=clip)
    rows = []
    for spec in variants:
        row: dict[str, Any] = {"name": spec.name, "variant": spec.variant, "id": spec.style_id, "trained": False,
                               "folder": str(library.folder_for(spec.name, spec.style_id))}
        if library.has(spec.name, spec.style_id):
            style = Style.load(library.folder_for(spec.name, spec.style_id))
            audio, timeline = comparison_clip(spec, ctx=ctx, fallback=fallback, style=style)
            reuse = earlier.get(spec.style_id)
            measured = reuse["measured"] if reuse and reuse.get("audio") == audio else clip_metrics(style, timeline)
            row.update(trained=True, audio=audio, measured=measured, **_comparison_fields(style, measured))
        rows.append(row)
    return write_sweep_report(rows, out, title=f"sweep: {sweep}", clip=clip)


def _comparison_fields(style: Style, measured: dict[str, Any]) -> dict[str, Any]:
    """A trained variant's columns: the clip's metrics, its training and its guidance."""
    guidance, training = style.guidance or {}, style.training or {}
    trained_guidance = bool(guidance.get("trained_guidance", False))
    return {
        "clip_model": guidance.get("clip_model"), "trained_guidance": trained_guidance,
        "similarity": training.get("mean_similarity"),  # meaningful only with trained guidance
        "clip_similarity": training.get("mean_similarity") if trained_guidance else None,
        "seconds": training.get("seconds"),
        **{k: measured.get(k) for k in MEASURED},
    }


#: what a sweep row shows of its clip's metrics; an earlier row without all of them is measured again
MEASURED = ("palette_match", "temporal_ssim_mean", "onset_alignment", "motion_energy", "detail",
            "loud_quiet_contrast", "onset_correlation", "render_fps")


def _earlier_rows(path: Path, *, clip: str) -> dict[str, dict[str, Any]]:
    """Rows of an earlier comparison.json by style id: trained ones, measured the same way (`clip`) with every
    MEASURED key; nothing when the file is absent or damaged."""
    try:
        table = json.loads(path.read_text(encoding="utf-8"))
        if table.get("clip") != clip:
            return {}
        return {str(r["id"]): r for r in table["variants"]
                if isinstance(r, dict) and r.get("trained") and isinstance(r.get("measured"), dict)
                and all(k in r["measured"] for k in MEASURED)}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


def comparison_clip(spec: Any, *, ctx: AudioContext, fallback: Sequence[Path],
                    style: Style | None = None) -> tuple[str, FeatureTimeline]:
    """What sweep variants are compared on: the first reference track, else a seeded walk through the prior;
    returns (a label of that audio — "<file> <sha256[:12]>" — and its timeline).

    Embedding sets go through `style`'s stored reductions when given, else through the same fit training did.
    """
    log = get_logger("afx.sweep")
    paths = reference_paths(spec, fallback)
    reductions = (dict(style.features.reduction or {}) if style is not None
                  else style_reductions(spec, paths, ctx=ctx, log=log))  # the variant's own mapping, as trained
    found = reference_features(paths[:1], spec, ctx=ctx, log=log, reductions=reductions)
    if found:
        track, timeline = found[0]
        return f"{track.path.name} {track.sha256[:12]}", timeline
    return "synthetic prior walk (seed 0)", prior_walk(spec.audio.features, n_frames=90, fps=spec.render.fps,
                                                       seed=0, embedding_dims=spec.audio.embedding_dims)


def _mean(values: dict[str, float]) -> float | None:
    positive = [v for k, v in values.items() if not k.startswith("not: ")]
    return round(float(np.mean(positive)), 6) if positive else None
