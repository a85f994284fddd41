"""What a trained style keeps beside its weights: `training.json` (the history), `curve.png` (similarity
per prompt over the steps) and `preview.png` (frames at three audio moments, for the mood board).

Written into the style's scratch folder by `pipeline.train_style`, so they appear together with the
weights. This module renders previews; it never trains, and never touches the library.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from daemon.audio.embeddings import plan_for_style
from daemon.audio.features import FeatureTimeline
from daemon.plots import plot_curves
from daemon.render import RenderSettings, render_frames
from daemon.report import write_json_atomic
from daemon.style import Style
from daemon.train import TimeSampler, TrainingResult

PREVIEW_SIZE = (384, 216)


def write_training_artifacts(folder: Path, style: Style, result: TrainingResult,
                             timelines: Sequence[FeatureTimeline]) -> None:
    """training.json (history), curve.png (similarity per prompt over steps), preview.png (three moments)."""
    history = [{"step": r.step, "loss": round(r.loss, 6), "similarity": {k: round(v, 6) for k, v in r.similarity.items()},
                "temporal": round(r.temporal, 6), "lr": r.lr, "seconds": round(r.seconds, 3),
                **({"terms": {k: round(v, 6) for k, v in r.terms.items()}} if r.terms else {})} for r in result.history]
    write_json_atomic(folder / "training.json", {
        "style": style.name, "id": style.style_id, **style.guidance, **style.training,
        "palette": style.palette.describe() if style.palette is not None else None, "history": history})
    steps = [r.step for r in result.history]
    prompts = list(result.history[-1].similarity) if result.history else []
    if prompts or not result.history:
        plot_curves(steps, {p: [r.similarity[p] for r in result.history] for p in prompts}, folder / "curve.png",
                    title=f"{style.name}: CLIP similarity"
                    + ("" if style.guidance.get("trained_guidance") else " (UNTRAINED guidance model)"),
                    ylabel="cosine similarity")
    else:  # no CLIP: the loss and the weight-free terms
        terms = sorted({k for r in result.history for k in r.terms})
        plot_curves(steps, {"loss": [r.loss for r in result.history],
                            **{k: [r.terms.get(k, float("nan")) for r in result.history] for k in terms}},
                    folder / "curve.png", title=f"{style.name}: weight-free terms (no CLIP)", ylabel="value")
    preview_image(style, timelines).save(folder / "preview.png")


def preview_image(style: Style, timelines: Sequence[FeatureTimeline], *,
                  size: tuple[int, int] = PREVIEW_SIZE) -> Image.Image:
    """Frames at three audio moments (25 %, 50 %, 75 % of the first reference track, or prior samples)."""
    timeline = moments_timeline(style, timelines)
    settings = RenderSettings(width=size[0], height=size[1], fps=int(timeline.fps), device="cpu")
    frames = torch.cat(list(render_frames(style, timeline, settings, device=torch.device("cpu"))))
    strip = torch.cat(list(frames), dim=1).numpy()
    return Image.fromarray(strip)


def moments_timeline(style: Style, timelines: Sequence[FeatureTimeline]) -> FeatureTimeline:
    """A three-row timeline: 25/50/75 % of the first reference track, or three draws from the prior."""
    if timelines:
        tl = timelines[0]
        rows = [min(tl.n_frames - 1, int(tl.n_frames * f)) for f in (0.25, 0.5, 0.75)]
        values, channels, fps = tl.values[rows], tl.channel_values()[rows], tl.fps
    else:
        sampler = TimeSampler([], style.features.sets, embedding_dims=plan_for_style(style).dims)
        _, feats, chans = sampler.sample(3, torch.Generator().manual_seed(0))
        values, channels, fps = feats[0::2].numpy(), chans[0::2].numpy(), 30.0
    return FeatureTimeline(sets=style.features.sets, names=style.features.columns, values=values.astype(np.float32),
                           fps=fps, onset=np.zeros(3, dtype=np.float32), normalisation={},
                           channels=channels.astype(np.float32))
