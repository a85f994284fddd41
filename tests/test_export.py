"""`afx export`: the encoder description, the packed weights, and the shader against torch in headless Chromium.

The browser tests need Chromium (Debian's `chromium`, which scripts/bootstrap.sh installs); where none is
found they are skipped with that reason. SwiftShader gives WebGL2 without a GPU.
"""

from __future__ import annotations

import base64
import json
import math
import re
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

from daemon.audio.features import CHANNELS, FeatureTimeline
from daemon.cli import main
from daemon.cppn import ACTIVATIONS, COLOUR_FUNCTIONS, CPPNConfig, EncoderConfig, InputEncoder
from daemon.export.browser import Browser, find_chromium
from daemon.export.glsl import (
    GLSL_ACTIVATIONS, GLSL_COLOUR_MODES, blocks, network_layers, pack_weights, shader_source, uniform_name,
)
from daemon.palette import explicit_palette
from daemon.render import RenderSettings, render_frames
from daemon.style import random_style

needs_chromium = pytest.mark.skipif(find_chromium() is None, reason="no Chromium installed (scripts/bootstrap.sh "
                                                                    "installs Debian's chromium): browser parity "
                                                                    "not checked here")
MIN_PSNR = 35.0


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 99.0 if mse == 0 else 10 * math.log10(255.0**2 / mse)


def evaluate_channels(encoder: InputEncoder, *, width: int, height: int, position: float,
                      features: np.ndarray, channels: np.ndarray) -> dict[str, np.ndarray]:
    """The encoder's description evaluated with numpy: every input column per pixel [height, width]."""
    py, px = np.mgrid[0:height, 0:width].astype(np.float64)
    scope: dict[str, object] = {"px": px, "py": py, "width": float(width), "height": float(height),
                                "position": float(position), "features": features.astype(np.float64),
                                "channels": channels.astype(np.float64),
                                "sqrt": np.sqrt, "abs": np.abs, "atan": np.arctan2, "sin": np.sin, "cos": np.cos,
                                "floor": np.floor, "min": min, "max": max}
    out = {}
    for ch in encoder.channels():
        value = eval(ch.formula, {"__builtins__": {}}, scope)  # noqa: S307 - formulas from daemon.cppn only
        out[ch.name] = scope[ch.name] = np.broadcast_to(np.asarray(value, dtype=np.float64), (height, width))
    return out


def torch_frame(style, features: np.ndarray, channels: np.ndarray, *, frame: int, n_frames: int, width: int,
                height: int) -> np.ndarray:
    """Frame `frame` of a timeline whose every row is `features` and `channels` (pulse, drift, level), by the
    project's renderer in fp32."""
    timeline = FeatureTimeline(sets=style.features.sets, names=style.features.columns,
                               values=np.tile(features.astype(np.float32), (n_frames, 1)), fps=30.0,
                               onset=np.zeros(n_frames, dtype=np.float32), normalisation={},
                               channels=np.tile(channels.astype(np.float32), (n_frames, 1)))
    settings = RenderSettings(width=width, height=height, precision="fp32", device="cpu")
    batch = next(render_frames(style, timeline, settings, device=torch.device("cpu"), start=frame, stop=frame + 1))
    return batch[0].numpy()


# ── without a browser ────────────────────────────────────────────────────────────────────────────────────

@pytest.mark.parametrize("designed, symmetry", [(True, {}), (False, {}), (True, {"fold": 5}),
                                               (True, {"mirror": "x"}), (True, {"fold": 3, "mirror": "xy"})],
                         ids=["with-channels", "old-style-without", "fold", "mirror", "fold-and-mirror"])
