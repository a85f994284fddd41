"""Exporters: a style as a GLSL fragment shader, and as an HTML player of a track (a stage beside render.py).

Both are generated from the style alone: its input encoder's own description (`InputEncoder.channels()`),
its weights, activations and colour mode. `glsl` writes the shader variants, `player` the WebGL2 page,
`webgl` and `browser` draw them in headless Chromium (the parity test and `afx bench`). The pipeline
chains the features into the player (`daemon.pipeline.export_player`); nothing here reads a track.
"""

from __future__ import annotations

from pathlib import Path

from daemon.atomic import atomic_write_bytes
from daemon.errors import RenderError
from daemon.style import Style


def write_glsl(style: Style, out: Path, *, variant: str = "webgl", weights: str = "inline") -> list[Path]:
    """The shader to `out`; with texture weights also `out`.weights.f32 (raw float32 RGBA rows, the shader's
    header gives the texture's size). Returns the files written."""
    from daemon.export.glsl import network_layers, pack_weights, shader_source

    out = Path(out)
    if not out.parent.is_dir():
        raise RenderError("the output folder does not exist", path=out.parent, hint="create it, or choose another path")
    written = [atomic_write_bytes(out, shader_source(style, variant=variant, weights=weights).encode())]
    if weights == "texture":
        texture = pack_weights(network_layers(style.model)).texture()
        written.append(atomic_write_bytes(out.with_name(out.name + ".weights.f32"), texture.astype("<f4").tobytes()))
    return written
