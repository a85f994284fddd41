"""A style's CPPN as a GLSL fragment shader, generated from the input encoder's own description.

The inputs come from `InputEncoder.channels()` (the formulas the torch encoder computes), the layers from
the model's weights, the activations and colour mode from the tables below, so a channel, activation or
colour mode added to `daemon.cppn` either appears here unchanged or fails loudly (tests/test_export.py).

Weights are packed as vec4 columns of 4×4 blocks (`mat4(w[k], w[k+1], w[k+2], w[k+3]) * h`) and stored in
one of three ways (docs/PERFORMANCE.md has the measurements and the arithmetic behind the choice):

- `uniform`: uniform buffers of 4096 vec4s (64 KB) each, read in loops: compiles in about a second, and on
  a GPU every pixel reads the same constants through the constant cache (the player's first choice);
- `texture`: the same vec4s in one RGBA32F texture read with texelFetch (the player's fallback where the
  GL has too few or too small uniform blocks; on a GPU texture fetches, not arithmetic, then bound speed);
- `inline`: straight-line code with every weight a literal (self-contained: Shadertoy, TouchDesigner and
  `afx export --glsl`; on SwiftShader 9× faster per frame, but 26 s to compile at width 128).
A constant *array* would be self-contained too, but ANGLE refuses one over 64 KB, which a 128×4 network
exceeds.

Variants: `webgl` (GLSL ES 3.00: uniforms `u_resolution`, `u_position`, `u_features[F]`, `u_channels[3]`,
`u_weights`), `shadertoy` (features and channels approximated from iChannel0's FFT texture, see
`daemon.export.shadertoy`) and `touchdesigner` (a GLSL TOP pixel shader: one float uniform per feature and
per designed channel, bound on the Vectors page). The designed channels (pulse, drift, level: the rows of
`FeatureTimeline.channels`) arrive like the features; the encoder's formulas turn them into its pulse and
motion inputs, so a style saved without channels simply leaves them unread.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np
import torch

from daemon.audio.features import CHANNELS
from daemon.cppn import CPPN, InputChannel
from daemon.errors import RenderError
from daemon.style import Style

VARIANTS = ("webgl", "shadertoy", "touchdesigner")
WEIGHT_STORAGE = ("uniform", "texture", "inline")
UNIFORM_BLOCK_VEC4S = 4096  # vec4s per uniform block: 64 KB, what Chrome reports on desktop GPUs and SwiftShader
TEXTURE_WIDTH = 1024  # texels (vec4) per row of the weight texture; WebGL2 guarantees 2048

# each activation on a vec4, as torch computes it (tanh is clamped: tanh(±15) is ±1 in fp32 and some GLSL
# compilers build tanh from exp, which overflows; softplus is torch's, whose threshold 20 changes nothing in fp32)
GLSL_ACTIVATIONS = {
    "sin": "sin(v)",
    "cos": "cos(v)",
    "gaussian": "exp(-v * v)",
    "tanh": "tanh(clamp(v, -15.0, 15.0))",
    "sigmoid": "1.0 / (1.0 + exp(-v))",
    "relu": "max(v, 0.0)",
    "softplus": "max(v, 0.0) + log(1.0 + exp(-abs(v)))",
}
# how the last layer's three outputs become a colour (CPPN.colour_mode; `colour_helpers` defines afx_hsv and
# afx_gradient as daemon.cppn's hsv_colours and gradient_colours compute them)
GLSL_COLOUR_MODES = {
    "sigmoid-rgb": "1.0 / (1.0 + exp(-logits.rgb))",
    "sigmoid-hsv": "afx_hsv(1.0 / (1.0 + exp(-logits.rgb)))",
    "palette-gradient": "afx_gradient(1.0 / (1.0 + exp(-logits.x)))",
}


@dataclass(frozen=True)
class Layer:
    weight: np.ndarray  # [out, in] float32
    bias: np.ndarray  # [out] float32
    activation: str | None  # None for the colour layer


@dataclass(frozen=True)
class PackedWeights:
    """Every layer's weights as one [N, 4] float32 array of vec4s, with where each layer starts."""

    data: np.ndarray  # [N, 4] float32
    offsets: tuple[tuple[int, int], ...]  # per layer: (first block, first bias vec4)

    @property
    def texture_rows(self) -> int:
        return math.ceil(int(self.data.shape[0]) / TEXTURE_WIDTH)

    @property
    def uniform_blocks(self) -> int:
        return math.ceil(int(self.data.shape[0]) / UNIFORM_BLOCK_VEC4S)

    def texture(self) -> np.ndarray:
        """[rows, TEXTURE_WIDTH, 4] float32: the data padded to whole texture rows."""
        out = np.zeros((self.texture_rows * TEXTURE_WIDTH, 4), dtype=np.float32)
        out[:self.data.shape[0]] = self.data
        return out.reshape(self.texture_rows, TEXTURE_WIDTH, 4)