def test_channels_describe_what_the_encoder_computes(designed, symmetry):
    """The description the shader is generated from equals `spatial` and `temporal`, channel by channel,
    with the pulse/motion channels (non-default strengths) and without them (style folders saved before them),
    and with the fold and mirror symmetries (whose steps are channels not fed to the network).
    A channel added to the encoder but not to `channels()` fails here."""
    enc = InputEncoder(EncoderConfig(coord_scale=1.7, time_scale=2.5, feature_scale=0.75, channels=designed,
                                     pulse=2.5, motion=3.0, motion_speed=0.7, **symmetry), n_features=5)
    feats = np.array([0.3, -0.9, 0.0, 0.55, 1.0], dtype=np.float32)
    designed_rows = np.array([0.8, 37.25, 0.6], dtype=np.float32)  # pulse, drift (s), level
    described = evaluate_channels(enc, width=21, height=13, position=0.37, features=feats, channels=designed_rows)
    assert sum(c.fed for c in enc.channels()) == enc.n_spatial + enc.n_temporal
    pixel = [c.name for c in enc.channels() if c.per == "pixel" and c.fed]
    frame = [c.name for c in enc.channels() if c.per == "frame" and c.fed]
    assert len(pixel) == enc.n_spatial and len(frame) == enc.n_temporal
    spatial = enc.spatial(21, 13, dtype=torch.float64).numpy().reshape(13, 21, -1)
    for i, name in enumerate(pixel):
        np.testing.assert_allclose(described[name], spatial[..., i], atol=1e-12, err_msg=name)
    temporal = enc.temporal(torch.tensor([0.37], dtype=torch.float64), torch.from_numpy(feats[None]).double(),
                            torch.from_numpy(designed_rows[None]).double())[0]
    assert len(frame) == 1 + 5 + (3 if designed else 0)
    assert not designed or (temporal[-3:].abs() > 0.5).all(), "the channels must be exercised, not zeros"
    for i, name in enumerate(frame):
        np.testing.assert_allclose(described[name], temporal[i].item(), atol=1e-12, err_msg=name)


def test_every_activation_and_colour_mode_has_a_glsl_form():
    assert set(GLSL_ACTIVATIONS) == set(ACTIVATIONS)
    assert set(GLSL_COLOUR_MODES) == set(COLOUR_FUNCTIONS.values())
    palette = explicit_palette(["navy", "teal", "gold"], [2, 1, 1])
    source = shader_source(random_style(1, network=CPPNConfig(width=8, depth=2, color_mode="palette"), palette=palette,
                                        encoder=EncoderConfig(fold=6)), weights="inline")
    assert "vec3 afx_gradient(float s)" in source and "return afx_gradient(" in source
    assert "float angle = atan(y0, x0);" in source and "vec4 in_0 = vec4(x, y, r, t);" in source


def test_packed_weights_evaluate_to_the_network():
    """Run the shader's loops over the packed vec4 layout with numpy: same colours as the torch model,
    for a width that is not a multiple of 4 (padding) and every activation."""
    style = random_style(5, network=CPPNConfig(width=10, depth=7, activations=tuple(ACTIVATIONS)))
    layers = network_layers(style.model)
    packed = pack_weights(layers)
    enc = style.input_encoder
    spatial = enc.spatial(8, 6)
    temporal = enc.temporal(torch.tensor([0.6]), torch.linspace(-1, 1, 9)[None])
    inputs = enc.concat(spatial, temporal)[0].double().numpy()  # [P, 13]
    numpy_act = {"sin": np.sin, "cos": np.cos, "gaussian": lambda v: np.exp(-v * v), "tanh": np.tanh,
                 "sigmoid": lambda v: 1 / (1 + np.exp(-v)), "relu": lambda v: np.maximum(v, 0),
                 "softplus": lambda v: np.maximum(v, 0) + np.log1p(np.exp(-np.abs(v)))}
    h = np.zeros((inputs.shape[0], blocks(inputs.shape[1]) * 4))
    h[:, :inputs.shape[1]] = inputs
    w = packed.data.astype(np.float64)
    for layer, (first, bias) in zip(layers, packed.offsets):
        bo, bi = blocks(layer.weight.shape[0]), blocks(layer.weight.shape[1])
        g = np.zeros((h.shape[0], bo * 4))
        for j in range(bo):
            acc = np.tile(w[bias + j], (h.shape[0], 1))
            for k in range(bi):
                o = first + (j * bi + k) * 4
                acc += h[:, 4 * k:4 * k + 4] @ w[o:o + 4]  # mat4(cols) * v = sum_c col_c * v_c
            g[:, 4 * j:4 * j + 4] = numpy_act[layer.activation](acc) if layer.activation else acc
        h = g
    rgb = 1 / (1 + np.exp(-h[:, :3]))
    with torch.no_grad():
        expected = style.model(spatial, temporal)[0].double().numpy()
    np.testing.assert_allclose(rgb, expected, atol=1e-5)


