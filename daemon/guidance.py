"""CLIP guidance through open_clip: model loading (tags, local checkpoints, a models cache), text targets,
and the image side of the loss (cutouts, differentiable augmentations, similarity).

Weights are looked up in the models cache first with the Hugging Face hub in offline mode, and downloaded
only when allowed; a miss is a GuidanceError that names the model, the tag, where it looked and how to fix
it. Local checkpoints load as safetensors or with `torch.load(weights_only=True)`: never arbitrary pickle.
`afx-tiny` (daemon/model_configs/afx-tiny.json) is a tiny *untrained* CLIP for offline pipeline checks;
training with it, or with pretrained = "none", is marked `trained_guidance: false` everywhere.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from daemon.errors import GuidanceError

TINY_MODEL = "afx-tiny"
UNTRAINED = "none"
UNTRAINED_SEED = 0
_CONFIGS = Path(__file__).parent / "model_configs"
_registered = False
#: after a failed download of some weights, styles that need the same ones fail at once for this long
#: instead of each waiting out the hub's retries (an offline host with eight example specs: minutes)
DOWNLOAD_RETRY_S = 600.0
_failed_downloads: dict[tuple[str, str, str | None], float] = {}  # (model, tag, cache) → monotonic time


def _open_clip() -> Any:
    """open_clip (untyped: Any) with the project's model configs registered (once)."""
    global _registered
    import open_clip

    if not _registered:
        open_clip.add_model_config(_CONFIGS)
        _registered = True
    return open_clip


def is_checkpoint_path(pretrained: str) -> bool:
    """A local checkpoint is named by a path (a separator or a weights extension), not a tag."""
    return "/" in pretrained or pretrained.endswith((".pt", ".pth", ".bin", ".safetensors"))


@contextlib.contextmanager
def _hub_offline(offline: bool) -> Iterator[None]:
    """Make huggingface_hub answer from its cache only (no network, no retries) while inside."""
    import huggingface_hub.constants as hub

    saved = hub.HF_HUB_OFFLINE
    hub.HF_HUB_OFFLINE = offline or saved
    try:
        yield
    finally:
        hub.HF_HUB_OFFLINE = saved


@contextlib.contextmanager
def _quiet_root_logger() -> Iterator[None]:
    """open_clip warns on the root logger that an untrained model is untrained; here that is the point."""
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(previous)


@dataclass
class Guide:
    """A loaded CLIP model, frozen, with what the trainer needs to feed it."""

    model: Any  # an open_clip CLIP model (the library is untyped): encode_text, encode_image
    tokenizer: Callable[[list[str]], torch.Tensor]
    clip_model: str
    pretrained: str
    trained: bool  # False for afx-tiny or pretrained = "none": similarities then mean nothing
    image_size: int
    mean: torch.Tensor  # [1, 3, 1, 1]
    std: torch.Tensor  # [1, 3, 1, 1]

    @property
    def device(self) -> torch.device:
        device: torch.device = next(self.model.parameters()).device
        return device

    def describe(self) -> dict[str, object]:
        return {"clip_model": self.clip_model, "pretrained": self.pretrained, "trained_guidance": self.trained}

    @torch.no_grad()
    def encode_texts(self, texts: Sequence[str]) -> torch.Tensor:
        """Unit-norm text embeddings [N, D]."""
        tokens = self.tokenizer(list(texts)).to(self.device)
        return F.normalize(self.model.encode_text(tokens).float(), dim=-1)

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """Unit-norm embeddings [N, D] of images [N, 3, S, S] in [0, 1] at `image_size` (differentiable)."""
        x = (images - self.mean.to(images.dtype)) / self.std.to(images.dtype)
        return F.normalize(self.model.encode_image(x).float(), dim=-1)


def load_guide(clip_model: str, pretrained: str, *, cache_dir: Path | None, device: torch.device,
               allow_download: bool = True) -> Guide:
    """Load an open_clip model for guidance; see the module docstring for where weights come from."""
    open_clip = _open_clip()
    if clip_model not in open_clip.list_models():
        close = [m for m in open_clip.list_models() if clip_model.lower().replace("/", "-") in m.lower()][:5]
        raise GuidanceError(f"unknown CLIP model '{clip_model}'", key="training.clip_model",
                            hint=f"try one of: {', '.join(close or ['RN50', 'ViT-B-32', 'ViT-L-14', TINY_MODEL])}")
    trained = pretrained != UNTRAINED and clip_model != TINY_MODEL
    if is_checkpoint_path(pretrained):
        model = open_clip.create_model(clip_model, pretrained=None, device="cpu")
        _load_local_checkpoint(model, Path(pretrained).expanduser(), clip_model=clip_model)
        model = model.to(device)
    elif pretrained == UNTRAINED or clip_model == TINY_MODEL:
        # seeded: an untrained guide must be the same model in every process, or a resumed training
        # (or a second run of the same spec) would chase a different random target
        with torch.random.fork_rng(devices=[]), _quiet_root_logger():
            torch.manual_seed(UNTRAINED_SEED)
            model = open_clip.create_model(clip_model, pretrained=None, device="cpu").to(device)
    else:
        model = _create_pretrained(open_clip, clip_model, pretrained, cache_dir=cache_dir, device=device,
                                   allow_download=allow_download)
    model.eval().requires_grad_(False)
    cfg = open_clip.get_model_preprocess_cfg(model)
    size = cfg["size"]
    return Guide(
        model=model, tokenizer=open_clip.get_tokenizer(clip_model), clip_model=clip_model, pretrained=pretrained,
        trained=trained, image_size=int(size[0] if isinstance(size, (tuple, list)) else size),
        mean=torch.tensor(cfg["mean"], device=device).view(1, 3, 1, 1),
        std=torch.tensor(cfg["std"], device=device).view(1, 3, 1, 1),
    )