def network_layers(model: CPPN) -> list[Layer]:
    """The CPPN as a list of dense layers; the first one on the concatenated [spatial; temporal] input."""
    def arr(t: torch.Tensor) -> np.ndarray:
        return np.asarray(t.detach().cpu().float().numpy())

    config = model.config
    names = [config.activations[i % len(config.activations)] for i in range(config.depth)]
    unknown = [n for n in names if n not in GLSL_ACTIVATIONS]
    if unknown:
        raise RenderError(f"activation {unknown[0]!r} has no GLSL form yet", hint="add it to GLSL_ACTIVATIONS "
                          "in daemon/export/glsl.py")
    first = np.concatenate([arr(model.spatial_in.weight), arr(model.temporal_in.weight)], axis=1)
    layers = [Layer(first, arr(model.spatial_in.bias), names[0])]
    layers += [Layer(arr(h.weight), arr(h.bias), name) for h, name in zip(model.hidden_layers, names[1:])]
    layers.append(Layer(arr(model.rgb.weight), arr(model.rgb.bias), None))
    return layers


def blocks(n: int) -> int:
    """vec4s needed for n values."""
    return (n + 3) // 4


def pack_weights(layers: list[Layer]) -> PackedWeights:
    """Per layer: for each output block j and input block k, the 4 columns of the 4×4 block (mat4 is
    column-major: column c holds the weights from input 4k+c to outputs 4j..4j+3); then one bias vec4 per j."""
    chunks, offsets, at = [], [], 0
    for layer in layers:
        n_out, n_in = layer.weight.shape
        bo, bi = blocks(n_out), blocks(n_in)
        w = np.zeros((bo * 4, bi * 4), dtype=np.float32)
        w[:n_out, :n_in] = layer.weight
        b = np.zeros(bo * 4, dtype=np.float32)
        b[:n_out] = layer.bias
        # [bo, 4 rows, bi, 4 cols] → [bo, bi, col, row]: vec4 = one column of one block
        cols = w.reshape(bo, 4, bi, 4).transpose(0, 2, 3, 1).reshape(-1, 4)
        offsets.append((at, at + cols.shape[0]))
        chunks += [cols, b.reshape(bo, 4)]
        at += cols.shape[0] + bo
    return PackedWeights(np.concatenate(chunks).astype(np.float32), tuple(offsets))


def glsl_float(value: float) -> str:
    """A float literal GLSL ES accepts (always with a point or an exponent), exact for float32."""
    text = repr(float(np.float32(value)))
    return text if any(c in text for c in ".eEn") else text + ".0"