def test_shader_lists_its_inputs_and_uniforms():
    style = random_style(3, network=CPPNConfig(width=16, depth=2))
    webgl = shader_source(style, variant="webgl", weights="inline")
    assert webgl.startswith("#version 300 es") and "uniform float u_features[9];" in webgl
    assert "float r = sqrt(x * x + y * y);" in webgl and "float f8 = features[8] * 1.0;" in webgl
    assert "texelFetch" not in webgl and "vec4 l1_3 = act_cos(" in webgl  # 16 wide: 4 vec4s, second layer cos
    assert "texelFetch(u_weights" in shader_source(style, variant="webgl", weights="texture")
    td = shader_source(style, variant="touchdesigner", weights="inline")
    assert "uniform float uFft_bass;" in td and "TDOutputSwizzle" in td and "#version" not in td
    toy = shader_source(style, variant="shadertoy", weights="inline", track_seconds=42.0)
    assert "void mainImage(out vec4 fragColor, in vec2 fragCoord)" in toy and "#define AFX_TRACK_SECONDS 42.0" in toy
    assert "smoothstep(0.65, 0.85, bass)  /* fft.beat */" in toy
    # energies are levels in [0, 1] as the renderer's (fft v2), and the channels come from iChannel0 too
    assert "afx_energy(bass)  /* fft.bass */" in toy and "afx_rms_level()  /* fft.rms */" in toy
    assert "iChannelTime[0] * AFX_DRIFT_RATE" in toy and "position, features, channels);" in toy
    assert "float pulse = channels[0] * 4.0;" in webgl and "uniform float u_channels[3];" in webgl
    assert "uniform float uDrift;" in td and "float[3](uPulse, uDrift, uLevel)" in td


def test_export_glsl_writes_the_files(tmp_path, capsys):
    out = tmp_path / "style.frag"
    assert main(["export", "random:2", "--glsl", str(out), "--weights", "texture"]) == 0
    assert "random-2" in capsys.readouterr().out
    text = out.read_text()
    rows = int(re.search(r"RGBA32F, 1024 x (\d+)", text).group(1))
    assert (tmp_path / "style.frag.weights.f32").stat().st_size == rows * 1024 * 4 * 4


def test_export_errors_say_what_to_do(tmp_path, capsys):
    assert main(["export", "random:2"]) == 2
    assert "say what to export" in capsys.readouterr().err
    assert main(["export", "random:2", "--glsl", str(tmp_path / "missing" / "a.glsl")]) == 2
    assert "output folder does not exist" in capsys.readouterr().err
    assert main(["export", "random:2", "--glsl", str(tmp_path / "a.glsl"), "--variant", "shadertoy",
                 "--weights", "texture"]) == 2
    assert "must be self-contained" in capsys.readouterr().err
    assert main(["export", "random:2", "--player", str(tmp_path / "none.wav"), str(tmp_path / "p.html")]) == 2
    assert "none.wav" in capsys.readouterr().err
    assert main(["export", "random:2", "--player", str(tmp_path / "none.wav"), str(tmp_path / "p.mp4")]) == 2
    assert "must end in .html" in capsys.readouterr().err
    assert main(["export", "random:2", "--player", str(tmp_path / "none.wav"), str(tmp_path / "p.html"),
                 "--fps", "0"]) == 2
    assert "from 1 to 240 frames per second" in capsys.readouterr().err


# ── in headless Chromium ─────────────────────────────────────────────────────────────────────────────────

FEATURE_ROWS = [np.tanh(np.random.default_rng(s).standard_normal(9) * 1.5).astype(np.float32) for s in range(2)]
# pulse, drift (s), level: a hit early on, and a quiet moment two minutes into a track (phase ≈ 1 rad past 2π·9)
CHANNEL_ROWS = [np.array([0.9, 3.5, 0.8], np.float32), np.array([0.05, 115.2, 0.3], np.float32)]


