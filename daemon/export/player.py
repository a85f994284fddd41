"""The HTML player: one page that plays a track with a style live in WebGL2, the track's file beside it.

The page embeds the `webgl` shader, its weight texture (base64 float32) and the track's feature timeline
(base64 float16, one row per video frame, computed by the renderer's own feature path in
`daemon.pipeline.export_player`) with its designed channels (pulse, drift, level; float32, since drift
counts seconds and float16 would step the motion inputs by up to half a radian late in a track); it reads
the <audio> element's currentTime on every display frame, so picture and sound stay together through
play, pause and seeking.
"""

from __future__ import annotations

import base64
import json
import shutil
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from daemon.atomic import atomic_path, atomic_write_text
from daemon.audio.features import CHANNELS, FeatureTimeline
from daemon.errors import RenderError
from daemon.export.glsl import network_layers, pack_weights, shader_source
from daemon.export.webgl import runtime_js, weights_payload
from daemon.style import Style


def player_data(style: Style, timeline: FeatureTimeline, *, audio_name: str, track_name: str) -> dict[str, Any]:
    """Everything the page needs, as JSON."""
    if tuple(timeline.names) != tuple(style.features.columns):
        raise RenderError(f"the timeline's columns {list(timeline.names)} are not the style's "
                          f"{list(style.features.columns)}", hint="compute the style's own feature sets")
    values = np.ascontiguousarray(timeline.values, dtype="<f2")
    channels = np.ascontiguousarray(timeline.channel_values(), dtype="<f4")
    return {
        # uniform buffers where the GL has enough 64 KB blocks, else the texture (the page decides)
        "shaders": {"uniform": shader_source(style, variant="webgl", weights="uniform"),
                    "texture": shader_source(style, variant="webgl", weights="texture")},
        "uniform_blocks": pack_weights(network_layers(style.model)).uniform_blocks,
        "weights": weights_payload(style, "texture"),
        "features": {"b64": base64.b64encode(values.tobytes()).decode(), "frames": timeline.n_frames,
                     "fps": timeline.fps, "columns": list(timeline.names)},
        "channels": {"b64": base64.b64encode(channels.tobytes()).decode(), "columns": list(CHANNELS)},
        "audio": audio_name, "track": track_name,
        "style": {"name": style.name, "id": style.style_id, "trained": style.trained,
                  "network": f"{style.network.width}x{style.network.depth}"},
    }


def player_html(data: dict[str, Any]) -> str:
    template = resources.files("daemon.export").joinpath("player.html").read_text()
    title = f"{data['style']['name']} · {data['track']}".replace("&", "&amp;").replace("<", "&lt;")
    # '</' inside a <script> would end it early: JSON escapes it
    blob = json.dumps(data).replace("</", "<\\/")
    return (template.replace("__AFX_TITLE__", title)
            .replace("/*__AFX_RUNTIME__*/", runtime_js())
            .replace("/*__AFX_LIVE__*/", resources.files("daemon.export").joinpath("live.js").read_text())
            .replace("/*__AFX_DATA__*/", f"const AFX = {blob};"))


def write_player(style: Style, timeline: FeatureTimeline, *, audio_path: Path, out: Path) -> dict[str, Path]:
    """OUT.html and the track copied beside it as OUT.<ext> (unless it is there already); both atomically."""
    out, audio_path = Path(out), Path(audio_path)
    check_player_path(out, fps=timeline.fps)
    audio_out = out.with_suffix(audio_path.suffix.lower() or ".audio")
    if audio_out.resolve() != audio_path.resolve():
        _copy_atomic(audio_path, audio_out)
    html = player_html(player_data(style, timeline, audio_name=audio_out.name, track_name=audio_path.name))
    atomic_write_text(out, html)
    return {"html": out, "audio": audio_out}


def check_player_path(out: Path, *, fps: float) -> None:
    if Path(out).suffix.lower() not in (".html", ".htm"):
        raise RenderError("the player's file name must end in .html", path=out, hint="e.g. --player TRACK out.html")
    if not 1 <= fps <= 240:
        raise RenderError(f"the player's feature rate must be from 1 to 240 frames per second, got {fps:g}",
                          hint="e.g. --fps 30")


def _copy_atomic(src: Path, dst: Path) -> None:
    with atomic_path(dst) as scratch:
        shutil.copyfile(src, scratch)