def shader_source(style: Style, *, variant: str = "webgl", weights: str = "texture",
                  track_seconds: float | None = None) -> str:
    """The fragment shader of `style` in one of VARIANTS, its weights stored as WEIGHT_STORAGE says."""
    if variant not in VARIANTS:
        raise RenderError(f"unknown shader variant {variant!r}", hint=f"one of {', '.join(VARIANTS)}")
    if weights not in WEIGHT_STORAGE:
        raise RenderError(f"unknown weight storage {weights!r}", hint=f"one of {', '.join(WEIGHT_STORAGE)}")
    if variant != "webgl" and weights != "inline":
        raise RenderError(f"the {variant} variant must be self-contained", hint="use weights='inline'")
    mode = style.model.colour_mode
    if mode not in GLSL_COLOUR_MODES:
        raise RenderError(f"colour mode {mode!r} has no GLSL form yet",
                          hint="add it to GLSL_COLOUR_MODES in daemon/export/glsl.py")
    layers = network_layers(style.model)
    packed = pack_weights(layers)
    channels = style.input_encoder.channels()
    n_features = len(style.features.columns)
    if n_features == 0:
        raise RenderError(f"style '{style.name}' reads no audio features; the shader needs at least one")
    parts = [header(style, variant, weights, packed), activation_functions(layers), colour_helpers(style.model),
             weight_access(packed, weights),
             colour_function(layers, packed, channels, n_features, mode, weights=weights)]
    if variant == "webgl":
        parts.append(webgl_main(n_features))
    elif variant == "touchdesigner":
        parts.append(touchdesigner_main(style.features.columns))
    else:
        from daemon.export.shadertoy import shadertoy_main

        parts.append(shadertoy_main(style.features.columns, track_seconds=track_seconds))
    return "\n".join(parts)


def header(style: Style, variant: str, weights: str, packed: PackedWeights) -> str:
    net = style.network
    lines = [f"// afx style '{style.name}' (id {style.style_id}): CPPN {net.width}x{net.depth}, activations "
             f"{', '.join(net.activations)}, {'trained' if style.trained else 'untrained (random)'}",
             f"// inputs: {', '.join(c.name for c in style.input_encoder.channels() if c.fed)}; features: "
             f"{', '.join(style.features.columns)}",
             "// generated by `afx export` from the style's own encoder description; do not edit by hand"]
    if variant == "webgl":
        lines = ["#version 300 es", *lines, "precision highp float;", "precision highp int;",
                 "precision highp sampler2D;", "uniform vec2 u_resolution;  // pixels",
                 "uniform float u_position;  // 0 → 1 through the track",
                 f"uniform float u_features[{len(style.features.columns)}];  // normalised, as the renderer's",
                 f"uniform float u_channels[{len(CHANNELS)}];  // {', '.join(CHANNELS)}: the timeline's designed rows",
                 "out vec4 fragColor;"]
        if weights == "texture":
            lines.append(f"uniform sampler2D u_weights;  // RGBA32F, {TEXTURE_WIDTH} x {packed.texture_rows}")
        if weights == "uniform":
            lines += [f"layout(std140) uniform AfxBlock{b} {{ vec4 afx_u{b}[{UNIFORM_BLOCK_VEC4S}]; }};"
                      for b in range(packed.uniform_blocks)]
    elif variant == "touchdesigner":
        lines.append("layout(location = 0) out vec4 fragColor;")
    return "\n".join(lines) + "\n"


def activation_functions(layers: list[Layer]) -> str:
    used = sorted({layer.activation for layer in layers if layer.activation})
    return "\n".join(f"vec4 act_{name}(vec4 v) {{ return {GLSL_ACTIVATIONS[name]}; }}" for name in used) + "\n"


def colour_helpers(model: CPPN) -> str:
    """The GLSL functions the colour mode's expression calls (none for sigmoid-rgb)."""
    if model.colour_mode == "sigmoid-hsv":
        return ("vec3 afx_hsv(vec3 c) {  // hue, saturation, value in [0, 1] → RGB\n"
                "    vec3 p = abs(fract(c.xxx + vec3(1.0, 2.0 / 3.0, 1.0 / 3.0)) * 6.0 - 3.0);\n"
                "    return c.z * (1.0 + c.y * (clamp(p - 1.0, 0.0, 1.0) - 1.0));\n}\n")
    if model.colour_mode == "palette-gradient":
        gradient = model.gradient
        if gradient is None:
            raise RenderError("the palette colour mode has no gradient")
        colours = [f"vec3({', '.join(glsl_float(v) for v in c)})" for c in gradient.colors]
        lines = ["vec3 afx_gradient(float s) {  // the palette's bands, joined by short linear ramps",
                 f"    vec3 c = {colours[0]};"]
        for j, edge in enumerate(gradient.edges, start=1):
            lines.append(f"    c += ({colours[j]} - {colours[j - 1]}) * clamp((s - {glsl_float(edge)}) / "
                         f"{glsl_float(gradient.blend)} + 0.5, 0.0, 1.0);")
        return "\n".join([*lines, "    return c;", "}"]) + "\n"
    return ""