def _create_pretrained(open_clip: Any, clip_model: str, tag: str, *, cache_dir: Path | None, device: torch.device,
                       allow_download: bool) -> torch.nn.Module:
    tags = open_clip.list_pretrained_tags_by_model(clip_model)
    if tag not in tags:
        raise GuidanceError(f"'{tag}' is not a pretrained tag of {clip_model}", key="training.pretrained",
                            hint=f"tags: {', '.join(tags) or 'none'}; or a local checkpoint path, or \"none\"")
    cache = str(cache_dir) if cache_dir else None
    try:
        with _hub_offline(True):
            model: torch.nn.Module = open_clip.create_model(clip_model, pretrained=tag, device=device,
                                                            cache_dir=cache, require_pretrained=True)
            return model
    except Exception as cached_miss:  # open_clip raises RuntimeError; hub/urllib raise their own
        failed_at = _failed_downloads.get((clip_model, tag, cache))
        if not allow_download or (failed_at is not None and time.monotonic() - failed_at < DOWNLOAD_RETRY_S):
            raise missing_weights(clip_model, tag, cache_dir) from cached_miss
    try:
        model = open_clip.create_model(clip_model, pretrained=tag, device=device, cache_dir=cache,
                                       require_pretrained=True)
        return model
    except Exception as e:
        _failed_downloads[(clip_model, tag, cache)] = time.monotonic()
        raise missing_weights(clip_model, tag, cache_dir) from e


def missing_weights(clip_model: str, tag: str, cache_dir: Path | None) -> GuidanceError:
    where = str(cache_dir) if cache_dir else "the default Hugging Face / torch caches"
    return GuidanceError(
        f"weights for CLIP {clip_model} ({tag}) are not in the models cache and could not be downloaded",
        path=where, key="training.pretrained",
        hint=f"on a connected machine run `afx models fetch {clip_model} {tag}` and copy its models folder to "
             f"{where}, or set training.pretrained to a local checkpoint file (.safetensors or .pt)",
    )


def _load_local_checkpoint(model: torch.nn.Module, path: Path, *, clip_model: str) -> None:
    if not path.is_file():
        raise GuidanceError("checkpoint file not found", path=path, key="training.pretrained",
                            hint="give the path of a .safetensors or .pt open_clip checkpoint")
    state: dict[str, Any]
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise GuidanceError(f"cannot read checkpoint ({str(e).splitlines()[0][:200]})", path=path,
                            key="training.pretrained",
                            hint="checkpoints must be safetensors or tensor-only torch files (no pickled code)") from e
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    state = {k.removeprefix("module."): v for k, v in state.items()}
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise GuidanceError(f"checkpoint does not fit {clip_model} ({str(e).splitlines()[0][:200]})", path=path,
                            key="training.pretrained", hint="check training.clip_model matches the checkpoint") from e


def fetch_weights(clip_model: str, tag: str, *, cache_dir: Path) -> Path:
    """Download weights into the models cache (for `afx models fetch` on a connected machine)."""
    load_guide(clip_model, tag, cache_dir=cache_dir, device=torch.device("cpu"), allow_download=True)
    return cache_dir


# ── the image side of the objective ──────────────────────────────────────────────────────────────────────

def cutouts(frames: torch.Tensor, *, count: int, size: int, augment: bool, generator: torch.Generator,
            min_scale: float = 0.5) -> torch.Tensor:
    """Random square crops of frames [K, 3, H, W] resampled to [K × count, 3, size, size].

    Each crop covers between `min_scale` and all of the shorter side; with `augment`, crops are also rotated
    (±15°) and colour-jittered (brightness and per-channel gain), all differentiably (affine grid sampling),
    so the CPPN cannot game CLIP with pixel-exact patterns.
    """
    k, _, h, w = frames.shape
    n = k * count
    dev, dt = frames.device, frames.dtype
    u = torch.rand(n, 5, generator=generator).to(dev, dt)
    short = min(h, w)
    scale = min_scale + (1 - min_scale) * u[:, 0]  # crop side / shorter side
    sx, sy = scale * short / w, scale * short / h  # half-extent in normalised grid units
    tx = (u[:, 1] * 2 - 1) * (1 - sx)
    ty = (u[:, 2] * 2 - 1) * (1 - sy)
    angle = (u[:, 3] * 2 - 1) * math.radians(15) if augment else torch.zeros(n, device=dev, dtype=dt)
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.stack([torch.stack([sx * cos, -sx * sin, tx], 1),
                         torch.stack([sy * sin, sy * cos, ty], 1)], 1)
    grid = F.affine_grid(theta, [n, 3, size, size], align_corners=False)
    source = frames.repeat_interleave(count, dim=0)
    crops = F.grid_sample(source, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    if augment:
        jitter = torch.rand(n, 4, generator=generator).to(dev, dt)
        brightness = (jitter[:, 0:1] - 0.5) * 0.2
        gain = 1 + (jitter[:, 1:4] - 0.5) * 0.2
        crops = (crops * gain[:, :, None, None] + brightness[:, :, None, None]).clamp(0, 1)
    return crops
