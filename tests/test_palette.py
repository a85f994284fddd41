"""Palettes, colour words, OKLab, the palette term, symmetry inputs, colour modes and training without CLIP."""

from __future__ import annotations

import html
import json
import socket
from pathlib import Path

import numpy as np
import pytest
import torch

from daemon.cppn import CPPNConfig, EncoderConfig, InputEncoder
from daemon.errors import SpecError
from daemon.palette import (
    MATCH_DELTA_E,
    Palette,
    explicit_palette,
    lch,
    palette_from_words,
    palette_match,
    parse_colour,
    srgb_to_oklab,
    srgb_to_oklab_np,
)
from daemon.spec import parse_spec
from daemon.style import FeatureDescription, Style, build_model, random_style

PALETTE = ["#0b1d51", "#2ec4b6", "#f4d35e"]  # navy, teal, sand yellow: far from an untrained CPPN's primaries


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors: one thread is many times faster than two on a loaded two-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ── colour spaces and words ──────────────────────────────────────────────────────────────────────────────

def test_oklab_matches_the_reference_values():
    """Björn Ottosson's published OKLab values for sRGB red, white and blue (bottosson.github.io/posts/oklab)."""
    rgb = np.array([[1.0, 0.0, 0.0], [1.0, 1.0, 1.0], [0.0, 0.0, 1.0]])
    expected = np.array([[0.627955, 0.224863, 0.125846], [1.0, 0.0, 0.0], [0.452014, -0.032457, -0.311528]])
    np.testing.assert_allclose(srgb_to_oklab_np(rgb), expected, atol=2e-5)
    torch_lab = srgb_to_oklab(torch.tensor(rgb), floor=0.0).numpy()
    np.testing.assert_allclose(torch_lab, expected, atol=2e-5)


def hues(palette: Palette) -> list[tuple[float, float, float]]:
    return [lch(lab) for lab in palette.oklab()]


def in_hue_range(hue: float, lo: float, hi: float) -> bool:
    return lo <= hue <= hi if lo <= hi else hue >= lo or hue <= hi


@pytest.mark.parametrize("phrase, check", [
    # OKLCh hues: red ≈ 29°, orange ≈ 55°, yellow ≈ 110°, green ≈ 142°, blue ≈ 264°, purple ≈ 310°
    ("cool blues and purples", lambda c: all(in_hue_range(h, 225, 330) and ch > 0.05 for _, ch, h in c)),
    ("fiery reds and oranges", lambda c: all(in_hue_range(h, 15, 70) and ch > 0.08 for _, ch, h in c)),
    ("muted earth tones", lambda c: all(ch < 0.08 and (in_hue_range(h, 20, 130)) for _, ch, h in c)),
    ("monochrome black and white", lambda c: all(ch < 0.01 for _, ch, _ in c)
     and min(lt for lt, _, _ in c) < 0.1 and max(lt for lt, _, _ in c) > 0.9),
    ("pastel", lambda c: all(lt > 0.75 and ch < 0.16 for lt, ch, _ in c) and spread(c) >= 4),
    ("neon", lambda c: sum(ch > 0.14 for _, ch, _ in c) >= 4 and spread(c) >= 3),
])
def test_colour_words_give_the_expected_hues(phrase, check):
    palette = palette_from_words(phrase, source="test")
    assert palette is not None and len(palette.colors) >= 2, phrase
    assert check(hues(palette)), (phrase, palette.colors, hues(palette))


