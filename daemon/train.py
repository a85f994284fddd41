"""The CLIP-guided optimisation loop: a StyleSpec and feature timelines in, trained CPPN weights out.

Each step renders `time_points` frames at different audio moments through THE input encoder (the same one
the renderer uses), in pairs of consecutive video frames, so the style learns to react across a whole
track and to stay coherent from one frame to the next. The loss:

    − Σ w_p · sim(prompt p)  + negative_weight · Σ w_n · sim(negative n)     (weights normalised to sum 1)
    + temporal_weight · mean |frame(t) − frame(t + 1/fps)|                 (temporal coherence)
    + smoothness_weight · total variation of the frames                       (smoothness)

Similarities are CLIP cosine similarities averaged over random cutouts with differentiable augmentation.
Adam with linear warm-up then cosine decay to 10 %; deterministic on CPU for a fixed seed (all randomness
comes from one seeded generator whose state is checkpointed); autocast (bf16) on CUDA for CLIP.
A checkpoint (tensors only, loaded with weights_only=True) is written every `checkpoint_every` steps and
when asked to stop; a later call with the same checkpoint folder resumes from it.

Without reference tracks the time points are drawn from a synthetic prior over normalised features:
each normalised column is tanh(z/2) with z ~ N(0, 1) (the shape the per-track normalisation produces),
raw columns (time, beat) are uniform in [0, 1], and the neighbouring frame moves each z by N(0, 0.1²).
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from daemon.audio.features import DEFAULT_EMBEDDING_DIMS, FeatureTimeline, columns_for, raw_column_mask
from daemon.cppn import CPPN, InputEncoder
from daemon.errors import TrainingError
from daemon.guidance import Guide, cutouts
from daemon.spec import StyleSpec
from daemon.style import build_model

TRAINER_VERSION = 1  # bump when what this module trains changes: every style id changes with it (spec.py)
CHECKPOINT_FILE = "checkpoint.pt"
PRIOR_TRACK_FRAMES = 30 * 180  # the prior's neighbouring frame is one frame of a 3-minute track at 30 fps


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
    temporal: float
    lr: float
    seconds: float


@dataclass
class TrainingResult:
    model: CPPN
    history: list[StepRecord]
    seconds: float
    resumed_from: int
    audio_source: str  # "reference tracks (N)" or "synthetic prior"
    extras: dict[str, Any] = field(default_factory=dict)

    def final_similarity(self) -> dict[str, float]:
        """Mean over the last 10 % of steps (at least one) of each prompt's similarity."""
        tail = self.history[-max(1, len(self.history) // 10):]
        return {p: float(np.mean([r.similarity[p] for r in tail])) for p in tail[0].similarity} if tail else {}


def training_size(spec: StyleSpec) -> tuple[int, int]:
    """(width, height) of training frames: `resolution` on the shorter side, the render's aspect."""
    res, w, h = spec.training.resolution, spec.render.width, spec.render.height
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

    def sample(self, pairs: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """positions [2·pairs] and features [2·pairs, F]; rows 2i and 2i+1 are consecutive frames."""
        if self.timelines:
            return self._from_timelines(pairs, generator)
        return self._from_prior(pairs, generator)

    def _from_timelines(self, pairs: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        positions, rows = [], []
        for _ in range(pairs):
            tl = self.timelines[int(torch.randint(len(self.timelines), (1,), generator=g))]
            i = int(torch.randint(tl.n_frames - 1, (1,), generator=g))
            for j in (i, i + 1):
                positions.append(j / (tl.n_frames - 1))
                rows.append(tl.values[j])
        return torch.tensor(positions, dtype=torch.float32), torch.from_numpy(np.stack(rows)).float()

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
    return FeatureTimeline(sets=tuple(sets), names=columns_for(sets, embedding_dims=embedding_dims),
                           values=values, fps=float(fps),
                           onset=(onset / max(onset.max(), 1e-9)).astype(np.float32),
                           normalisation={"method": "synthetic prior walk"})


class Objective:
    """Text targets and the loss terms; one call scores a batch of rendered frames."""

    def __init__(self, spec: StyleSpec, guide: Guide) -> None:
        self.spec, self.guide = spec, guide
        self.prompts = [p.text for p in spec.prompts]
        self.negatives = [p.text for p in spec.negative_prompts]
        self.text = guide.encode_texts(self.prompts + self.negatives)
        w = torch.tensor([p.weight for p in spec.prompts + spec.negative_prompts], device=guide.device)
        n_pos = len(self.prompts)
        self.w_pos = w[:n_pos] / w[:n_pos].sum()
        self.w_neg = w[n_pos:] / w[n_pos:].sum() if self.negatives else w[n_pos:]

    def __call__(self, frames: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, dict[str, float], float]:
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
        temporal = (frames[0::2] - frames[1::2]).abs().mean() if frames.shape[0] >= 2 else frames.new_zeros(())
        smooth = (frames[..., 1:, :] - frames[..., :-1, :]).abs().mean() + \
                 (frames[..., :, 1:] - frames[..., :, :-1]).abs().mean()
        loss = loss + t.temporal_weight * temporal + t.smoothness_weight * smooth
        names = self.prompts + [f"not: {n}" for n in self.negatives]
        return loss, {n: float(s) for n, s in zip(names, sims.detach().cpu())}, float(temporal.detach())


def lr_factor(step: int, *, warmup: int, total: int) -> float:
    """Linear warm-up to 1, then cosine decay to 0.1 at the last step."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


OnStep = Callable[[StepRecord, int], None]


def optimise(spec: StyleSpec, guide: Guide, timelines: Sequence[FeatureTimeline], *, device: torch.device,
             checkpoint_dir: Path | None, on_step: OnStep | None = None,
             should_stop: Callable[[], bool] | None = None) -> TrainingResult:
    """Train a CPPN for `spec`; resumes from `checkpoint_dir` when it holds a checkpoint of the same style."""
    with _deterministic(device.type == "cpu"):
        return _optimise(spec, guide, timelines, device=device, checkpoint_dir=checkpoint_dir, on_step=on_step,
                         should_stop=should_stop)


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


def _optimise(spec: StyleSpec, guide: Guide, timelines: Sequence[FeatureTimeline], *, device: torch.device,
              checkpoint_dir: Path | None, on_step: OnStep | None,
              should_stop: Callable[[], bool] | None) -> TrainingResult:
    t = spec.training
    dims = spec.audio.embedding_dims
    encoder = InputEncoder(spec.encoder, len(columns_for(spec.audio.features, embedding_dims=dims)))
    model = build_model(spec.network, encoder, seed=t.seed).to(device)
    optimiser = torch.optim.Adam(model.parameters(), lr=t.learning_rate)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda s: lr_factor(s, warmup=t.lr_warmup, total=t.iterations))
    generator = torch.Generator().manual_seed(t.seed + 1)
    history: list[StepRecord] = []
    start, elapsed = _resume(checkpoint_dir, spec, model, optimiser, schedule, generator, history)
    width, height = training_size(spec)
    spatial = encoder.spatial(width, height, device=device)
    sampler = TimeSampler(timelines, spec.audio.features, embedding_dims=dims)
    objective = Objective(spec, guide)
    pairs = max(1, t.time_points // 2)
    began = time.perf_counter() - elapsed
    for step in range(start, t.iterations):
        if should_stop and should_stop():
            _save_checkpoint(checkpoint_dir, spec, model, optimiser, schedule, generator, history, step,
                             time.perf_counter() - began)
            raise TrainingInterrupted(step)
        positions, features = sampler.sample(pairs, generator)
        temporal = encoder.temporal(positions.to(device), features.to(device))
        frames = model(spatial, temporal).view(-1, height, width, 3).permute(0, 3, 1, 2)
        loss, sims, coherence = objective(frames, generator)
        if not torch.isfinite(loss):
            raise TrainingError(f"loss became {float(loss)} at step {step}", key="training.learning_rate",
                                hint="lower training.learning_rate")
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        schedule.step()
        record = StepRecord(step=step + 1, loss=float(loss.detach()), similarity=sims, temporal=coherence,
                            lr=optimiser.param_groups[0]["lr"], seconds=time.perf_counter() - began)
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
                     schedule: Any, generator: torch.Generator, history: list[StepRecord], step: int,
                     seconds: float) -> None:
    if folder is None:
        return
    folder.mkdir(parents=True, exist_ok=True)
    state = {
        "style_id": spec.style_id, "step": step, "seconds": seconds,
        "model": model.state_dict(), "optimiser": optimiser.state_dict(), "schedule": schedule.state_dict(),
        "generator": generator.get_state(),
        "history": [[r.step, r.loss, list(r.similarity.items()), r.temporal, r.lr, r.seconds] for r in history],
    }
    tmp = folder / f".{CHECKPOINT_FILE}.tmp"
    torch.save(state, tmp)
    os.replace(tmp, folder / CHECKPOINT_FILE)


def _resume(folder: Path | None, spec: StyleSpec, model: CPPN, optimiser: torch.optim.Optimizer, schedule: Any,
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
    for step, loss, sims, temporal, lr, seconds in state["history"]:
        history.append(StepRecord(int(step), float(loss), {str(k): float(v) for k, v in sims}, float(temporal),
                                  float(lr), float(seconds)))
    return int(state["step"]), float(state["seconds"])


def clear_checkpoint(folder: Path | None) -> None:
    if folder is not None:
        (folder / CHECKPOINT_FILE).unlink(missing_ok=True)