def weight_access(packed: PackedWeights, weights: str) -> str:
    if weights == "uniform":  # k is the same for every pixel: a uniform branch, no divergence
        cases = " else ".join(f"if (b == {b}) return afx_u{b}[i];" for b in range(packed.uniform_blocks))
        return (f"vec4 afx_w(int k) {{\n    int b = k / {UNIFORM_BLOCK_VEC4S}, i = k % {UNIFORM_BLOCK_VEC4S};\n"
                f"    {cases}\n    return vec4(0.0);\n}}\n")
    if weights == "texture":
        return (f"vec4 afx_w(int k) {{ return texelFetch(u_weights, ivec2(k % {TEXTURE_WIDTH}, "
                f"k / {TEXTURE_WIDTH}), 0); }}\n")
    return ""


def colour_function(layers: list[Layer], packed: PackedWeights, channels: tuple[InputChannel, ...],
                    n_features: int, mode: str, *, weights: str) -> str:
    """`vec3 afx_colour(px, py, width, height, position, features, channels)`: the encoder, the layers, the
    colour."""
    widest = max(blocks(layer.weight.shape[0]) for layer in layers)
    fed = [c.name for c in channels if c.fed]
    n_in = blocks(len(fed))
    lines = [f"vec3 afx_colour(float px, float py, float width, float height, float position, "
             f"float features[{n_features}], float channels[{len(CHANNELS)}]) {{",
             "    // the input encoder: InputEncoder.channels(), in the first layer's order"]
    for ch in channels:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", ch.name):
            raise RenderError(f"input channel name {ch.name!r} is not an identifier")
        lines.append(f"    float {ch.name} = {ch.formula};  // per {ch.per}")
    names = fed + ["0.0"] * (n_in * 4 - len(fed))
    packs = [f"vec4({', '.join(names[i:i + 4])})" for i in range(0, len(names), 4)]
    if weights == "inline":
        lines += [f"    vec4 in_{k} = {pack};" for k, pack in enumerate(packs)]
        return "\n".join(lines + inline_layers(layers, packed, mode)) + "\n"
    lines += [f"    vec4 h[{max(widest, n_in)}];", f"    vec4 g[{widest}];",
              f"    vec4 inputs[{n_in}] = vec4[{n_in}]({', '.join(packs)});",
              f"    for (int k = 0; k < {n_in}; k++) h[k] = inputs[k];"]
    for i, (layer, (first, bias)) in enumerate(zip(layers, packed.offsets)):
        bo, bi = blocks(layer.weight.shape[0]), blocks(layer.weight.shape[1])
        act = f"act_{layer.activation}(acc)" if layer.activation else "acc"
        lines += [f"    // layer {i}: {layer.weight.shape[1]} → {layer.weight.shape[0]}"
                  + (f", {layer.activation}" if layer.activation else ", colour"),
                  f"    for (int j = 0; j < {bo}; j++) {{",
                  f"        vec4 acc = afx_w({bias} + j);",
                  f"        for (int k = 0; k < {bi}; k++) {{",
                  f"            int o = {first} + (j * {bi} + k) * 4;",
                  "            acc += mat4(afx_w(o), afx_w(o + 1), afx_w(o + 2), afx_w(o + 3)) * h[k];",
                  "        }",
                  f"        g[j] = {act};",
                  "    }",
                  f"    for (int j = 0; j < {bo}; j++) h[j] = g[j];"]
    lines += ["    vec4 logits = h[0];", f"    return {GLSL_COLOUR_MODES[mode]};", "}"]
    return "\n".join(lines) + "\n"


