"""The CLIP-guided optimisation loop: a StyleSpec and feature timelines in, trained CPPN weights out.

Each step renders `time_points` frames at different audio moments through THE input encoder (the same one
the renderer uses), in pairs of consecutive video frames (one frame when time_points = 1), so the style
learns to react across a whole track and to change with the audio from one frame to the next. The loss:

    − Σ w_p · sim(prompt p)  + negative_weight · Σ w_n · sim(negative n)     (weights normalised to sum 1)
    + temporal_weight · reactivity                                            (change follows audio change)
    + smoothness_weight · total variation of the frames                       (smoothness)
    + collapse_weight · keep                                                  (no collapse to a flat field)
    + palette.weight · palette term            (daemon.palette.palette_loss; when spec.palette_trains)
    − contrast_weight · min(std of OKLab lightness per frame, CONTRAST_CAP)   (crisp light/dark structure)
    + perceptual_weight · VGG16 distance of frames from their low-pass        (perceptual smoothness;
                                                                               daemon/perceptual.py)

With training.clip_model = "none" there is no CLIP: the first line is left out and nothing is downloaded
or loaded; the frames are then at most NO_CLIP_RESOLUTION on the shorter side (the weight-free terms are
per-pixel statistics and need no more, and a style trains in a couple of minutes on two cores).

reactivity = mean relu(Δv − REACT_GAIN·Δa − MOTION_ALLOWANCE) − mean min(Δv, REACT_GAIN·Δa) over the pairs:
Δv is the pair's mean absolute colour change, Δa its audio change (|Δpulse| + |Δlevel| + mean |Δfeature|,
at most 1). Change the audio does not explain is penalised; change where the audio changes is rewarded, up
to REACT_GAIN per unit of audio change. keep = relu(log(KEEP·detail₀) − log detail) + the same for the
mean change: detail (mean gradient magnitude) and change may not fall below KEEP of what the untrained
network of the same seed gives on a fixed sample (a random style: the regulariser of issue 10).

Similarities are CLIP cosine similarities averaged over random cutouts with differentiable augmentation.
Adam with linear warm-up then cosine decay to 10 %; deterministic on CPU for a fixed seed (all randomness
comes from one seeded generator whose state is checkpointed); autocast (bf16) on CUDA for CLIP.
A checkpoint (tensors only, loaded with weights_only=True) is written every `checkpoint_every` steps and
when asked to stop; a later call with the same checkpoint folder resumes from it.

Without reference tracks the time points are drawn from a synthetic prior over normalised features:
each normalised column is tanh(z/2) with z ~ N(0, 1) (the shape the per-track normalisation produces),
raw columns (time, beat) are uniform in [0, 1], and the neighbouring frame moves each z by N(0, 0.1²).
Its channels: level uniform in [0, 1], pulse u³ (mostly low) with an onset (pulse → 1) in PRIOR_ONSETS of
the pairs, drift uniform over PRIOR_DRIFT_S seconds and advancing as daemon.audio.features does.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.optim.lr_scheduler import LRScheduler

from daemon.audio.features import (DEFAULT_EMBEDDING_DIMS, MOTION_IDLE, PULSE_RELEASE_S, FeatureTimeline, columns_for,
                                   raw_column_mask)
from daemon.cppn import CPPN, InputEncoder
from daemon.errors import TrainingError
from daemon.guidance import Guide, cutouts
from daemon.logs import Logger
from daemon.palette import Palette, palette_loss, srgb_to_oklab
from daemon.spec import NO_CLIP, StyleSpec
from daemon.style import build_model, gradient_of

TRAINER_VERSION = 2  # bump when what this module trains changes: every style id changes with it (spec.py)
# (2: the reactivity and anti-collapse terms, the pulse/motion channels)
CHECKPOINT_FILE = "checkpoint.pt"
PRIOR_TRACK_FRAMES = 30 * 180  # the prior's neighbouring frame is one frame of a 3-minute track at 30 fps
PRIOR_FPS = 30.0
PRIOR_ONSETS = 0.25  # share of prior pairs whose second frame has a percussive onset
PRIOR_DRIFT_S = 600.0  # prior drift positions: uniform over this many seconds of full-speed motion
REACT_GAIN = 0.1  # mean colour change (0..1) a unit of audio change may explain and is rewarded for
MOTION_ALLOWANCE = 0.004  # unexplained change per frame allowed for free (the slow drift of motion)
KEEP = 0.7  # detail and change may not fall below this share of the untrained network's
CONTRAST_CAP = 0.3  # OKLab lightness spread above which the contrast term rewards nothing more
NO_CLIP_RESOLUTION = 48  # training frames' shorter side at most, without CLIP


class TrainingInterrupted(Exception):
    """Raised when `should_stop()` asked the loop to stop; a checkpoint was written first."""

    def __init__(self, step: int) -> None:
        super().__init__(f"training stopped at step {step}; it resumes from its checkpoint")
        self.step = step


@dataclass
class StepRecord:
    step: int
    loss: float
    similarity: dict[str, float]
    temporal: float  # the reactivity term
    lr: float
    seconds: float
    terms: dict[str, float] = field(default_factory=dict)  # the weight-free terms' values (palette, contrast, perceptual)


@dataclass
class TrainingResult:
    model: CPPN
    history: list[StepRecord]
    seconds: float
    resumed_from: int
    audio_source: str  # "reference tracks (N)" or "synthetic prior"

    def final_similarity(self) -> dict[str, float]:
        """Mean over the last 10 % of steps (at least one) of each prompt's similarity."""
        tail = self.history[-max(1, len(self.history) // 10):]
        return {p: float(np.mean([r.similarity[p] for r in tail])) for p in tail[0].similarity} if tail else {}


def training_size(spec: StyleSpec) -> tuple[int, int]:
    """(width, height) of training frames: `resolution` on the shorter side (at most NO_CLIP_RESOLUTION
    without CLIP), the render's aspect."""
    res, w, h = spec.training.resolution, spec.render.width, spec.render.height
    if spec.training.clip_model == NO_CLIP:
        res = min(res, NO_CLIP_RESOLUTION)
    if w >= h:
        return max(2, round(res * w / h)), res
    return res, max(2, round(res * h / w))


class TimeSampler:
    """Draws (position, features) for pairs of consecutive frames from timelines or the synthetic prior."""

    def __init__(self, timelines: Sequence[FeatureTimeline], sets: Sequence[str], *,
                 embedding_dims: int = DEFAULT_EMBEDDING_DIMS) -> None:
        self.timelines = [t for t in timelines if t.n_frames >= 2]
        self.raw_mask = raw_column_mask(sets, embedding_dims=embedding_dims)

    @property
    def source(self) -> str:
        return f"reference tracks ({len(self.timelines)})" if self.timelines else "synthetic prior"

    def sample(self, pairs: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """positions [2·pairs], features [2·pairs, F] and channels [2·pairs, 3] (pulse, drift, level);
        rows 2i and 2i+1 are consecutive frames."""
        if self.timelines:
            return self._from_timelines(pairs, generator)
        positions, features = self._from_prior(pairs, generator)
        return positions, features, prior_channels(pairs, generator)

    def _from_timelines(self, pairs: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        positions, rows, channels = [], [], []
        for _ in range(pairs):
            tl = self.timelines[int(torch.randint(len(self.timelines), (1,), generator=g))]
            i = int(torch.randint(tl.n_frames - 1, (1,), generator=g))
            for j in (i, i + 1):
                positions.append(j / (tl.n_frames - 1))
                rows.append(tl.values[j])
                channels.append(tl.channel_values()[j])
        return (torch.tensor(positions, dtype=torch.float32), torch.from_numpy(np.stack(rows)).float(),
                torch.from_numpy(np.stack(channels)).float())

    def _from_prior(self, pairs: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        n = self.raw_mask.size
        z = torch.randn(pairs, n, generator=g)
        z_next = z + 0.1 * torch.randn(pairs, n, generator=g)
        raw = torch.rand(pairs, n, generator=g)
        pos = torch.rand(pairs, generator=g) * (1 - 1 / PRIOR_TRACK_FRAMES)
        mask = torch.from_numpy(self.raw_mask)
        first = torch.where(mask, raw, torch.tanh(z / 2))
        second = torch.where(mask, (raw + 1 / PRIOR_TRACK_FRAMES).clamp(0, 1), torch.tanh(z_next / 2))
        features = torch.stack([first, second], 1).reshape(2 * pairs, n)
        positions = torch.stack([pos, pos + 1 / PRIOR_TRACK_FRAMES], 1).reshape(-1)
        return positions, features


def prior_channels(pairs: int, g: torch.Generator) -> torch.Tensor:
    """[2·pairs, 3] pulse, drift, level for consecutive prior frames (see the module docstring)."""
    level = torch.rand(pairs, generator=g)
    pulse = torch.rand(pairs, generator=g) ** 3
    onset = torch.rand(pairs, generator=g) < PRIOR_ONSETS
    pulse_next = torch.where(onset, torch.ones_like(pulse), pulse * math.exp(-1 / (PRIOR_FPS * PULSE_RELEASE_S)))
    drift = torch.rand(pairs, generator=g) * PRIOR_DRIFT_S
    drift_next = drift + (MOTION_IDLE + (1 - MOTION_IDLE) * level * 0.8) / PRIOR_FPS
    first = torch.stack([pulse, drift, level], 1)
    second = torch.stack([pulse_next, drift_next, level], 1)
    return torch.stack([first, second], 1).reshape(2 * pairs, 3)


def prior_walk(sets: Sequence[str], *, n_frames: int, fps: float, seed: int,
               embedding_dims: int = DEFAULT_EMBEDDING_DIMS) -> FeatureTimeline:
    """A timeline drawn from the synthetic prior as a random walk (z steps of N(0, 0.1²) per frame)."""
    mask = torch.from_numpy(raw_column_mask(sets, embedding_dims=embedding_dims))
    g = torch.Generator().manual_seed(seed)
    z = torch.cumsum(torch.cat([torch.randn(1, mask.numel(), generator=g),
                                0.1 * torch.randn(n_frames - 1, mask.numel(), generator=g)]), dim=0)
    time_col = torch.linspace(0, 1, n_frames)[:, None].expand_as(z)
    values = torch.where(mask, time_col, torch.tanh(z / 2)).numpy().astype(np.float32)
    onset = np.abs(np.diff(values, axis=0, prepend=values[:1])).mean(axis=1)
    onset = (onset / max(onset.max(), 1e-9)).astype(np.float32)
    level = np.full(n_frames, 0.8, dtype=np.float32)
    drift = np.arange(n_frames, dtype=np.float32) * (MOTION_IDLE + (1 - MOTION_IDLE) * 0.8 * 0.8) / fps
    return FeatureTimeline(sets=tuple(sets), names=columns_for(sets, embedding_dims=embedding_dims),
                           values=values, fps=float(fps), onset=onset,
                           normalisation={"method": "synthetic prior walk"},
                           channels=np.stack([onset, drift, level], axis=1).astype(np.float32))


class Objective:
    """Text targets and the loss terms; one call scores a batch of rendered frames."""

    def __init__(self, spec: StyleSpec, guide: Guide | None, *, palette: Palette | None = None,
                 perceptual: torch.nn.Module | None = None) -> None:
        self.spec, self.guide, self.perceptual = spec, guide, perceptual
        self.palette = palette if spec.palette_trains else None
        self.terms: dict[str, float] = {}  # the last call's weight-free terms
        self.prompts = [p.text for p in spec.prompts] if guide is not None else []
        self.negatives = [p.text for p in spec.negative_prompts] if guide is not None else []
        if guide is not None:
            self.text = guide.encode_texts(self.prompts + self.negatives)
            w = torch.tensor([p.weight for p in spec.prompts + spec.negative_prompts], device=guide.device)
            n_pos = len(self.prompts)
            self.w_pos = w[:n_pos] / w[:n_pos].sum()
            self.w_neg = w[n_pos:] / w[n_pos:].sum() if self.negatives else w[n_pos:]

    def __call__(self, frames: torch.Tensor, g: torch.Generator, *, audio_change: torch.Tensor | None = None,
                 keep: tuple[float, float] | None = None) -> tuple[torch.Tensor, dict[str, float], float]:
        """Loss of frames [B, 3, H, W] (rows 2i, 2i+1 consecutive); `audio_change` [B/2] per pair; `keep` the
        untrained network's (detail, change)."""
        loss, sims = self.guidance(frames, g)
        loss = loss + self.weight_free(frames)
        return self._finish(frames, loss, sims, audio_change=audio_change, keep=keep)

    def guidance(self, frames: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, dict[str, float]]:
        """The CLIP part: − weighted prompt similarity + negative_weight · negative similarity (0 without CLIP)."""
        if self.guide is None:
            return frames.new_zeros(()), {}
        t = self.spec.training
        crops = cutouts(frames, count=t.cutouts, size=self.guide.image_size, augment=t.augment, generator=g)
        autocast = torch.autocast("cuda", dtype=torch.bfloat16) if crops.is_cuda else contextlib.nullcontext()
        with autocast:
            emb = self.guide.encode_images(crops)
        sims = (emb @ self.text.T).float().mean(dim=0)  # [prompts + negatives]
        n_pos = len(self.prompts)
        loss = -(sims[:n_pos] * self.w_pos).sum()
        if self.negatives:
            loss = loss + t.negative_weight * (sims[n_pos:] * self.w_neg).sum()
        names = self.prompts + [f"not: {n}" for n in self.negatives]
        return loss, {n: float(s) for n, s in zip(names, sims.detach().cpu())}

    def weight_free(self, frames: torch.Tensor) -> torch.Tensor:
        """The palette, contrast and perceptual terms (their values are kept in `self.terms` for the step record)."""
        self.terms = {}
        loss = frames.new_zeros(())
        if self.palette is not None:
            term = palette_loss(frames, self.palette)
            self.terms["palette"] = float(term.detach())
            loss = loss + self.spec.palette.weight * term
        if self.spec.training.contrast_weight > 0:
            spread = contrast(frames)
            self.terms["contrast"] = float(spread.detach())
            loss = loss - self.spec.training.contrast_weight * spread
        if self.perceptual is not None and self.spec.training.perceptual_weight > 0:
            # one frame of each pair of consecutive frames: they are nearly alike, and VGG is the costly part
            term = self.perceptual(frames[0::2] if frames.shape[0] >= 2 else frames)
            self.terms["perceptual"] = float(term.detach())
            loss = loss + self.spec.training.perceptual_weight * term
        return loss

    def _finish(self, frames: torch.Tensor, loss: torch.Tensor, sims: dict[str, float], *,
                audio_change: torch.Tensor | None, keep: tuple[float, float] | None
                ) -> tuple[torch.Tensor, dict[str, float], float]:
        """Adds smoothness, reactivity and the collapse guard."""
        t = self.spec.training
        smooth = detail(frames)
        pairs = frames.shape[0] >= 2
        change = (frames[0::2] - frames[1::2]).abs().mean(dim=(1, 2, 3)) if pairs else frames.new_zeros(1)
        temporal = reactivity(change, audio_change) if pairs and audio_change is not None else frames.new_zeros(())
        loss = loss + t.temporal_weight * temporal + t.smoothness_weight * smooth
        if keep is not None and t.collapse_weight > 0:
            guard = torch.relu(math.log(KEEP * keep[0]) - torch.log(smooth + 1e-6))
            if pairs:
                guard = guard + torch.relu(math.log(KEEP * keep[1]) - torch.log(change.mean() + 1e-6))
            loss = loss + t.collapse_weight * guard
        return loss, sims, float(temporal.detach())


def contrast(frames: torch.Tensor) -> torch.Tensor:
    """Mean over frames [B, 3, H, W] of the spread (std) of OKLab lightness, each capped at CONTRAST_CAP."""
    lightness = srgb_to_oklab(frames.permute(0, 2, 3, 1).float())[..., 0]
    return lightness.flatten(1).std(dim=1).clamp(max=CONTRAST_CAP).mean()


def detail(frames: torch.Tensor) -> torch.Tensor:
    """Mean gradient magnitude (total variation per pixel) of frames [B, 3, H, W]; a flat field gives 0."""
    return (frames[..., 1:, :] - frames[..., :-1, :]).abs().mean() + \
        (frames[..., :, 1:] - frames[..., :, :-1]).abs().mean()


def reactivity(change: torch.Tensor, audio_change: torch.Tensor) -> torch.Tensor:
    """Penalise visual change [pairs] the audio change [pairs] does not explain; reward change where it does."""
    explained = REACT_GAIN * audio_change.to(change)
    return (torch.relu(change - explained - MOTION_ALLOWANCE) - torch.minimum(change, explained)).mean()


def audio_change(features: torch.Tensor, channels: torch.Tensor) -> torch.Tensor:
    """Per consecutive pair (rows 2i, 2i+1): |Δpulse| + |Δlevel| + mean |Δfeature|, at most 1."""
    d_feat = (features[0::2] - features[1::2]).abs().mean(dim=1)
    d_chan = (channels[0::2, 0] - channels[1::2, 0]).abs() + (channels[0::2, 2] - channels[1::2, 2]).abs()
    return (d_feat + d_chan).clamp(max=1.0)


def untrained_reference(spec: StyleSpec, encoder: InputEncoder, spatial: torch.Tensor, sampler: TimeSampler, *,
                        size: tuple[int, int], device: torch.device) -> tuple[float, float]:
    """(detail, mean pair change) of the untrained network of this seed on a fixed sample: what `keep` guards.

    Rebuilt from the seed, so a resumed run gets the same reference. When training pulls toward a palette,
    the reference frames are first snapped to their nearest palette colours: the detail the same picture
    has in the palette's colours, which the palette term can reach (the untrained network's rainbow noise
    has more than any picture of three or five colours).
    """
    palette = spec.resolved_palette()
    model = build_model(spec.network, encoder, seed=spec.training.seed, gradient=gradient_of(palette)).to(device)
    positions, features, channels = sampler.sample(8, torch.Generator().manual_seed(spec.training.seed + 2))
    with torch.no_grad():
        frames = model(spatial, encoder.temporal(positions.to(device), features.to(device), channels.to(device)))
        if palette is not None and spec.palette_trains:
            frames = nearest_colours(frames, palette)
        frames = frames.view(-1, size[1], size[0], 3).permute(0, 3, 1, 2)
        change = (frames[0::2] - frames[1::2]).abs().mean()
    return max(float(detail(frames)), 1e-4), max(float(change), 1e-4)


def nearest_colours(rgb: torch.Tensor, palette: Palette) -> torch.Tensor:
    """Each colour of rgb [..., 3] replaced by the palette colour nearest to it in OKLab."""
    lab = srgb_to_oklab(rgb.reshape(-1, 3).float(), floor=0.0)
    target = torch.tensor(palette.oklab(), dtype=lab.dtype, device=lab.device)
    index = torch.cdist(lab, target).argmin(dim=1)
    colours = torch.tensor(palette.srgb(), dtype=rgb.dtype, device=rgb.device)
    return colours[index].reshape(rgb.shape)


def lr_factor(step: int, *, warmup: int, total: int) -> float:
    """Linear warm-up to 1, then cosine decay to 0.1 at the last step."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


OnStep = Callable[[StepRecord, int], None]  # (the step just taken, the run's total steps)


class StepLogger:
    """An OnStep that forwards each step to `then` and logs `train.step` every 5 % of the run or every 30 s,
    with an ETA."""

    def __init__(self, log: Logger, then: OnStep | None, *, trained_guidance: bool, every_s: float = 30.0) -> None:
        self.log, self.then, self.trained_guidance, self.every_s = log, then, trained_guidance, every_s
        self.last_logged = time.monotonic()

    def __call__(self, record: StepRecord, total: int) -> None:
        if self.then:
            self.then(record, total)
        now = time.monotonic()
        if record.step % max(1, total // 20) == 0 or record.step == total or now - self.last_logged > self.every_s:
            self.last_logged = now
            rate = record.seconds / max(record.step, 1)
            self.log.info("train.step", step=record.step, of=total, loss=round(record.loss, 5),
                          similarity={k: round(v, 4) for k, v in record.similarity.items()},
                          eta_s=round(rate * (total - record.step), 1), trained_guidance=self.trained_guidance)


def optimise(spec: StyleSpec, guide: Guide | None, timelines: Sequence[FeatureTimeline], *, device: torch.device,
             checkpoint_dir: Path | None, on_step: OnStep | None = None,
             should_stop: Callable[[], bool] | None = None,
             perceptual: torch.nn.Module | None = None) -> TrainingResult:
    """Train a CPPN for `spec` (no `guide`: clip_model = "none"); resumes from `checkpoint_dir` when it holds a
    checkpoint of the same style.

    `perceptual` (daemon.perceptual.load_perceptual) is needed when `training.perceptual_weight` > 0.
    """
    if spec.training.perceptual_weight > 0 and perceptual is None:
        raise TrainingError("training.perceptual_weight > 0 needs the VGG16 perceptual model",
                            key="training.perceptual_weight", hint="load it with daemon.perceptual.load_perceptual")
    with _deterministic(device.type == "cpu"):
        return _optimise(spec, guide, timelines, device=device, checkpoint_dir=checkpoint_dir, on_step=on_step,
                         should_stop=should_stop, perceptual=perceptual)


@contextlib.contextmanager
def _deterministic(enabled: bool) -> Iterator[None]:
    """Deterministic kernels for the training only: the flag is process-wide and the service renders too."""
    before = torch.are_deterministic_algorithms_enabled()
    if enabled:
        torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before)


def _optimise(spec: StyleSpec, guide: Guide | None, timelines: Sequence[FeatureTimeline], *, device: torch.device,
              checkpoint_dir: Path | None, on_step: OnStep | None,
              should_stop: Callable[[], bool] | None, perceptual: torch.nn.Module | None) -> TrainingResult:
    t = spec.training
    dims = spec.audio.embedding_dims
    encoder = InputEncoder(spec.encoder, len(columns_for(spec.audio.features, embedding_dims=dims)))
    palette = spec.resolved_palette()
    model = build_model(spec.network, encoder, seed=t.seed, gradient=gradient_of(palette)).to(device)
    optimiser = torch.optim.Adam(model.parameters(), lr=t.learning_rate)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda s: lr_factor(s, warmup=t.lr_warmup, total=t.iterations))
    generator = torch.Generator().manual_seed(t.seed + 1)
    history: list[StepRecord] = []
    start, elapsed = _resume(checkpoint_dir, spec, model, optimiser, schedule, generator, history)
    width, height = training_size(spec)
    spatial = encoder.spatial(width, height, device=device)
    sampler = TimeSampler(timelines, spec.audio.features, embedding_dims=dims)
    objective = Objective(spec, guide, palette=palette,
                          perceptual=perceptual.to(device) if perceptual is not None else None)
    pairs = max(1, t.time_points // 2)
    keep = untrained_reference(spec, encoder, spatial, sampler, size=(width, height), device=device)
    began = time.perf_counter() - elapsed
    for step in range(start, t.iterations):
        if should_stop and should_stop():
            _save_checkpoint(checkpoint_dir, spec, model, optimiser, schedule, generator, history, step,
                             time.perf_counter() - began)
            raise TrainingInterrupted(step)
        positions, features, channels = sampler.sample(pairs, generator)
        temporal = encoder.temporal(positions.to(device), features.to(device), channels.to(device))
        if t.time_points == 1:  # one audio moment per step: no pair, so no reactivity term
            temporal = temporal[:1]
        frames = model(spatial, temporal).view(-1, height, width, 3).permute(0, 3, 1, 2)
        loss, sims, coherence = objective(frames, generator, audio_change=audio_change(features, channels).to(device),
                                          keep=keep)
        if not torch.isfinite(loss):
            raise TrainingError(f"loss became {float(loss)} at step {step}", key="training.learning_rate",
                                hint="lower training.learning_rate")
        optimiser.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]  # (untyped in torch)
        optimiser.step()
        schedule.step()
        record = StepRecord(step=step + 1, loss=float(loss.detach()), similarity=sims, temporal=coherence,
                            lr=optimiser.param_groups[0]["lr"], seconds=time.perf_counter() - began,
                            terms=dict(objective.terms))
        history.append(record)
        if on_step:
            on_step(record, t.iterations)
        if checkpoint_dir and (step + 1) % t.checkpoint_every == 0 and step + 1 < t.iterations:
            _save_checkpoint(checkpoint_dir, spec, model, optimiser, schedule, generator, history, step + 1,
                             record.seconds)
    model.eval()
    return TrainingResult(model=model.cpu(), history=history, seconds=time.perf_counter() - began,
                          resumed_from=start, audio_source=sampler.source)


def _save_checkpoint(folder: Path | None, spec: StyleSpec, model: CPPN, optimiser: torch.optim.Optimizer,
                     schedule: LRScheduler, generator: torch.Generator, history: list[StepRecord], step: int,
                     seconds: float) -> None:
    if folder is None:
        return
    folder.mkdir(parents=True, exist_ok=True)
    state = {
        "style_id": spec.style_id, "step": step, "seconds": seconds,
        "model": model.state_dict(), "optimiser": optimiser.state_dict(), "schedule": schedule.state_dict(),
        "generator": generator.get_state(),
        "history": [[r.step, r.loss, list(r.similarity.items()), r.temporal, r.lr, r.seconds, list(r.terms.items())]
                    for r in history],
    }
    tmp = folder / f".{CHECKPOINT_FILE}.tmp"
    torch.save(state, tmp)
    os.replace(tmp, folder / CHECKPOINT_FILE)


def _resume(folder: Path | None, spec: StyleSpec, model: CPPN, optimiser: torch.optim.Optimizer, schedule: LRScheduler,
            generator: torch.Generator, history: list[StepRecord]) -> tuple[int, float]:
    """Load the checkpoint in `folder` if it belongs to this style; returns (start step, seconds so far)."""
    path = folder / CHECKPOINT_FILE if folder else None
    if path is None or not path.is_file():
        return 0, 0.0
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # a damaged checkpoint costs the steps since the last good one, not the job
        return 0, 0.0
    if state.get("style_id") != spec.style_id:
        return 0, 0.0
    model.load_state_dict(state["model"])
    optimiser.load_state_dict(state["optimiser"])
    schedule.load_state_dict(state["schedule"])
    generator.set_state(state["generator"])
    for step, loss, sims, temporal, lr, seconds, *terms in state["history"]:  # terms: since palettes
        history.append(StepRecord(int(step), float(loss), {str(k): float(v) for k, v in sims}, float(temporal),
                                  float(lr), float(seconds), {str(k): float(v) for k, v in (terms[0] if terms else [])}))
    return int(state["step"]), float(state["seconds"])


def clear_checkpoint(folder: Path | None) -> None:
    if folder is not None:
        (folder / CHECKPOINT_FILE).unlink(missing_ok=True)
