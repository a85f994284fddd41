"""The CPPN and THE input encoder: the only code that turns pixels, time and audio into network input.

Training and rendering both call `InputEncoder` — a style trained on one encoding and rendered with
another is the classic bug of this field (the prototype trained on [-π, π] and rendered on [-0.5, 0.5]).

Coordinates keep the aspect ratio: the shorter side spans [-coord_scale, coord_scale] and the longer side
extends proportionally, at pixel centres. So a 256×144 training frame and a 1280×720 video frame sample
the same continuous field, only more densely; nothing is ever stretched.

The input splits into a *spatial* part (x, y, r: fixed per resolution) and a *temporal* part (t, the
audio features and the designed channels — pulse, and motion as a point circling at the track's drift —
fixed per frame). The first layer is linear, so W·[s; a] + b = (W_s·s + b) + W_a·a: the
spatial half is computed once per resolution and broadcast over frames. `forward_concat` evaluates the same
weights on the concatenated input, the way the prototype did; both give the same frames.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import torch
from torch import nn

from daemon.cppn_config import ACTIVATION_NAMES
from daemon.cppn_config import CPPNConfig as CPPNConfig  # re-exported: `from daemon.cppn import CPPNConfig`
from daemon.cppn_config import EncoderConfig as EncoderConfig

ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "sin": torch.sin,
    "cos": torch.cos,
    "gaussian": lambda x: torch.exp(-x * x),
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "relu": torch.relu,
    "softplus": nn.functional.softplus,
}
assert tuple(ACTIVATIONS) == ACTIVATION_NAMES, "an activation needs its name in cppn_config.ACTIVATION_NAMES too"

SPATIAL_INPUTS = ("x", "y", "r")
GRADIENT_BLEND = 0.04  # palette colour mode: width (in gradient position 0..1) of the ramp between two colours
TIME_INPUTS = ("t",)
CHANNEL_INPUTS = ("pulse", "motion_sin", "motion_cos")  # after the features, when `channels` is on


@dataclass(frozen=True)
class Gradient:
    """The palette colour mode's lookup: colours in order and the gradient positions where one gives way to
    the next (a colour's band is as wide as its palette weight)."""

    colors: tuple[tuple[float, float, float], ...]  # sRGB in [0, 1]
    edges: tuple[float, ...]  # len(colors) - 1 increasing positions in (0, 1)
    blend: float = GRADIENT_BLEND


@dataclass(frozen=True)
class InputChannel:
    """One column of the CPPN's input as data, so that exporters (`daemon.export`) generate the same encoder.

    `formula` is written in the syntax Python and GLSL share (float literals with a point, `sqrt`, `abs`,
    `atan(y, x)`, `sin`, `cos`, `floor`, `min`, `max`) over these names: `px`, `py` (the pixel's column and
    row, from the top-left corner), `width`, `height` (pixels), `position` (0 → 1 through the track),
    `features[i]` (the style's normalised feature columns), `channels[i]` (the timeline's designed rows:
    pulse, drift, level — daemon.audio.features.CHANNELS) and the input columns listed before it.
    """

    name: str  # a GLSL/Python identifier: "x", "r", "t", "f3"
    per: str  # "pixel" (the first layer's spatial half) or "frame" (its time/audio half)
    formula: str
    fed: bool = True  # False: a step of a later channel's formula (the fold's angle), not a network input


class InputEncoder:
    """Builds the CPPN's input for training and rendering alike."""

    def __init__(self, config: EncoderConfig, n_features: int) -> None:
        self.config = config
        self.n_features = n_features

    @property
    def n_spatial(self) -> int:
        return len(SPATIAL_INPUTS)

    @property
    def n_temporal(self) -> int:
        return len(TIME_INPUTS) + self.n_features + (len(CHANNEL_INPUTS) if self.config.channels else 0)

    def channels(self) -> tuple[InputChannel, ...]:
        """Every input column, in the first layer's order: what `spatial` and `temporal` compute, as formulas.

        A channel added to `spatial`/`temporal` must be described here too: the shader export is generated
        from this, and tests/test_export.py checks these formulas against `spatial` and `temporal`.
        """
        s, c = self.config, f"(2.0 * {float(self.config.coord_scale)!r} / min(width, height))"
        phase = f"channels[1] * {float(s.motion_speed)!r}"
        return (
            *self._coordinate_channels(c),
            InputChannel("r", "pixel", "sqrt(x * x + y * y)"),
            InputChannel("t", "frame", f"(position * 2.0 - 1.0) * {float(s.time_scale)!r}"),
            *(InputChannel(f"f{i}", "frame", f"features[{i}] * {float(s.feature_scale)!r}")
              for i in range(self.n_features)),
            *((InputChannel("pulse", "frame", f"channels[0] * {float(s.pulse)!r}"),
               InputChannel("motion_sin", "frame", f"sin({phase}) * {float(s.motion)!r}"),
               InputChannel("motion_cos", "frame", f"cos({phase}) * {float(s.motion)!r}")) if s.channels else ()),
        )

    def _coordinate_channels(self, c: str) -> tuple[InputChannel, ...]:
        """x and y: mirrored (|x|, |y|) as `mirror` says, then folded into a kaleidoscope wedge with `fold`."""
        fold, mirror = self.config.fold, self.config.mirror
        x = f"(px + 0.5 - width / 2.0) * {c}"
        y = f"(py + 0.5 - height / 2.0) * {c}"
        x, y = (f"abs({x})" if "x" in mirror else x), (f"abs({y})" if "y" in mirror else y)
        if not fold:
            return InputChannel("x", "pixel", x), InputChannel("y", "pixel", y)
        wedge, half = 2.0 * math.pi / fold, math.pi / fold
        return (
            InputChannel("x0", "pixel", x, fed=False),
            InputChannel("y0", "pixel", y, fed=False),
            InputChannel("angle", "pixel", "atan(y0, x0)", fed=False),
            InputChannel("folded", "pixel", f"abs(angle - {wedge!r} * floor(angle / {wedge!r}) - {half!r})",
                         fed=False),
            InputChannel("x", "pixel", "sqrt(x0 * x0 + y0 * y0) * cos(folded)"),
            InputChannel("y", "pixel", "sqrt(x0 * x0 + y0 * y0) * sin(folded)"),
        )

    def spatial(self, width: int, height: int, *, device: torch.device | str = "cpu",
                dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """[height × width, 3]: x, y, r at pixel centres, row-major, aspect kept; mirrored and folded as the
        config says (the formulas of `channels()`, in float64)."""
        short = min(width, height)
        s, mirror, fold = self.config.coord_scale, self.config.mirror, self.config.fold
        xs = (torch.arange(width, device=device, dtype=torch.float64) + 0.5 - width / 2) * (2 * s / short)
        ys = (torch.arange(height, device=device, dtype=torch.float64) + 0.5 - height / 2) * (2 * s / short)
        yy, xx = torch.meshgrid(ys, xs, indexing="ij")
        xx, yy = (xx.abs() if "x" in mirror else xx), (yy.abs() if "y" in mirror else yy)
        if fold:
            wedge, half = 2.0 * math.pi / fold, math.pi / fold
            angle = torch.atan2(yy, xx)
            folded = (angle - wedge * torch.floor(angle / wedge) - half).abs()
            radius = torch.sqrt(xx * xx + yy * yy)
            xx, yy = radius * torch.cos(folded), radius * torch.sin(folded)
        rr = torch.sqrt(xx * xx + yy * yy)
        return torch.stack([xx, yy, rr], dim=-1).reshape(-1, 3).to(dtype)

    def temporal(self, position: torch.Tensor, features: torch.Tensor,
                 channels: torch.Tensor | None = None) -> torch.Tensor:
        """[B, 1 + F (+ 3)]: t from the position in the track (0 → 1), the scaled features, then (with
        `channels` on) pulse × strength and the motion point motion × (sin φ, cos φ), φ = speed × drift.

        `channels` [B, 3] holds a timeline's pulse, drift and level rows (daemon.audio.features.CHANNELS);
        None means no audio moves them (zeros).
        """
        if features.shape[-1] != self.n_features:
            raise ValueError(f"expected {self.n_features} features per frame, got {features.shape[-1]}")
        c = self.config
        t = (position.to(features.dtype) * 2.0 - 1.0) * c.time_scale
        parts = [t[:, None], features * c.feature_scale]
        if c.channels:
            if channels is None:
                channels = features.new_zeros((features.shape[0], 3))
            channels = channels.to(features.dtype)
            phase = channels[:, 1:2] * c.motion_speed
            parts += [channels[:, 0:1] * c.pulse, torch.sin(phase) * c.motion, torch.cos(phase) * c.motion]
        return torch.cat(parts, dim=1)

    @staticmethod
    def positions(n_frames: int, *, device: torch.device | str = "cpu") -> torch.Tensor:
        """Position in the track (0 → 1) of every frame."""
        return torch.arange(n_frames, device=device, dtype=torch.float32) / max(n_frames - 1, 1)

    @staticmethod
    def concat(spatial: torch.Tensor, temporal: torch.Tensor) -> torch.Tensor:
        """The full input [B, P, 3 + 1 + F], as a network without the split would take it."""
        b, p = temporal.shape[0], spatial.shape[0]
        return torch.cat([spatial[None].expand(b, p, -1), temporal[:, None].expand(b, p, -1)], dim=-1)


#: CPPNConfig.color_mode → the name exporters know the colour function by (daemon.export.glsl)
COLOUR_FUNCTIONS = {"rgb": "sigmoid-rgb", "hsv": "sigmoid-hsv", "palette": "palette-gradient"}


def hsv_colours(logits: torch.Tensor) -> torch.Tensor:
    """[..., 3] logits → RGB: hue, saturation and value are sigmoids of the three (the GLSL hsv2rgb)."""
    h, s, v = torch.sigmoid(logits).unbind(-1)
    k = torch.tensor([1.0, 2.0 / 3.0, 1.0 / 3.0], dtype=logits.dtype, device=logits.device)
    p = h[..., None] + k
    p = ((p - torch.floor(p)) * 6.0 - 3.0).abs()
    return v[..., None] * (1.0 + s[..., None] * ((p - 1.0).clamp(0.0, 1.0) - 1.0))


def gradient_colours(logits: torch.Tensor, gradient: Gradient) -> torch.Tensor:
    """[..., 3] logits → RGB on the gradient: position s = sigmoid(first logit); the colour is the first
    palette colour plus, for each edge e_j, (c_j − c_{j−1}) · clamp((s − e_j) / blend + ½, 0, 1): flat
    bands of palette colours joined by short linear ramps."""
    s = torch.sigmoid(logits[..., :1])
    colors = torch.tensor(gradient.colors, dtype=logits.dtype, device=logits.device)  # [K, 3]
    if len(gradient.edges) == 0:
        return colors[0].expand(*logits.shape[:-1], 3).clone()
    edges = torch.tensor(gradient.edges, dtype=logits.dtype, device=logits.device)  # [K - 1]
    ramps = ((s - edges) / gradient.blend + 0.5).clamp(0.0, 1.0)  # [..., K - 1]
    return colors[0] + ramps @ (colors[1:] - colors[:-1])


class CPPN(nn.Module):
    """Coordinate network: (spatial, temporal) → RGB in [0, 1]."""

    def __init__(self, config: CPPNConfig, *, n_spatial: int, n_temporal: int,
                 gradient: Gradient | None = None) -> None:
        super().__init__()
        for name in config.activations:
            if name not in ACTIVATIONS:
                raise ValueError(f"unknown activation '{name}'")
        if config.color_mode == "palette" and gradient is None:
            raise ValueError("color_mode 'palette' needs a palette gradient")
        self.config = config
        #: how `from_pre` turns the last layer's three outputs into a colour; exporters read it (daemon.export)
        self.colour_mode = COLOUR_FUNCTIONS[config.color_mode]
        self.gradient = gradient if config.color_mode == "palette" else None
        self.spatial_in = nn.Linear(n_spatial, config.width)
        self.temporal_in = nn.Linear(n_temporal, config.width, bias=False)
        self.hidden = nn.ModuleList(nn.Linear(config.width, config.width) for _ in range(config.depth - 1))
        self.rgb = nn.Linear(config.width, 3)
        self._acts = [ACTIVATIONS[config.activations[i % len(config.activations)]] for i in range(config.depth)]

    def reset_parameters(self, generator: torch.Generator) -> None:
        """Xavier-uniform weights with the configured gains, zero biases, drawn from `generator`."""
        def xavier(w: torch.Tensor, gain: float) -> None:
            fan_out, fan_in = w.shape
            bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
            with torch.no_grad():
                w.copy_(torch.rand(w.shape, generator=generator) * 2 * bound - bound)

        xavier(self.spatial_in.weight, self.config.spatial_gain)
        xavier(self.temporal_in.weight, self.config.audio_gain)
        for layer in self.hidden_layers:
            xavier(layer.weight, self.config.hidden_gain)
        xavier(self.rgb.weight, self.config.output_gain)
        for bias in [self.spatial_in.bias, *(layer.bias for layer in self.hidden_layers), self.rgb.bias]:
            nn.init.zeros_(bias)

    @property
    def hidden_layers(self) -> list[nn.Linear]:
        """The hidden layers, typed (an nn.ModuleList holds Modules)."""
        return [cast(nn.Linear, layer) for layer in self.hidden]

    def spatial_pre(self, spatial: torch.Tensor) -> torch.Tensor:
        """The first layer's spatial half with its bias, [P, width]: compute once per resolution."""
        return self.spatial_in.forward(spatial)

    def temporal_pre(self, temporal: torch.Tensor) -> torch.Tensor:
        """The first layer's time/audio half, [B, width]: compute once per frame."""
        return self.temporal_in.forward(temporal)

    def from_pre(self, pre: torch.Tensor) -> torch.Tensor:
        """Everything after the first layer's matmul: [..., width] → RGB [..., 3]."""
        h = self._acts[0](pre)
        for i, layer in enumerate(self.hidden, start=1):
            h = self._acts[i](layer(h))
        return self.colours(self.rgb(h))

    def colours(self, logits: torch.Tensor) -> torch.Tensor:
        """The last layer's outputs [..., 3] → RGB in [0, 1], by the colour mode (the renderer calls it too)."""
        if self.gradient is not None:
            return gradient_colours(logits, self.gradient)
        if self.config.color_mode == "hsv":
            return hsv_colours(logits)
        return torch.sigmoid(logits)

    def forward(self, spatial: torch.Tensor, temporal: torch.Tensor) -> torch.Tensor:
        """[P, S] spatial and [B, T] temporal input → [B, P, 3]."""
        pre = self.spatial_pre(spatial)[None] + self.temporal_pre(temporal)[:, None]
        return self.from_pre(pre)

    def forward_concat(self, inputs: torch.Tensor) -> torch.Tensor:
        """The same network on a concatenated input [..., S + T] (the unsplit reference path)."""
        weight = torch.cat([self.spatial_in.weight, self.temporal_in.weight], dim=1)
        return self.from_pre(nn.functional.linear(inputs, weight, self.spatial_in.bias))