@needs_chromium
@pytest.mark.parametrize("weights", ["uniform", "texture", "inline"])
def test_shader_matches_torch_for_a_random_style(weights):
    """random:SEED styles feed the pulse/motion channels: the frames differ from the same frame without them,
    so the channels' GLSL is what is checked, not a no-op."""
    from daemon.export.webgl import ShaderFrames

    style = random_style(7, network=CPPNConfig(width=32, depth=4))
    assert style.input_encoder.config.channels
    with ShaderFrames(style, weights=weights) as shader:
        for frame, feats, chans in zip((0, 7), FEATURE_ROWS, CHANNEL_ROWS):
            got = shader.frame(64, 36, position=frame / 10, features=feats, channels=chans)
            expected = torch_frame(style, feats, chans, frame=frame, n_frames=11, width=64, height=36)
            assert psnr(got, expected) >= MIN_PSNR, (weights, frame)
            still = torch_frame(style, feats, np.zeros(3, np.float32), frame=frame, n_frames=11, width=64, height=36)
            assert psnr(got, still) < MIN_PSNR - 5, "the channels must change the picture"
        assert got.std() > 10, "a picture, not a flat field"


@needs_chromium
@pytest.mark.parametrize("mode, encoder", [("palette", EncoderConfig(fold=6, coord_scale=2.0)),
                                           ("hsv", EncoderConfig(mirror="xy"))], ids=["palette-fold", "hsv-mirror"])
def test_shader_matches_torch_in_the_other_colour_modes_and_symmetries(mode, encoder):
    """The palette gradient and HSV colour steps and the fold/mirror inputs, in GLSL as in torch."""
    from daemon.export.webgl import ShaderFrames

    palette = explicit_palette(["#0b1d51", "#2ec4b6", "#f4d35e", "#ee6c4d"], [1, 2, 1, 1])
    style = random_style(8, network=CPPNConfig(width=16, depth=3, color_mode=mode), encoder=encoder, palette=palette)
    with ShaderFrames(style, weights="uniform") as shader:
        got = shader.frame(64, 36, position=0.4, features=FEATURE_ROWS[0], channels=CHANNEL_ROWS[0])
        expected = torch_frame(style, FEATURE_ROWS[0], CHANNEL_ROWS[0], frame=4, n_frames=11, width=64, height=36)
        assert psnr(got, expected) >= MIN_PSNR and got.std() > 10


@needs_chromium
def test_shader_matches_torch_for_a_style_saved_without_channels():
    """Style folders from before the pulse/motion channels load with `channels` off: the shader reads none."""
    from daemon.export.webgl import ShaderFrames

    style = random_style(7, network=CPPNConfig(width=16, depth=3), encoder=EncoderConfig(channels=False))
    source = shader_source(style, variant="webgl", weights="uniform")
    assert "float pulse" not in source and "motion_sin" not in source
    with ShaderFrames(style) as shader:
        got = shader.frame(48, 28, position=0.3, features=FEATURE_ROWS[1], channels=CHANNEL_ROWS[1])
        expected = torch_frame(style, FEATURE_ROWS[1], CHANNEL_ROWS[1], frame=3, n_frames=11, width=48, height=28)
        assert psnr(got, expected) >= MIN_PSNR


@needs_chromium
def test_shader_matches_torch_for_a_trained_style(tmp_path):
    """A few steps with the shipped untrained `afx-tiny` guide; a non-default encoder (coord_scale 1.7)."""
    from daemon.export.webgl import ShaderFrames
    from daemon.library import Library
    from daemon.pipeline import train_style
    from daemon.spec import parse_spec

    spec = parse_spec({"prompts": ["organic flowing shapes"], "network": {"width": 16, "depth": 3},
                       "encoder": {"coord_scale": 1.7, "time_scale": 1.5},
                       "training": {"clip_model": "afx-tiny", "pretrained": "none", "resolution": 32, "cutouts": 2,
                                    "time_points": 2, "iterations": 3, "learning_rate": 0.05},
                       "render": {"width": 64, "height": 36, "fps": 10}}, path=None, name="tiny-export")
    style = train_style(spec, library=Library(tmp_path / "library"), device="cpu", allow_download=False)
    assert style.trained and style.folder is not None and style.input_encoder.config.channels
    with ShaderFrames(style) as shader:
        for frame, feats, chans in zip((2, 9), FEATURE_ROWS, CHANNEL_ROWS):
            got = shader.frame(62, 36, position=frame / 10, features=feats, channels=chans)
            expected = torch_frame(style, feats, chans, frame=frame, n_frames=11, width=62, height=36)
            assert psnr(got, expected) >= MIN_PSNR, frame


