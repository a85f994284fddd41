"""The shared input encoder, the split first layer, and the style folder round trip."""

from __future__ import annotations

import math

import os
import stat

import numpy as np
import torch

from daemon.cppn import CPPNConfig, EncoderConfig, InputEncoder
from daemon.library import Library, resolve_style
from daemon.style import Style, random_style


def test_coordinates_keep_the_aspect_ratio():
    enc = InputEncoder(EncoderConfig(coord_scale=1.5), n_features=9)
    xyr = enc.spatial(64, 36).view(36, 64, 3)
    dx = (xyr[0, 1, 0] - xyr[0, 0, 0]).item()
    dy = (xyr[1, 0, 1] - xyr[0, 0, 1]).item()
    assert abs(dx - dy) < 1e-6, "pixels must be square in input space"
    assert abs(xyr[:, :, 1].abs().max().item() - 1.5 * 35 / 36) < 1e-5  # shorter side spans ±scale (pixel centres)
    assert abs(xyr[:, :, 0].abs().max().item() / xyr[:, :, 1].abs().max().item() - (63 / 35)) < 1e-4
    torch.testing.assert_close(xyr[..., 2], torch.sqrt(xyr[..., 0] ** 2 + xyr[..., 1] ** 2))


def test_training_and_render_sizes_sample_the_same_field():
    """A 32x18 training frame is a subsampling of the 64x36 render of the same style."""
    style = random_style(4)
    enc = style.input_encoder
    temporal = enc.temporal(torch.tensor([0.5]), torch.zeros(1, 9))
    small_coords = enc.spatial(32, 18).view(18, 32, 3)
    big_coords = enc.spatial(64, 36).view(36, 64, 3)
    # pixel centres of the small grid lie midway between pairs of big-grid centres
    mid = (big_coords[0::2, 0::2] + big_coords[1::2, 1::2]) / 2
    torch.testing.assert_close(small_coords[..., :2], mid[..., :2])
    # and the network sees the same field there: equal colours at equal points
    mid_xyr = torch.cat([mid[..., :2], mid[..., :2].norm(dim=-1, keepdim=True)], dim=-1).reshape(-1, 3)
    with torch.no_grad():
        torch.testing.assert_close(style.model(small_coords.reshape(-1, 3), temporal),
                                   style.model(mid_xyr, temporal), atol=1e-5, rtol=1e-5)


def test_split_first_layer_equals_the_concatenated_input():
    style = random_style(1)
    enc = style.input_encoder
    spatial = enc.spatial(16, 10)
    temporal = enc.temporal(enc.positions(3), torch.rand(3, 9) * 2 - 1)
    with torch.no_grad():
        split = style.model(spatial, temporal)
        concat = style.model.forward_concat(enc.concat(spatial, temporal))
    torch.testing.assert_close(split, concat, atol=1e-5, rtol=1e-5)
    assert split.shape == (3, 160, 3) and split.min() >= 0 and split.max() <= 1


def test_temporal_input_scales_time_and_features():
    enc = InputEncoder(EncoderConfig(time_scale=2.0, feature_scale=0.5, channels=False), n_features=2)
    out = enc.temporal(torch.tensor([0.0, 1.0]), torch.tensor([[1.0, -1.0], [0.5, 0.0]]))
    torch.testing.assert_close(out, torch.tensor([[-2.0, 0.5, -0.5], [2.0, 0.25, 0.0]]))


def test_pulse_and_motion_channels_follow_the_spec_strengths():
    """pulse × strength, then motion × (sin, cos) of speed × drift; no channels given reads as zeros."""
    enc = InputEncoder(EncoderConfig(pulse=3.0, motion=2.0, motion_speed=0.5), n_features=1)
    assert enc.n_temporal == 1 + 1 + 3
    channels = torch.tensor([[1.0, 0.0, 0.9], [0.5, math.pi, 0.1]])  # pulse, drift (s), level
    out = enc.temporal(torch.tensor([0.0, 1.0]), torch.zeros(2, 1), channels)
    torch.testing.assert_close(out[:, 2:], torch.tensor([[3.0, 0.0, 2.0], [1.5, 2.0, 0.0]]), atol=1e-6, rtol=0)
    quiet = enc.temporal(torch.tensor([0.0]), torch.zeros(1, 1))
    torch.testing.assert_close(quiet[0, 2:], torch.tensor([0.0, 0.0, 2.0]))


def test_random_styles_are_seeded():
    a, b, c = random_style(7), random_style(7), random_style(8)
    assert a.style_id == b.style_id != c.style_id
    for pa, pb in zip(a.model.parameters(), b.model.parameters()):
        assert torch.equal(pa, pb)
    assert not torch.equal(a.model.rgb.weight, c.model.rgb.weight)


def test_style_folder_round_trip(tmp_path):
    net = CPPNConfig(width=16, depth=3, activations=("sin", "tanh"))
    style = random_style(3, network=net, encoder=EncoderConfig(coord_scale=2.0), sets=("fft", "mfcc_chroma"))
    style.name = "round trip"
    folder = style.save(tmp_path / "lib" / "round-trip" / style.style_id)
    assert sorted(p.name for p in folder.iterdir()) == ["style.json", "weights.safetensors"]
    umask = os.umask(0)  # read it back: the folder is as readable as mkdir would make it (mkdtemp: 0700)
    os.umask(umask)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o777 & ~umask
    assert {stat.S_IMODE(p.stat().st_mode) for p in folder.iterdir()} == {0o666 & ~umask}
    loaded = Style.load(folder)
    assert (loaded.network, loaded.encoder, loaded.features) == (style.network, style.encoder, style.features)
    assert loaded.features.columns[0] == "fft.bass" and len(loaded.features.columns) == 34
    enc = loaded.input_encoder
    spatial, temporal = enc.spatial(8, 6), enc.temporal(enc.positions(2), torch.rand(2, 34))
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(spatial, temporal), style.model(spatial, temporal))
    # resolvable by folder, by the name's folder (newest version) and by name through the library
    assert resolve_style(str(folder), library=Library(tmp_path / "lib")).style_id == style.style_id
    assert resolve_style(str(folder.parent), library=Library(tmp_path / "lib")).style_id == style.style_id
    assert resolve_style("round trip", library=Library(tmp_path / "lib")).style_id == style.style_id


def test_damaged_style_folder_is_a_clear_error(tmp_path):
    import pytest

    from daemon.errors import StyleError

    style = random_style(2)
    folder = style.save(tmp_path / "s")
    (folder / "weights.safetensors").write_bytes(np.zeros(10, dtype=np.uint8).tobytes())
    with pytest.raises(StyleError) as err:
        Style.load(folder)
    assert "weights" in err.value.user_line() and str(folder) in err.value.user_line()
