"""An exported shader drawn in headless Chromium: single frames for the parity test, timed frames for the bench.

The page is built from the same pieces as the player (`runtime.js`, the `webgl` shader variant and its
weight texture), so what is checked here is what plays there.
"""

from __future__ import annotations

import base64
import json
import tempfile
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from daemon.audio.features import CHANNELS
from daemon.export.browser import Browser
from daemon.export.glsl import TEXTURE_WIDTH, network_layers, pack_weights, shader_source
from daemon.style import Style


CHANNEL_COUNT = len(CHANNELS)


def runtime_js() -> str:
    return resources.files("daemon.export").joinpath("runtime.js").read_text()


def weights_payload(style: Style, weights: str) -> dict[str, Any] | None:
    """The packed weights as the runtime takes them (base64 float32 RGBA texture rows, width, rows; uniform
    blocks are cut from the same data); None for inline weights."""
    layers = network_layers(style.model)
    if weights in ("texture", "uniform"):  # the same packed vec4s, as texture rows or uniform blocks
        packed = pack_weights(layers)
        return {"b64": base64.b64encode(packed.texture().astype("<f4").tobytes()).decode(), "width": TEXTURE_WIDTH,
                "rows": packed.texture_rows}
    return None


def frame_page(style: Style, *, weights: str = "uniform") -> str:
    """A page with a canvas and `window.afxFrame(width, height, position, features, channels)` → base64 RGB."""
    source = shader_source(style, variant="webgl", weights=weights)
    payload = weights_payload(style, weights)
    return f"""<!doctype html><html><body style="margin:0"><canvas id="c"></canvas><script>
{runtime_js()}
const SHADER = {json.dumps(source)};
const WEIGHTS = {json.dumps(payload)};
let afx = null;
window.afxFrame = (width, height, position, features, channels) => {{
  const canvas = document.getElementById("c");
  canvas.width = width; canvas.height = height;
  if (!afx) afx = afxCreate(canvas, SHADER, WEIGHTS && {{data: afxFloat32(WEIGHTS.b64), width: WEIGHTS.width,
                                                         rows: WEIGHTS.rows}}, {{preserveDrawingBuffer: true}});
  afx.draw(position, new Float32Array(features), new Float32Array(channels));
  return afx.pixels();
}};
// draws `frames` frames, each finished (a 1-pixel read waits for the GPU); seconds per frame
window.afxTime = (frames, features, channels) => {{
  const px = new Uint8Array(4), times = [];
  for (let i = 0; i < frames; i++) {{
    const t0 = performance.now();
    afx.draw(i / Math.max(frames - 1, 1), new Float32Array(features), new Float32Array(channels));
    afx.gl.readPixels(0, 0, 1, 1, afx.gl.RGBA, afx.gl.UNSIGNED_BYTE, px);
    times.push((performance.now() - t0) / 1000);
  }}
  return times;
}};
window.afxCompileMs = () => afx.compileMs;
window.afxResize = (width, height) => {{ const c = document.getElementById("c"); c.width = width; c.height = height; }};
window.afxPageReady = true;
</script></body></html>"""


class ShaderFrames:
    """Draw a style's exported shader in headless Chromium: `with ShaderFrames(style) as s: s.frame(...)`."""

    def __init__(self, style: Style, *, weights: str = "uniform", timeout_s: float = 300.0) -> None:
        self.style, self.weights, self.timeout_s = style, weights, timeout_s

    def __enter__(self) -> ShaderFrames:
        self.folder = tempfile.TemporaryDirectory(prefix="afx-frame-")
        page = Path(self.folder.name) / "frame.html"
        page.write_text(frame_page(self.style, weights=self.weights))
        self.browser = Browser(timeout_s=self.timeout_s).__enter__()
        self.browser.open(page.as_uri(), ready="window.afxPageReady === true")
        return self

    def __exit__(self, *exc: object) -> None:
        self.browser.__exit__()
        self.folder.cleanup()

    def frame(self, width: int, height: int, *, position: float, features: np.ndarray,
              channels: np.ndarray | None = None) -> np.ndarray:
        """uint8 [height, width, 3], rows from the top, like the renderer's frames. `channels`: the designed
        pulse, drift and level (None: zeros, as the renderer reads a timeline without them)."""
        b64 = self.browser.evaluate(f"afxFrame({width}, {height}, {float(position)!r}, "
                                    f"{_floats(features)}, {_floats(channels, CHANNEL_COUNT)})")
        return np.frombuffer(base64.b64decode(b64), dtype=np.uint8).reshape(height, width, 3)

    def resize(self, width: int, height: int) -> None:
        """Size the canvas for `time` without drawing."""
        self.browser.evaluate(f"afxResize({width}, {height})")

    def compile_ms(self) -> float:
        return float(self.browser.evaluate("afxCompileMs()"))

    def time(self, frames: int, *, features: np.ndarray, channels: np.ndarray | None = None) -> list[float]:
        """Seconds per frame of `frames` finished frames at the last size drawn."""
        return [float(t) for t in self.browser.evaluate(f"afxTime({frames}, {_floats(features)}, "
                                                        f"{_floats(channels, CHANNEL_COUNT)})")]


def _floats(values: np.ndarray | None, zeros: int = 0) -> str:
    """A JSON list of floats; `zeros` zeros for None."""
    return json.dumps([0.0] * zeros if values is None else [float(v) for v in values])