@needs_chromium
def test_player_shows_the_renderers_frame_at_the_audio_time(tmp_path, make_wav, capsys):
    """Export a player, seek its <audio> in Chromium, and compare with the renderer's frame at that time."""
    from daemon.audio.decode import decode_audio
    from daemon.audio.features import extract_features

    track = make_wav("song.wav", 2.0)
    out = tmp_path / "site" / "play.html"
    out.parent.mkdir()
    assert main(["export", "random:4", "--player", str(track), str(out), "--fps", "10"]) == 0
    assert "20 feature frames" in capsys.readouterr().out
    assert (out.parent / "play.wav").read_bytes() == track.read_bytes()
    style = random_style(4)
    _, samples = decode_audio(track)
    timeline = extract_features(samples, sr=22050, fps=10, sets=style.features.sets)
    settings = RenderSettings(width=64, height=36, fps=10, precision="fp32", device="cpu")
    with Browser() as browser:
        browser.open(out.as_uri() + "?size=64x36", ready="window.afxPlayer && afxPlayer.ready()")
        for frame in (3, 14):
            seconds = browser.evaluate(f"afxPlayer.seek({frame / 10})")
            assert abs(seconds - frame / 10) < 1e-3
            got = np.frombuffer(base64.b64decode(browser.evaluate("afxPlayer.pixels()")), np.uint8).reshape(36, 64, 3)
            # the designed channels travel beside the features, in float32, from the renderer's timeline
            np.testing.assert_allclose(browser.evaluate("afxPlayer.channels()"), timeline.channel_values()[frame],
                                       rtol=1e-6, atol=1e-6)
            expected = next(render_frames(style, timeline, settings, device=torch.device("cpu"), start=frame,
                                          stop=frame + 1))[0].numpy()
            # the player's features are float16: still far above the bar
            assert psnr(got, expected) >= MIN_PSNR, frame
        assert browser.evaluate("afxPlayer.storage()") == "uniform", "SwiftShader has room for the uniform blocks"
        other = next(render_frames(style, timeline, settings, device=torch.device("cpu"), start=3, stop=4))[0].numpy()
        assert psnr(got, other) < MIN_PSNR, "frames 3 and 14 must differ, or the check above proves nothing"
        assert timeline.channel_values()[14, 1] > 0.2, "drift moves: the motion inputs are exercised"
        browser.open(out.as_uri() + "?size=64x36&weights=texture", ready="window.afxPlayer && afxPlayer.ready()")
        browser.evaluate("afxPlayer.seek(1.4)")
        texture = np.frombuffer(base64.b64decode(browser.evaluate("afxPlayer.pixels()")), np.uint8).reshape(36, 64, 3)
        assert browser.evaluate("afxPlayer.storage()") == "texture" and psnr(texture, expected) >= MIN_PSNR