def spread(colours: list[tuple[float, float, float]]) -> int:
    """Distinct hue sectors (of 60°) among the chromatic colours."""
    return len({int(h // 60) for _, ch, h in colours if ch > 0.04})


def test_words_outside_colours_give_no_palette_and_names_parse():
    assert palette_from_words("organic flowing shapes with strong contrast", source="test") is None
    assert parse_colour("teal") == "#029386" and parse_colour("#ABC") == "#aabbcc"
    assert parse_colour("xkcd:ocean blue") == "#03719c" and parse_colour("rebeccapurple") == "#663399"
    with pytest.raises(ValueError, match="did you mean"):
        parse_colour("tael")
    # a modifier applies to what follows it in its clause; a clause without colours is the modifier's set
    ocean = palette_from_words("deep ocean blue and teal gradients with soft gold highlights", source="test")
    assert ocean is not None and len(ocean.colors) == 3
    assert max(lch(lab)[0] for lab in ocean.oklab()[:2]) < 0.5  # "deep": darker than XKCD's ocean blue and teal


def test_palette_match_counts_pixels_near_the_palette():
    palette = explicit_palette(PALETTE)
    frames = torch.zeros(2, 10, 10, 3, dtype=torch.uint8)
    frames[:, :, :5] = torch.tensor([11, 29, 81], dtype=torch.uint8)  # exactly navy
    frames[:, :, 5:] = torch.tensor([255, 0, 0], dtype=torch.uint8)  # red: far from every palette colour
    assert palette_match(frames, palette) == pytest.approx(0.5)
    frames[:, :, 5:] = torch.tensor([46, 190, 182], dtype=torch.uint8)  # teal, a few levels off: within ΔE
    assert palette_match(frames, palette) == pytest.approx(1.0)
    assert palette_match(frames, palette, delta_e=0.5) == pytest.approx(0.5)
    assert MATCH_DELTA_E > 0.5


# ── specs ────────────────────────────────────────────────────────────────────────────────────────────────

def test_palette_keys_parse_and_bad_ones_say_what_to_do():
    spec = parse_spec({"prompts": ["x"], "palette": {"colors": ["navy", "#2ec4b6"], "weights": [3, 1],
                                                       "weight": 2.0},
                       "network": {"color_mode": "palette"}, "encoder": {"fold": 6, "mirror": "x"}},
                      path=None, name="p")
    palette = spec.resolved_palette()
    assert palette is not None and palette.colors == ("#01153e", "#2ec4b6") and palette.weights == (0.75, 0.25)
    assert spec.palette_trains and spec.encoder.fold == 6 and spec.network.color_mode == "palette"
    clip = parse_spec({"prompts": ["organic shapes, vibrant neon colors"]}, path=None, name="c")
    assert clip.resolved_palette() is not None and not clip.palette_trains  # measured, not pushed
    none = parse_spec({"prompts": ["organic shapes, vibrant neon colors"], "training": {"clip_model": "none"}},
                      path=None, name="n")
    assert none.palette_trains
    bad = [({"palette": {"colors": ["tael"]}}, "palette.colors[0]"),
           ({"palette": {"colors": ["red"], "weights": [1, 2]}}, "palette.weights"),
           ({"palette": {"words": "organic shapes"}}, "palette.words"),
           ({"network": {"color_mode": "palette"}}, "network.color_mode"),
           ({"network": {"color_mode": "cmyk"}}, "network.color_mode"),
           ({"encoder": {"mirror": "z"}}, "encoder.mirror")]
    for extra, key in bad:
        with pytest.raises(SpecError) as e:
            parse_spec({"prompts": ["organic shapes"], **extra}, path=None, name="b")
        assert e.value.key == key, extra


# ── symmetry and colour modes ────────────────────────────────────────────────────────────────────────────

def render(style: Style, size: int = 64) -> np.ndarray:
    """One frame (fp32, CPU) of `style` at size × size, as float RGB [size, size, 3]."""
    enc = style.input_encoder
    with torch.no_grad():
        temporal = enc.temporal(torch.tensor([0.3]), torch.linspace(-0.5, 0.5, len(style.features.columns))[None],
                                torch.tensor([[0.5, 3.0, 0.6]]))
        return style.model(enc.spatial(size, size), temporal)[0].view(size, size, 3).numpy()


@pytest.mark.parametrize("fold", [3, 6, 8])
def test_fold_symmetry_turning_by_one_wedge_gives_the_same_picture(fold):
    from scipy.ndimage import rotate

    style = random_style(3, network=CPPNConfig(width=32, depth=3), encoder=EncoderConfig(fold=fold))
    frame = render(style, 96)
    turned = rotate(frame, 360.0 / fold, axes=(0, 1), reshape=False, order=1)
    centre = np.s_[20:76, 20:76]  # inside the inscribed circle: no corners rotated in from outside
    plain = render(random_style(3, network=CPPNConfig(width=32, depth=3)), 96)
    plain_turned = rotate(plain, 360.0 / fold, axes=(0, 1), reshape=False, order=1)
    folded_error = np.abs(frame[centre] - turned[centre]).mean()
    assert folded_error < 0.25 * np.abs(plain[centre] - plain_turned[centre]).mean()
    assert frame.std() > 0.05, "a picture, not a flat field"
    # exactly: the encoder's input at a pixel and at the pixel turned by one wedge about the centre
    enc = style.input_encoder
    xy = enc.spatial(96, 96, dtype=torch.float64).view(96, 96, 3)
    ys, xs = np.mgrid[0:96, 0:96] - 47.5
    angle = 2 * np.pi / fold
    xr, yr = xs * np.cos(angle) - ys * np.sin(angle), xs * np.sin(angle) + ys * np.cos(angle)
    inside = (np.abs(xr) < 47) & (np.abs(yr) < 47) & (np.abs(xr - np.round(xr)) < 1e-6) \
        & (np.abs(yr - np.round(yr)) < 1e-6)  # pixels a quarter turn of a 4-fold maps onto pixels exactly
    if fold in (4, 8):
        i, j = np.nonzero(inside)
        ti, tj = (np.round(yr[inside]) + 47.5).astype(int), (np.round(xr[inside]) + 47.5).astype(int)
        np.testing.assert_allclose(xy[i, j].numpy(), xy[ti, tj].numpy(), atol=1e-9)


@pytest.mark.parametrize("mirror, flip", [("x", 1), ("y", 0)])
def test_mirror_symmetry(mirror, flip):
    style = random_style(4, network=CPPNConfig(width=32, depth=3), encoder=EncoderConfig(mirror=mirror))
    frame = render(style, 64)
    np.testing.assert_allclose(frame, np.flip(frame, axis=flip), atol=1e-6)
    plain = render(random_style(4, network=CPPNConfig(width=32, depth=3)), 64)
    assert np.abs(plain - np.flip(plain, axis=flip)).mean() > 0.02  # the plain style is not symmetric


def test_palette_colour_mode_holds_only_palette_colours_and_hsv_differs():
    palette = explicit_palette(PALETTE)
    style = random_style(5, network=CPPNConfig(width=32, depth=3, color_mode="palette"), palette=palette)
    frame = torch.from_numpy(render(style, 64))
    assert palette_match(frame[None], palette) > 0.85  # only the short ramps between colours are off it
    lab = srgb_to_oklab(frame.reshape(-1, 3).double(), floor=0.0)
    nearest = torch.cdist(lab, torch.tensor(palette.oklab())).argmin(dim=1)
    assert len(set(nearest.tolist())) >= 2, "more than one palette colour in the picture"
    hsv = render(random_style(5, network=CPPNConfig(width=32, depth=3, color_mode="hsv")), 64)
    rgb = render(random_style(5, network=CPPNConfig(width=32, depth=3)), 64)
    assert hsv.min() >= 0 and hsv.max() <= 1 and np.abs(hsv - rgb).mean() > 0.05


def test_renderer_and_model_agree_in_every_colour_mode_and_symmetry():
    """The fast renderer (its own colour step) gives the model's frames: one function, used by both."""
    from daemon.audio.features import FeatureTimeline
    from daemon.render import RenderSettings, render_frames

    palette = explicit_palette(PALETTE, [1, 2, 1])
    for mode, encoder in (("palette", EncoderConfig(fold=5)), ("hsv", EncoderConfig(mirror="xy"))):
        style = random_style(6, network=CPPNConfig(width=16, depth=3, color_mode=mode), encoder=encoder,
                             palette=palette)
        n = len(style.features.columns)
        timeline = FeatureTimeline(sets=style.features.sets, names=style.features.columns,
                                   values=np.zeros((2, n), np.float32), fps=10.0, onset=np.zeros(2, np.float32),
                                   normalisation={}, channels=np.zeros((2, 3), np.float32))
        settings = RenderSettings(width=48, height=32, precision="fp32", device="cpu")
        got = next(render_frames(style, timeline, settings, device=torch.device("cpu")))[0].float().numpy()
        enc = style.input_encoder
        with torch.no_grad():
            temporal = enc.temporal(enc.positions(2)[:1], torch.zeros(1, n), torch.zeros(1, 3))
            expected = style.model(enc.spatial(48, 32), temporal)[0].view(32, 48, 3).numpy() * 255
        assert np.abs(got - expected).max() <= 1.0, mode


# ── training without CLIP ────────────────────────────────────────────────────────────────────────────────

def test_the_palette_term_pulls_a_tiny_style_onto_the_palette():
    """From under 30 % to at least 70 % of pixels within ΔE of the palette in 60 CPU steps, using more than one
    of its colours. The collapse guard is off: it asks for the untrained network's detail, which a tiny RGB
    network pays for in shading off the palette (the palette colour mode is the crisp way to the palette)."""
    from daemon.pipeline import clip_metrics
    from daemon.train import optimise, prior_walk

    spec = parse_spec({"prompts": ["abstract"], "network": {"width": 16, "depth": 3},
                       "palette": {"colors": PALETTE},
                       "training": {"clip_model": "none", "resolution": 32, "time_points": 8, "iterations": 60,
                                    "learning_rate": 0.05, "lr_warmup": 5, "collapse_weight": 0.0},
                       "render": {"width": 64, "height": 36, "fps": 10}}, path=None, name="pull")
    palette = spec.resolved_palette()
    timeline = prior_walk(spec.audio.features, n_frames=30, fps=10, seed=0)
    encoder = InputEncoder(spec.encoder, len(FeatureDescription.for_sets(spec.audio.features).columns))

    def match(model: torch.nn.Module) -> float:
        style = Style(name="pull", style_id="x", network=spec.network, encoder=spec.encoder,
                      features=FeatureDescription.for_sets(spec.audio.features), model=model, palette=palette)
        return clip_metrics(style, timeline, frames=30, size=(64, 36))["palette_match"]

    before = match(build_model(spec.network, encoder, seed=spec.training.seed).eval())
    result = optimise(spec, None, [], device=torch.device("cpu"), checkpoint_dir=None)
    after = match(result.model)
    assert before < 0.3 and after >= 0.7, (before, after)
    assert result.history[-1].terms["palette"] < 0.6 * result.history[0].terms["palette"]


def test_a_style_without_clip_trains_with_no_network_and_no_clip(tmp_path, monkeypatch):
    """clip_model = "none": no socket is opened and open_clip never creates a model; the style, its report
    fields and its artifacts carry the palette."""
    import open_clip

    import daemon.guidance
    from daemon.library import Library
    from daemon.pipeline import train_style

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("network or CLIP used by a style without CLIP")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(open_clip, "create_model", refuse)
    monkeypatch.setattr(daemon.guidance, "load_guide", refuse)
    spec = parse_spec({"prompts": ["fiery reds and oranges"], "network": {"width": 16, "depth": 2,
                                                                           "color_mode": "palette"},
                       "encoder": {"fold": 4},
                       "training": {"clip_model": "none", "resolution": 32, "time_points": 2, "iterations": 4,
                                    "contrast_weight": 1.0},
                       "render": {"width": 64, "height": 36, "fps": 10}}, path=None, name="offline")
    style = train_style(spec, library=Library(tmp_path / "library"), device="cpu", allow_download=False)
    assert style.guidance["clip_model"] == "none" and style.palette is not None
    assert style.palette.source == "prompts" and style.training["metrics"]["palette_match"] > 0.8
    assert style.training["metrics"]["palette"] == list(style.palette.colors)
    saved = json.loads((Path(style.folder) / "training.json").read_text())
    assert saved["palette"]["colors"] == list(style.palette.colors)
    assert set(saved["history"][-1]["terms"]) == {"palette", "contrast"}
    again = Style.load(Path(style.folder))
    assert again.palette == style.palette and again.model.colour_mode == "palette-gradient"
    assert np.array_equal(render(again, 32), render(style, 32))


def test_random_styles_take_settings_in_their_reference():
    from daemon.errors import StyleError
    from daemon.library import random_from_ref

    plain = random_from_ref("random:7")
    assert plain.name == "random-7" and plain.palette is None and plain.style_id == random_style(7).style_id
    style = random_from_ref("random:7?zoom=3&detail=5&fold=6&mirror=x&palette=neon&mode=palette")
    assert style.name == "random-7_zoom-3_detail-5_fold-6_mirror-x_palette-neon_mode-palette"
    assert (style.encoder.coord_scale, style.network.spatial_gain, style.encoder.fold, style.encoder.mirror,
            style.network.color_mode) == (3.0, 5.0, 6, "x", "palette")
    assert style.palette is not None and "#000000" in style.palette.colors and style.style_id != plain.style_id
    assert random_from_ref("random:2?palette=navy,teal,f4d35e").palette.colors == ("#01153e", "#029386", "#f4d35e")
    for ref, message in (("random:7?zom=3", "did you mean 'zoom'"), ("random:7?fold=-1", "below the minimum"),
                         ("random:7?mode=palette", "needs a palette"), ("random:7?palette=blah", "names no colour"),
                         ("random:7?mirror=z", "mirror")):
        with pytest.raises(StyleError) as e:
            random_from_ref(ref)
        assert message in e.value.user_line(), ref


def test_a_style_that_trains_to_a_flat_field_says_so(tmp_path, capsys):
    """A style whose clip is one flat colour (here: an output layer initialised to zero and a learning rate
    too small to move it) is saved with a warning that names the problem and the fix, logged, and shown on
    its mood-board card; a healthy style gets none."""
    from daemon.library import Library
    from daemon.pipeline import collapse_warning, train_style

    spec = parse_spec({"prompts": ["fiery reds and oranges"],
                       "network": {"width": 16, "depth": 2, "color_mode": "palette", "output_gain": 0.0},
                       "training": {"clip_model": "none", "resolution": 32, "time_points": 2, "iterations": 2,
                                    "learning_rate": 1e-6},
                       "render": {"width": 64, "height": 36, "fps": 10}}, path=None, name="flat")
    style = train_style(spec, library=Library(tmp_path / "library"), device="cpu", allow_download=False)
    assert style.training["metrics"]["detail"] < 0.5
    (warning,) = style.training["warnings"]
    assert "'flat' trained to a flat field of one colour" in warning and "training.seed" in warning
    logged = capsys.readouterr()  # the log goes to stdout or stderr, as the process's logging was set up
    assert "train.collapsed" in logged.out + logged.err
    assert json.loads((Path(style.folder) / "style.json").read_text())["training"]["warnings"] == [warning]
    assert html.escape(warning) in (tmp_path / "library" / "index.html").read_text()
    assert collapse_warning("x", {"detail": 12.0, "motion_energy": 0.2}).startswith("style 'x' trained to a still")
    assert collapse_warning("x", {"detail": 12.0, "motion_energy": 80.0}) is None
