"""The perceptual term of training (`training.perceptual_weight`, the roadmap's option 3C): VGG16 features.

What it measures: how far a frame is, in VGG16 feature space, from its own low-pass version (the frame
downsampled by 2 and upsampled back) — a perceptual (feature reconstruction) loss whose target is the frame
without its top octave. The gradient flows through both sides: with the target detached, the step chases a
target that moves with it and the distance grows instead (measured: a tiny style's score rose 40 % at a
high weight; through both sides it fell tenfold). Structure that survives that blur — shapes, gradients, edges at scale —
costs nothing; what VGG sees only in the finest pixels — aliasing stripes, speckle, the high-frequency
noise a sine CPPN makes at a large first-layer scale — costs in proportion to how strongly it changes the
features. Unlike the pixel total variation of `smoothness_weight`, it does not charge a bold edge for being
an edge, only texture that a viewer reads as noise. Each layer's squared difference is divided by the mean
square of its target, so the three layers (relu1_2, relu2_2, relu3_3) count alike and a darker frame does
not score better for being dark. A flat frame scores 0: `collapse_weight` is what keeps detail.

Cost: frames go through VGG16 up to relu3_3 at most PERCEPTUAL_SIZE px on the shorter side, one frame per
audio-moment pair (the pair's frames are consecutive and nearly alike).

Weights: torchvision's VGG16 (IMAGENET1K_V1) as the file `torchvision/vgg16-397923af.pth` in the models
cache, only the `features.*` tensors up to relu3_3 are read (a file holding only those works too), with
`torch.load(weights_only=True)`. `afx models fetch vgg16` downloads it; when it is absent and may not be
downloaded, training stops with a GuidanceError that names the file, `training.perceptual_weight` and the fix.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
import torch.nn.functional as F

from daemon.errors import GuidanceError

VGG_URL = "https://download.pytorch.org/models/vgg16-397923af.pth"
VGG_FILE = Path("torchvision") / "vgg16-397923af.pth"  # inside the models cache
VGG_HASH_PREFIX = "397923af"  # torchvision's check of a downloaded file
LAYERS = (3, 8, 15)  # relu1_2, relu2_2, relu3_3 in torchvision's vgg16().features
PERCEPTUAL_SIZE = 128  # frames larger than this on their shorter side are downscaled before VGG
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: after a failed download, further styles fail at once for this long (as CLIP's DOWNLOAD_RETRY_S)
DOWNLOAD_RETRY_S = 600.0
_failed_downloads: dict[str, float] = {}  # weights path → monotonic time of the failed download


def weights_path(models_dir: Path | None) -> Path:
    """Where the VGG16 weights live in the models cache (default cache: ./state/models)."""
    return Path(models_dir if models_dir is not None else Path("state/models")) / VGG_FILE


class Perceptual(torch.nn.Module):
    """Frozen VGG16 features up to relu3_3 and the low-pass feature distance of the module docstring."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, features: torch.nn.Sequential) -> None:
        super().__init__()
        self.features = features.eval().requires_grad_(False)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def activations(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Features at LAYERS of images [N, 3, H, W] in [0, 1]."""
        x = (images - self.mean) / self.std
        found = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in LAYERS:
                found.append(x)
        return found

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """Mean over LAYERS of ‖φ(x) − φ(lowpass(x))‖² / mean φ(lowpass(x))² for frames [N, 3, H, W]."""
        x = shrink(frames)
        losses = []
        for fx, ft in zip(self.activations(x), self.activations(lowpass(x))):
            losses.append((fx - ft).pow(2).mean() / (ft.detach().pow(2).mean() + 1e-6))
        return torch.stack(losses).mean()


def shrink(frames: torch.Tensor, size: int = PERCEPTUAL_SIZE) -> torch.Tensor:
    """Frames with their shorter side at most `size` (area-averaged); smaller frames pass unchanged."""
    h, w = frames.shape[-2:]
    short = min(h, w)
    if short <= size:
        return frames
    return F.interpolate(frames, size=(max(1, round(h * size / short)), max(1, round(w * size / short))),
                         mode="area")


def lowpass(frames: torch.Tensor) -> torch.Tensor:
    """The frames without their top octave: 2× area downsample, bilinear upsample to the same size."""
    h, w = frames.shape[-2:]
    if min(h, w) < 4:
        return frames
    small = F.avg_pool2d(frames, kernel_size=2, stride=2, ceil_mode=True)
    return F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)


VGG_PLAN = (64, 64, "M", 128, 128, "M", 256, 256, 256)  # torchvision's VGG16 ("D") up to relu3_3


def vgg_features() -> torch.nn.Sequential:
    """An untrained VGG16 feature stack up to relu3_3, laid out as torchvision's `vgg16().features[:16]`
    (the same indices, so its weights file fills it) without building the 138M-parameter classifier."""
    layers: list[torch.nn.Module] = []
    channels = 3
    for step in VGG_PLAN:
        if step == "M":
            layers.append(torch.nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [torch.nn.Conv2d(channels, int(step), kernel_size=3, padding=1), torch.nn.ReLU(inplace=True)]
            channels = int(step)
    return torch.nn.Sequential(*layers)


def load_perceptual(models_dir: Path | None, *, device: torch.device, allow_download: bool = True) -> Perceptual:
    """The perceptual term with VGG16 weights from the models cache (downloaded first when allowed)."""
    path = weights_path(models_dir)
    if not path.is_file():
        failed_at = _failed_downloads.get(str(path))
        if not allow_download or (failed_at is not None and time.monotonic() - failed_at < DOWNLOAD_RETRY_S):
            raise missing_vgg(path)
        try:
            download_vgg(path)
        except Exception as e:  # urllib, socket, a hash mismatch: all mean "not here"
            _failed_downloads[str(path)] = time.monotonic()
            raise missing_vgg(path, reason=str(e).splitlines()[0][:200] if str(e) else type(e).__name__) from e
    features = vgg_features()
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise GuidanceError(f"cannot read the VGG16 weights ({str(e).splitlines()[0][:200]})", path=path,
                            key="training.perceptual_weight",
                            hint="delete the file and run `afx models fetch vgg16` again") from e
    wanted = {k.removeprefix("features."): v for k, v in (state.items() if isinstance(state, dict) else [])
              if isinstance(k, str) and (_layer(k) or 0) <= LAYERS[-1] and _layer(k) is not None}
    try:
        features.load_state_dict(wanted)
    except RuntimeError as e:
        raise GuidanceError(f"the file is not torchvision's VGG16 weights ({str(e).splitlines()[0][:200]})",
                            path=path, key="training.perceptual_weight",
                            hint="delete the file and run `afx models fetch vgg16` again") from e
    return Perceptual(features).to(device)


def _layer(key: str) -> int | None:
    """N of a `features.N.weight` key; None for anything else (the classifier's tensors)."""
    head, _, rest = key.partition(".")
    index = rest.split(".")[0]
    return int(index) if head == "features" and index.isdigit() else None


def missing_vgg(path: Path, *, reason: str | None = None) -> GuidanceError:
    because = f" ({reason})" if reason else ""
    return GuidanceError(
        f"VGG16 weights for the perceptual term are not in the models cache and could not be downloaded{because}",
        path=path, key="training.perceptual_weight",
        hint=f"on a connected machine run `afx models fetch vgg16` and copy its models folder over (the file "
             f"is {VGG_FILE.as_posix()} in it), or set training.perceptual_weight = 0")


def download_vgg(path: Path) -> None:
    """torchvision's VGG16 weights from download.pytorch.org to `path` (hash-checked, atomically)."""
    from torch.hub import download_url_to_file

    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_name(f".{path.name}.tmp")
    try:
        download_url_to_file(VGG_URL, str(scratch), hash_prefix=VGG_HASH_PREFIX, progress=False)
        scratch.replace(path)
    finally:
        scratch.unlink(missing_ok=True)


def fetch_vgg(models_dir: Path) -> Path:
    """`afx models fetch vgg16`: the weights into the models cache (a no-op when present); returns the file."""
    load_perceptual(models_dir, device=torch.device("cpu"), allow_download=True)
    return weights_path(models_dir)