@needs_chromium
def test_touchdesigner_and_shadertoy_variants_compile_and_draw():
    """Both run here with stand-ins for their hosts' built-ins; the TouchDesigner one equals torch."""
    style = random_style(9, network=CPPNConfig(width=16, depth=3))
    feats = FEATURE_ROWS[0]
    td = shader_source(style, variant="touchdesigner", weights="inline")
    td_host = ("#version 300 es\nprecision highp float;\nstruct TDInfo { vec4 res; };\nuniform TDInfo uTDOutputInfo;\n"
               "vec4 TDOutputSwizzle(vec4 c) { return c; }\n")
    toy = shader_source(style, variant="shadertoy", weights="inline")
    toy_host = ("#version 300 es\nprecision highp float;\nuniform vec3 iResolution;\nuniform float iChannelTime[4];\n"
                "uniform sampler2D iChannel0;\nout vec4 afxOut;\n")
    sets = "".join(f"gl.uniform1f(gl.getUniformLocation(p, '{uniform_name(c)}'), {float(v)!r});"
                   for c, v in [*zip(style.features.columns, feats), *zip(CHANNELS, CHANNEL_ROWS[0])])
    page = f"""<canvas id=c width=32 height=18></canvas><script>
    function run(src, setup) {{
      const c = document.createElement('canvas'); c.width = 32; c.height = 18;
      const gl = c.getContext('webgl2', {{preserveDrawingBuffer: true}});
      const sh = (t, s) => {{ const x = gl.createShader(t); gl.shaderSource(x, s); gl.compileShader(x);
        if (!gl.getShaderParameter(x, gl.COMPILE_STATUS)) throw new Error(gl.getShaderInfoLog(x)); return x; }};
      const p = gl.createProgram();
      gl.attachShader(p, sh(gl.VERTEX_SHADER, '#version 300 es\\nin vec2 a; void main() {{ gl_Position = vec4(a, 0.0, 1.0); }}'));
      gl.attachShader(p, sh(gl.FRAGMENT_SHADER, src)); gl.linkProgram(p); gl.useProgram(p);
      gl.bindBuffer(gl.ARRAY_BUFFER, gl.createBuffer());
      gl.bufferData(gl.ARRAY_BUFFER, new Float32Array([-1, -1, 3, -1, -1, 3]), gl.STATIC_DRAW);
      gl.enableVertexAttribArray(0); gl.vertexAttribPointer(0, 2, gl.FLOAT, false, 0, 0);
      setup(gl, p); gl.viewport(0, 0, 32, 18); gl.drawArrays(gl.TRIANGLES, 0, 3);
      const px = new Uint8Array(32 * 18 * 4); gl.readPixels(0, 0, 32, 18, gl.RGBA, gl.UNSIGNED_BYTE, px);
      return Array.from(px);
    }}
    function audio(gl, level) {{
      const t = new Uint8Array(512 * 2 * 4);
      for (let i = 0; i < 512; i++) {{ t[i * 4] = level * (1 - i / 600); t[(512 + i) * 4] = 128 + 100 * Math.sin(i / 3); }}
      gl.bindTexture(gl.TEXTURE_2D, gl.createTexture());
      gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MIN_FILTER, gl.NEAREST);
      gl.texImage2D(gl.TEXTURE_2D, 0, gl.RGBA, 512, 2, 0, gl.RGBA, gl.UNSIGNED_BYTE, t);
    }}
    window.td = () => run({json.dumps(td_host + td)}, (gl, p) => {{
      gl.uniform4f(gl.getUniformLocation(p, 'uTDOutputInfo.res'), 1 / 32, 1 / 18, 32, 18);
      gl.uniform1f(gl.getUniformLocation(p, 'uPosition'), 0.5); {sets} }});
    window.toy = (level) => run({json.dumps(toy_host + toy + "void main() { mainImage(afxOut, gl_FragCoord.xy); }")},
      (gl, p) => {{ gl.uniform3f(gl.getUniformLocation(p, 'iResolution'), 32, 18, 1);
                   gl.uniform1fv(gl.getUniformLocation(p, 'iChannelTime'), [60, 0, 0, 0]); audio(gl, level); }});
    </script>"""
    with tempfile.TemporaryDirectory() as tmp, Browser() as browser:
        path = Path(tmp) / "variants.html"
        path.write_text(page)
        browser.open(path.as_uri())

        def pixels(expr: str) -> np.ndarray:
            rgba = np.array(browser.evaluate(expr), dtype=np.uint8).reshape(18, 32, 4)
            return rgba[::-1, :, :3]

        expected = torch_frame(style, feats, CHANNEL_ROWS[0], frame=5, n_frames=11, width=32, height=18)
        assert psnr(pixels("td()"), expected) >= MIN_PSNR
        quiet, loud = pixels("toy(60)"), pixels("toy(240)")
        assert quiet.std() > 5 and psnr(quiet, loud) < 40, "the Shadertoy variant must follow iChannel0"


