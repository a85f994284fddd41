"""The CPPN's settings, as specs and style folders hold them: `CPPNConfig` (the network's shape) and
`EncoderConfig` (how coordinates, time and audio are scaled into its input).

Plain frozen dataclasses without torch, so that reading a spec (`daemon.spec`) or planning jobs
(`daemon.service.planner`) never loads it; `daemon.cppn` builds the network from them (and re-exports
them: `from daemon.cppn import CPPNConfig` keeps working). A new setting is a field with a default and a
comment, here; the code that uses it lives in `daemon.cppn`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from daemon.tables import bounds

#: the activations a CPPN may cycle through: `daemon.cppn.ACTIVATIONS` implements each (and asserts the match)
ACTIVATION_NAMES = ("sin", "cos", "gaussian", "tanh", "sigmoid", "relu", "softplus")
COLOR_MODES = ("rgb", "hsv", "palette")  # CPPNConfig.color_mode: daemon.cppn.CPPN.colours implements each
MIRRORS = ("none", "x", "y", "xy")  # EncoderConfig.mirror


@dataclass(frozen=True)
class CPPNConfig:
    """Shape of the network; everything needed to rebuild it from a style folder."""

    # units per hidden layer (the roadmap's winner: 128)
    width: int = field(default=128, metadata=bounds(lo=8, hi=1024))
    # hidden layers, each followed by the next activation of the cycle
    depth: int = field(default=4, metadata=bounds(lo=1, hi=16))
    # cycled over the hidden layers
    activations: tuple[str, ...] = field(default=("sin", "cos", "gaussian", "tanh"),
                                         metadata=bounds(choices=ACTIVATION_NAMES, max_len=16))
    # Xavier gain of the first layer's spatial half (higher: finer shapes)
    spatial_gain: float = field(default=3.0, metadata=bounds(lo=0.0, hi=100.0))
    # Xavier gain of the first layer's time/audio half (lower: calmer motion)
    audio_gain: float = field(default=0.5, metadata=bounds(lo=0.0, hi=100.0))
    # Xavier gain of the hidden layers (the prototype's 5.0 everywhere gives noise)
    hidden_gain: float = field(default=3.0, metadata=bounds(lo=0.0, hi=100.0))
    # Xavier gain of the RGB layer (higher: stronger contrast)
    output_gain: float = field(default=3.0, metadata=bounds(lo=0.0, hi=100.0))
    # how the last layer's three outputs become a colour: "rgb" (sigmoid of each), "hsv" (sigmoid of hue,
    # saturation, value) or "palette" (the first output picks a place on the style's palette gradient: the
    # picture holds palette colours only, with short ramps between neighbours; needs a palette)
    color_mode: str = field(default="rgb", metadata=bounds(choices=COLOR_MODES))


@dataclass(frozen=True)
class EncoderConfig:
    """How coordinates, time and features are scaled into network input (stored with every style)."""

    # the shorter image side spans [-coord_scale, coord_scale]
    coord_scale: float = field(default=1.0, metadata=bounds(lo=0.001, hi=1000.0))
    # t runs from -time_scale to +time_scale over a track
    time_scale: float = field(default=1.0, metadata=bounds(lo=0.0, hi=1000.0))
    # multiplies the normalised features (each in (-1, 1))
    feature_scale: float = field(default=1.0, metadata=bounds(lo=0.0, hi=1000.0))
    # feed the designed pulse and motion inputs (style folders saved before they existed load with false)
    channels: bool = True
    # pulse strength: multiplies the percussive-onset envelope (0..1) fed to the network
    pulse: float = field(default=4.0, metadata=bounds(lo=0.0, hi=1000.0))
    # motion strength: radius of the circle the motion inputs trace
    motion: float = field(default=4.0, metadata=bounds(lo=0.0, hi=1000.0))
    # motion speed: radians per second of full-level sound (silence drifts at 3 % of it)
    motion_speed: float = field(default=0.5, metadata=bounds(lo=0.0, hi=100.0))
    # radial symmetry: fold the plane into N wedges, each mirrored (a kaleidoscope: turning the picture by
    # 360/N degrees, or mirroring it about a wedge's edge, changes nothing); 0 = off
    fold: int = field(default=0, metadata=bounds(lo=0, hi=64))
    # mirror symmetry: "x" mirrors left and right (x → |x|), "y" top and bottom, "xy" both, "none"
    mirror: str = field(default="none", metadata=bounds(choices=MIRRORS))