def inline_layers(layers: list[Layer], packed: PackedWeights, mode: str) -> list[str]:
    """The layers as straight-line code with every weight a literal (no arrays: ANGLE caps a constant array
    at 64 KB, and literals are what GPU compilers fold best)."""
    lines, previous = [], "in"
    for i, (layer, (first, bias)) in enumerate(zip(layers, packed.offsets)):
        bo, bi = blocks(layer.weight.shape[0]), blocks(layer.weight.shape[1])
        lines.append(f"    // layer {i}: {layer.weight.shape[1]} → {layer.weight.shape[0]}"
                     + (f", {layer.activation}" if layer.activation else ", colour"))
        for j in range(bo):
            terms = [vec4_literal(packed.data[bias + j])]
            for k in range(bi):
                o = first + (j * bi + k) * 4
                cols = ", ".join(", ".join(glsl_float(v) for v in packed.data[o + c]) for c in range(4))
                terms.append(f"mat4({cols}) * {previous}_{k}")
            total = "\n        + ".join(terms)
            value = f"act_{layer.activation}({total})" if layer.activation else total
            lines.append(f"    vec4 l{i}_{j} = {value};")
        previous = f"l{i}"
    return lines + [f"    vec4 logits = {previous}_0;", f"    return {GLSL_COLOUR_MODES[mode]};", "}"]


def vec4_literal(row: np.ndarray) -> str:
    return "vec4(" + ", ".join(glsl_float(v) for v in row) + ")"


def webgl_main(n_features: int) -> str:
    return f"""void main() {{
    float features[{n_features}] = u_features;
    float channels[{len(CHANNELS)}] = u_channels;
    vec2 res = u_resolution;
    // gl_FragCoord is at pixel centres from the bottom-left; the encoder counts rows from the top
    fragColor = vec4(afx_colour(gl_FragCoord.x - 0.5, res.y - gl_FragCoord.y - 0.5, res.x, res.y, u_position,
                                features, channels), 1.0);
}}
"""


def uniform_name(column: str) -> str:
    """A feature column or designed channel as a TouchDesigner uniform name: 'fft.bass' → 'uFft_bass',
    'pulse' → 'uPulse'."""
    ident = re.sub(r"[^A-Za-z0-9]+", "_", column).strip("_")
    return "u" + ident[:1].upper() + ident[1:]


TD_CHANNEL_NOTES = {  # what to bind to each designed channel (daemon.audio.features.designed_channels)
    "pulse": "pulse: percussive-onset envelope, 0..1, jumps on a hit and falls in ~0.12 s",
    "drift": "drift: seconds of motion so far, growing at 0.03..1 per second with the level (never reset)",
    "level": "level: smoothed loudness, 0..1",
}


def touchdesigner_main(columns: tuple[str, ...]) -> str:
    uniforms = "\n".join(f"uniform float {uniform_name(c)};  // {c}, normalised as afx's renderer" for c in columns)
    designed = "\n".join(f"uniform float {uniform_name(c)};  // {TD_CHANNEL_NOTES[c]}" for c in CHANNELS)
    values = ", ".join(uniform_name(c) for c in columns)
    return f"""// TouchDesigner GLSL TOP (pixel shader). On the Vectors page bind uPosition (0 → 1 through the
// track), one uniform per feature and the three designed channels below; afx's features are in (-1, 1)
// (time and beat in [0, 1]). A style saved without channels ignores the designed ones.
uniform float uPosition;
{uniforms}
{designed}
void main() {{
    float features[{len(columns)}] = float[{len(columns)}]({values});
    float channels[{len(CHANNELS)}] = float[{len(CHANNELS)}]({", ".join(uniform_name(c) for c in CHANNELS)});
    vec2 res = uTDOutputInfo.res.zw;
    vec3 rgb = afx_colour(gl_FragCoord.x - 0.5, res.y - gl_FragCoord.y - 0.5, res.x, res.y, uPosition, features,
                          channels);
    fragColor = TDOutputSwizzle(vec4(rgb, 1.0));
}}
"""