def play_live(out: Path, *, distinct: int, timeout_s: float = 60.0) -> list[tuple[float, list, list]]:
    """(audio time, feature row, channel row) samples of the player's live mode on its own track, until
    `distinct` different feature rows were seen (or the timeout)."""
    import time

    with Browser() as browser:
        browser.open(out.as_uri() + "?size=8x8&live=track", ready="window.afxPlayer && afxPlayer.live()")
        samples, deadline = [], time.monotonic() + timeout_s
        while len({tuple(s[1]) for s in samples}) < distinct and time.monotonic() < deadline:
            samples.append(browser.evaluate("[document.getElementById('audio').currentTime, afxPlayer.row(), "
                                            "afxPlayer.channels()]"))
            time.sleep(0.05)
        while samples[-1][0] < 2.0 and time.monotonic() < deadline:  # two seconds in, for the drift's rate
            samples.append(browser.evaluate("[document.getElementById('audio').currentTime, afxPlayer.row(), "
                                            "afxPlayer.channels()]"))
            time.sleep(0.05)
    return samples


@needs_chromium
def test_live_input_follows_the_playing_audio(tmp_path, make_wav):
    """The player's live mode (Web Audio analyser, the documented approximation) on its own track: bounded
    features that move with the music, the position input following the audio element, and the designed
    channels: pulse and level in [0, 1] and moving, drift growing with the sound."""
    track = make_wav("live.wav", 4.0)
    out = tmp_path / "live.html"
    assert main(["export", "random:4", "--player", str(track), str(out), "--fps", "10"]) == 0
    samples = play_live(out, distinct=8)
    columns = list(random_style(4).features.columns)
    rows, channels = np.array([s[1] for s in samples]), np.array([s[2] for s in samples])
    assert len({tuple(r) for r in rows}) >= 8, "the live features did not change while the track played"
    assert np.isfinite(rows).all() and np.abs(rows).max() <= 1.0
    assert rows[:, columns.index("fft.rms")].std() > 0.05, "loudness must move with the swelling test track"
    for energy in ("fft.bass", "fft.rms"):  # levels, as the renderer's: in [0, 1]
        assert rows[:, columns.index(energy)].min() >= 0.0 and rows[:, columns.index(energy)].max() > 0.3, energy
    times = rows[:, columns.index("fft.time")]
    assert times[-1] > times[0] and samples[-1][0] > samples[0][0], "time follows the playing audio"
    assert np.isfinite(channels).all() and (channels[:, [0, 2]] >= 0).all() and (channels[:, [0, 2]] <= 1).all()
    assert channels[:, 0].max() > 0.3, "the clicks at 2 Hz must pulse"
    assert channels[:, 2].max() > 0.3, "a loud track has a level"
    rate = (channels[-1, 1] - channels[0, 1]) / max(samples[-1][0] - samples[0][0], 1e-3)
    assert np.all(np.diff(channels[:, 1]) >= 0) and rate > 0.2, "drift moves on while there is sound"


@needs_chromium
def test_live_input_stays_still_in_near_silence(tmp_path, make_wav):
    """The absolute floor and the gate, live: the music 100 dB down gives no energy, onset, beat or pulse,
    and the motion point drifts at the idle speed only (the renderer's rule, docs/FEATURES.md)."""
    track = make_wav("quiet.wav", 4.0, gain=1e-5)
    out = tmp_path / "quiet.html"
    assert main(["export", "random:4", "--player", str(track), str(out), "--fps", "10"]) == 0
    samples = play_live(out, distinct=1)
    assert samples[-1][0] >= 1.0, "the track must have played for a while"
    columns = list(random_style(4).features.columns)
    rows, channels = np.array([s[1] for s in samples]), np.array([s[2] for s in samples])
    for name in ("fft.bass", "fft.mid", "fft.treble", "fft.rms", "fft.flux", "fft.beat", "fft.centroid"):
        assert np.abs(rows[:, columns.index(name)]).max() < 1e-6, name
    assert channels[:, 0].max() < 1e-6 and channels[:, 2].max() < 1e-6, "no pulse, no level"
    rate = (channels[-1, 1] - channels[0, 1]) / max(samples[-1][0] - samples[0][0], 1e-3)
    assert 0.0 < rate < 0.06, f"idle drift is 3 % of full speed, got {rate:.3f} s/s"
