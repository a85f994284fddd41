"""Rendering: every frame of a track through a style's CPPN, on the device, in bounded memory.

Frames are produced in batches as uint8 [B, H, W, 3] tensors on the device (colour quantisation happens
there); only the finished bytes of a batch cross to the host, for the encoder. The spatial half of the
first layer is computed once per resolution (see `daemon.cppn`). Nothing here knows about files, reports
or the service.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from daemon.audio.features import FeatureTimeline
from daemon.errors import RenderError
from daemon.style import Style
from daemon.tables import bounds


@dataclass(frozen=True)
class RenderSettings:
    """Size, rate and device of a render."""

    width: int = 1280  # pixels; even (yuv420p)
    height: int = 720  # pixels; even (yuv420p)
    fps: int = 30  # frames per second
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    batch_frames: int = 0  # frames per batch; 0 picks by device (CPU 1, CUDA by memory)
    tile_pixels: int = 0  # pixels evaluated at once; 0 picks by device (CPU 32768, CUDA whole frames)

    def validate(self) -> None:
        for name, value in (("width", self.width), ("height", self.height)):
            if value < 16 or value > 7680 or value % 2:
                raise RenderError(f"{name} must be an even number of pixels from 16 to 7680, got {value}",
                                  key=f"render.{name}")
        if not 1 <= self.fps <= 240:
            raise RenderError(f"fps must be from 1 to 240, got {self.fps}", key="render.fps")

    def key(self) -> dict[str, object]:
        """What changes the pixels of a render (device and batching do not, beyond float rounding)."""
        return {"width": self.width, "height": self.height, "fps": self.fps}


RENDER_LIMITS = {
    "width": bounds(lo=16, hi=7680),
    "height": bounds(lo=16, hi=7680),
    "fps": bounds(lo=1, hi=240),
}


def resolve_device(name: str) -> torch.device:
    """`auto` → CUDA when present, else CPU; an explicit CUDA device that is absent is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RenderError(f"device '{name}' was asked for but CUDA is not available", key="device",
                          hint="use device = \"auto\" or \"cpu\"")
    return device


def plan_batches(settings: RenderSettings, device: torch.device, width: int) -> tuple[int, int]:
    """(frames per batch, pixels per tile) for this device unless the settings fix them."""
    pixels = settings.width * settings.height
    if device.type == "cuda":
        # activations of one frame: pixels × width × 4 bytes × ~3 live tensors; use a quarter of free memory
        free, _ = torch.cuda.mem_get_info(device)
        per_frame = pixels * width * 4 * 3
        batch = max(1, min(32, int(free * 0.25 // per_frame)))
        tile = pixels
    else:
        batch, tile = 1, 32768
    return settings.batch_frames or batch, min(settings.tile_pixels or tile, pixels)


@torch.inference_mode()
def render_frames(style: Style, timeline: FeatureTimeline, settings: RenderSettings, *,
                  device: torch.device, start: int = 0, stop: int | None = None) -> Iterator[torch.Tensor]:
    """Yield uint8 frame batches [B, H, W, 3] on `device`, in order, for frames start..stop of the track."""
    settings.validate()
    check_features(style, timeline)
    model = style.model.to(device).eval()
    encoder = style.input_encoder
    batch, tile = plan_batches(settings, device, style.network.width)
    spatial_pre = model.spatial_pre(encoder.spatial(settings.width, settings.height, device=device))
    features = torch.from_numpy(timeline.values).to(device)
    positions = encoder.positions(timeline.n_frames, device=device)
    stop = timeline.n_frames if stop is None else stop
    for first in range(start, stop, batch):
        last = min(first + batch, stop)
        temporal_pre = model.temporal_pre(encoder.temporal(positions[first:last], features[first:last]))
        rgb = torch.empty((last - first, spatial_pre.shape[0], 3), device=device, dtype=torch.uint8)
        for p in range(0, spatial_pre.shape[0], tile):
            pre = spatial_pre[p:p + tile][None] + temporal_pre[:, None]
            rgb[:, p:p + tile] = to_uint8(model.from_pre(pre))
        yield rgb.view(last - first, settings.height, settings.width, 3)


def to_uint8(rgb: torch.Tensor) -> torch.Tensor:
    """[0, 1] floats → uint8, rounded, on the same device."""
    return (rgb.float() * 255.0).round_().clamp_(0, 255).to(torch.uint8)


def check_features(style: Style, timeline: FeatureTimeline) -> None:
    """The timeline must carry exactly the columns the style was trained on, in the same order."""
    if tuple(timeline.names) != tuple(style.features.columns):
        raise RenderError(
            f"style '{style.name}' reads features {list(style.features.sets)} but the timeline has "
            f"{list(timeline.sets)}", hint="extract the style's feature sets (the pipeline does this)")
