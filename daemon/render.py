"""Rendering: every frame of a track through a style's CPPN, on the device, in bounded memory.

Frames are produced in batches as uint8 [B, H, W, 3] tensors on the device (colour quantisation happens
there); only the finished bytes of a batch cross to the host, for the encoder. Nothing here knows about
files, reports or the service.

The fast paths (each kept because `afx bench` measured it; the figures are in docs/PERFORMANCE.md):

- The first layer is linear, so its spatial half is separable from the per-frame audio/time half (see
  `daemon.cppn`). On CUDA the spatial half is computed once per resolution; on CPU it is recomputed per
  pixel tile (a K=3 matmul that costs less than reading a stored [P, width] array back from memory).
- CPU: L2-sized pixel tiles shared out among one Python worker per core, with torch's intra-op threads
  at 1 for the whole render (no OpenMP barrier after every op: robust when ffmpeg or a neighbour takes a
  core); hidden layers through oneDNN with packed weights and tanh fused (MKL's fp32 matmul is half as
  fast here); activations in place, through numpy's SIMD sin/cos in fp32.
- CUDA: whole frames in batches sized to free memory, every buffer allocated once per render, matmuls
  into them (`addmm(out=)`) and activations in place.
- Precision: fp16 on CUDA, bf16 on CPUs with native bf16 dot products (avx512_bf16 / AMX), else fp32;
  on CPU the 3-wide last layer stays fp32, as bf16 logits show directly in the colours.
  tests/test_render_quality.py holds every path to PSNR >= 40 dB against the fp32 reference.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Generator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch

from daemon.audio.features import FeatureTimeline
from daemon.cppn import CPPN
from daemon.errors import RenderError
from daemon.spec import check_video_size
from daemon.style import Style

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
CPU_TILE_BYTES = 2 << 20  # one [tile, width] activation buffer on CPU: the L2's size (best of 1–16k-pixel tiles)
CUDA_MEMORY_SHARE = 0.25  # share of free GPU memory a render's buffers may take
CUDA_MAX_BATCH = 32  # frames per CUDA batch at most (beyond this, launch overhead is already amortised)


@dataclass(frozen=True)
class RenderSettings:
    """Size, rate, device and arithmetic of a render."""

    width: int = 1280  # pixels; even (yuv420p)
    height: int = 720  # pixels; even (yuv420p)
    fps: int = 30  # frames per second
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    batch_frames: int = 0  # frames per batch; 0 picks by device (CPU 1, CUDA by memory)
    tile_pixels: int = 0  # pixels evaluated at once; 0 picks by device (CPU: L2-sized tiles, CUDA whole frames)
    precision: str = "auto"  # auto | fp32 | bf16 | fp16; auto: fp16 on CUDA, bf16 on CPUs with native bf16, else fp32

    def validate(self) -> None:
        check_video_size(self.width, self.height, self.fps, error=RenderError)
        if self.precision not in PRECISIONS:
            raise RenderError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}",
                              key="render.precision")



def resolve_device(name: str) -> torch.device:
    """`auto` → CUDA when present, else CPU; an explicit CUDA device that is absent is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RenderError(f"device '{name}' was asked for but CUDA is not available", key="device",
                          hint="use device = \"auto\" or \"cpu\"")
    return device


def device_name(device: torch.device) -> str:
    """How reports name a device: `cpu`, or `cuda (NVIDIA H200)`."""
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return "cpu"


def cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bf16 natively (avx512_bf16 or AMX); elsewhere bf16 is emulated and slower."""
    cpu = getattr(torch, "cpu", None)
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(cpu, name, lambda: False)()) for name in checks)


def resolve_precision(precision: str, device: torch.device) -> torch.dtype:
    """The compute dtype: explicit choices are honoured; `auto` picks the fastest one that passes the guard."""
    if precision != "auto":
        if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise RenderError("this GPU has no bf16 support", key="render.precision", hint="use fp16 or auto")
        return DTYPES[precision]
    if device.type == "cuda":
        return torch.float16  # 10 mantissa bits (bf16 has 7) at the same tensor-core speed
    return torch.bfloat16 if cpu_has_native_bf16() else torch.float32


def plan_batches(settings: RenderSettings, device: torch.device, width: int, *,
                 dtype: torch.dtype = torch.float32) -> tuple[int, int]:
    """(frames per batch, pixels per tile) for this device unless the settings fix them."""
    pixels = settings.width * settings.height
    element = torch.empty((), dtype=dtype).element_size()
    if device.type == "cuda":
        # per frame: two [P, width] activation buffers in the compute dtype, and ~24 bytes a pixel of logits
        # and colours; shared by the batch: the fp32 spatial half [P, width]
        free, _ = torch.cuda.mem_get_info(device)
        per_frame = pixels * width * element * 2 + pixels * 24
        budget = free * CUDA_MEMORY_SHARE - pixels * width * 4
        batch = max(1, min(CUDA_MAX_BATCH, int(budget // per_frame)))
        tile = pixels
    else:
        batch, tile = 1, max(256, CPU_TILE_BYTES // (width * element))
    return settings.batch_frames or batch, min(settings.tile_pixels or tile, pixels)


def render_frames(style: Style, timeline: FeatureTimeline, settings: RenderSettings, *,
                  device: torch.device, start: int = 0, stop: int | None = None) -> Generator[torch.Tensor, None, None]:
    """Yield uint8 frame batches [B, H, W, 3] on `device`, in order, for frames start..stop of the track."""
    settings.validate()
    check_features(style, timeline)
    dtype = resolve_precision(settings.precision, device)
    batch, tile = plan_batches(settings, device, style.network.width, dtype=dtype)
    encoder = style.input_encoder
    stop = timeline.n_frames if stop is None else stop
    with torch.inference_mode():
        net = FastCPPN(style.model, dtype=dtype, device=device, tile=tile)
        spatial = encoder.spatial(settings.width, settings.height, device=device)
        features = torch.from_numpy(timeline.values).to(device)
        channels = torch.from_numpy(timeline.channel_values()).to(device)
        positions = encoder.positions(timeline.n_frames, device=device)
    draw = CudaFrames(net, spatial, batch) if device.type == "cuda" else CpuFrames(net, spatial, tile)
    with draw:
        for first in range(start, stop, batch):
            last = min(first + batch, stop)
            with torch.inference_mode():
                bias = net.frame_bias(encoder.temporal(positions[first:last], features[first:last],
                                                       channels[first:last]))
                rgb = draw(bias)
            yield rgb.view(last - first, settings.height, settings.width, 3)


class FastCPPN:
    """A CPPN's weights laid out for inference in the compute dtype, with activations run in place or fused.

    Holds no per-frame state, so one instance serves every worker thread. Same function as `CPPN`:
    `run` maps first-layer pre-activations to uint8 colours.
    """

    def __init__(self, model: CPPN, *, dtype: torch.dtype, device: torch.device, tile: int = 0) -> None:
        self.dtype, self.device, self.width = dtype, device, model.config.width
        self.spatial_w = model.spatial_in.weight.detach().t().contiguous().to(device, torch.float32)  # [3, width]
        self.spatial_b = model.spatial_in.bias.detach().to(device, torch.float32)
        self.temporal_w = model.temporal_in.weight.detach().t().contiguous().to(device, torch.float32)  # [1+F, w]
        names = [model.config.activations[i % len(model.config.activations)] for i in range(model.config.depth)]
        self.act0 = inplace_activation(names[0], device=device, dtype=dtype)
        onednn = device.type == "cpu" and onednn_linear_works(dtype)
        self.hidden = [(OneDnnLayer if onednn else BufferLayer)(layer, name, dtype=dtype, device=device, tile=tile)
                       for layer, name in zip(model.hidden_layers, names[1:])]
        # bf16 logits would be off by up to ±1.3 levels after the sigmoid: on CPU the 3-wide last layer runs
        # in fp32 (from a tile-sized buffer; on CUDA an fp32 copy of a whole batch would cost gigabytes)
        self.last_fp32 = dtype == torch.bfloat16 and device.type == "cpu"
        last = torch.float32 if self.last_fp32 else dtype
        self.rgb_w, self.rgb_b = (model.rgb.weight.detach().to(device, last),  # [3, width]: F.linear's layout,
                                  model.rgb.bias.detach().to(device, last))  # 4x faster than addmm's for N=3
        # the colour mode (fp32 logits → RGB in [0, 1]); None: sigmoid in place, the rgb mode's fast path
        self.colours = None if model.config.color_mode == "rgb" else model.colours

    def frame_bias(self, temporal: torch.Tensor) -> torch.Tensor:
        """[B, width] fp32: the first layer's bias plus its time/audio half, once per frame."""
        return torch.addmm(self.spatial_b, temporal.float(), self.temporal_w)

    def run(self, a: torch.Tensor, scratch: torch.Tensor, out: torch.Tensor,
            last: torch.Tensor | None = None) -> None:
        """Pre-activations `a` [N, width] (overwritten) → uint8 colours in `out` [N, 3].

        `scratch` is a second [N, width] buffer of the compute dtype; `last` an fp32 [N, width] buffer,
        needed when the last layer runs in fp32.
        """
        self.act0(a)
        for layer in self.hidden:
            a, scratch = layer(a, scratch), a
        if self.last_fp32:
            a = last.copy_(a) if last is not None else a.float()  # `last` is always given on CPU
        logits = torch.nn.functional.linear(a, self.rgb_w, self.rgb_b)
        rgb = logits.float().sigmoid_() if self.colours is None else self.colours(logits.float())
        out.copy_(rgb.mul_(255.0).round_().clamp_(0, 255))


class BufferLayer:
    """A hidden layer as `addmm` into a preallocated buffer, then its activation in place (CUDA, fallback)."""

    def __init__(self, layer: torch.nn.Linear, activation: str, *, dtype: torch.dtype, device: torch.device,
                 tile: int = 0) -> None:
        self.weight = layer.weight.detach().t().contiguous().to(device, dtype)  # [in, out]
        self.bias = layer.bias.detach().to(device, dtype)
        self.act = inplace_activation(activation, device=device, dtype=dtype)

    def __call__(self, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        torch.addmm(self.bias, x, self.weight, out=out)
        self.act(out)
        return out


class OneDnnLayer:
    """A hidden layer through oneDNN with its weights packed once, and tanh/sigmoid/relu fused into the matmul.

    On CPU, ATen's fp32 matmul goes through MKL, which runs this 128-wide layer at half oneDNN's speed on
    the AMD EPYC measured; the fused activation is applied to the fp32 accumulators, before any bf16
    rounding. These are the ops PyTorch's own inductor emits for frozen CPU models.
    """

    FUSED = ("tanh", "sigmoid", "relu")

    def __init__(self, layer: torch.nn.Linear, activation: str, *, dtype: torch.dtype, device: torch.device,
                 tile: int = 0) -> None:
        weight = layer.weight.detach().to(device, dtype).contiguous()  # [out, in]
        self.weight = torch.ops.mkldnn._reorder_linear_weight(weight, tile or None)
        self.bias = layer.bias.detach().to(device, dtype)
        self.fused = activation if activation in self.FUSED else "none"
        self.act = None if activation in self.FUSED else inplace_activation(activation, device=device, dtype=dtype)

    def __call__(self, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        y: torch.Tensor = torch.ops.mkldnn._linear_pointwise(x, self.weight, self.bias, self.fused, [], "")
        if self.act is not None:
            self.act(y)
        return y


@functools.cache
def onednn_linear_works(dtype: torch.dtype) -> bool:
    """Whether this torch build has oneDNN's packed linear for `dtype` and it agrees with ATen's."""
    try:
        x = torch.linspace(-1, 1, 24).view(3, 8).to(dtype)
        w = torch.linspace(-0.5, 0.5, 32).view(4, 8).to(dtype)
        b = torch.linspace(0, 0.3, 4).to(dtype)
        y = torch.ops.mkldnn._linear_pointwise(x, torch.ops.mkldnn._reorder_linear_weight(w, 3), b, "tanh", [], "")
        expected = torch.tanh(torch.nn.functional.linear(x.float(), w.float(), b.float()))
        return bool(torch.backends.mkldnn.is_available()  # type: ignore[no-untyped-call]  # (untyped in torch)
                    and torch.allclose(y.float(), expected, atol=2e-2))
    except (AttributeError, RuntimeError):
        return False


def inplace_activation(name: str, *, device: torch.device, dtype: torch.dtype) -> Callable[[torch.Tensor], object]:
    """The named activation as an in-place op, in the fastest form measured for this device and dtype.

    CPU fp32: numpy's SIMD sin/cos/tanh run in place on the tensor's memory (they release the GIL), 3×, 3×
    and 13× faster than ATen's here, to within 1e-7. CPU bf16 (numpy has no bf16): tanh as 2σ(2x) − 1,
    1.6× faster than ATen's tanh. The fp32 gaussian as 1/σ(x²) − 1 = e^−x², 2× faster than exp.
    """
    cpu, fp32 = device.type == "cpu", dtype == torch.float32
    if cpu and fp32 and name in NUMPY_ACTIVATIONS:
        ufunc = NUMPY_ACTIVATIONS[name]
        return lambda x: ufunc(x.numpy(), out=x.numpy())
    if cpu and name == "tanh":
        return lambda x: x.mul_(2.0).sigmoid_().mul_(2.0).sub_(1.0)
    if cpu and fp32 and name == "gaussian":
        return lambda x: x.square_().sigmoid_().reciprocal_().sub_(1.0)
    ops: dict[str, Callable[[torch.Tensor], object]] = {
        "sin": torch.Tensor.sin_, "cos": torch.Tensor.cos_, "tanh": torch.Tensor.tanh_,
        "sigmoid": torch.Tensor.sigmoid_, "relu": torch.Tensor.relu_,
        "gaussian": lambda x: x.square_().neg_().exp_(),
        "softplus": lambda x: x.copy_(torch.nn.functional.softplus(x)),
    }
    if name not in ops:
        raise RenderError(f"no in-place form of activation '{name}'")
    return ops[name]


NUMPY_ACTIVATIONS = {"sin": np.sin, "cos": np.cos, "tanh": np.tanh}


class CpuFrames:
    """One frame at a time, split into L2-sized pixel tiles shared out among one worker thread per core.

    While it is open (for the whole render, not per batch) torch's intra-op threads are set to 1: the
    workers are the parallelism. Switching the setting back and forth per batch made the consumer's torch
    ops between batches (the metrics) 30x slower, as OpenMP rebuilt its team each time.
    """

    def __init__(self, net: FastCPPN, spatial: torch.Tensor, tile: int) -> None:
        self.net, self.spatial, self.tile = net, spatial, tile
        self.pixels = spatial.shape[0]
        self.workers = max(1, torch.get_num_threads())
        self.pool: ThreadPoolExecutor | None = None
        self.local = threading.local()
        self.threads_before = 0

    def __enter__(self) -> CpuFrames:
        if self.workers > 1:
            self.threads_before = torch.get_num_threads()
            torch.set_num_threads(1)
            self.pool = ThreadPoolExecutor(self.workers, thread_name_prefix="afx-render")
        return self

    def __exit__(self, *exc: object) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True)
            self.pool = None
            torch.set_num_threads(self.threads_before)

    def __call__(self, bias: torch.Tensor) -> torch.Tensor:
        rgb = torch.empty((bias.shape[0], self.pixels, 3), dtype=torch.uint8)
        tasks = iter([(f, p) for f in range(bias.shape[0]) for p in range(0, self.pixels, self.tile)])
        lock = threading.Lock()

        def work() -> None:
            with torch.inference_mode():
                while True:
                    with lock:
                        task = next(tasks, None)
                    if task is None:
                        return
                    self.draw_tile(bias[task[0]], task[1], rgb[task[0]])

        if self.pool is None:
            work()
        else:
            for future in [self.pool.submit(work) for _ in range(self.workers)]:
                future.result()
        return rgb

    def draw_tile(self, bias: torch.Tensor, p: int, rgb: torch.Tensor) -> None:
        n = min(self.tile, self.pixels - p)
        a, scratch, pre, last = self.buffers()
        # the first layer at fp32: spatial half by a K=3 matmul, audio/time half folded into the bias
        torch.addmm(bias, self.spatial[p:p + n], self.net.spatial_w, out=pre[:n])
        if a is not pre:
            a[:n].copy_(pre[:n])
        self.net.run(a[:n], scratch[:n], rgb[p:p + n], None if last is None else last[:n])

    def buffers(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """This thread's (a, scratch, fp32 pre, fp32 last) buffers, allocated on its first tile."""
        if not hasattr(self.local, "buffers"):
            shape, net = (self.tile, self.net.width), self.net
            pre = torch.empty(shape, dtype=torch.float32)
            a = pre if net.dtype == torch.float32 else torch.empty(shape, dtype=net.dtype)
            self.local.buffers = (a, torch.empty(shape, dtype=net.dtype), pre, pre if net.last_fp32 else None)
        buffers: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None] = self.local.buffers
        return buffers


class CudaFrames:
    """Whole frames in batches sized to free memory; the spatial half is computed once per resolution."""

    def __init__(self, net: FastCPPN, spatial: torch.Tensor, batch: int) -> None:
        self.net = net
        with torch.inference_mode():
            self.spatial_pre = torch.addmm(net.spatial_b, spatial, net.spatial_w)  # [P, width] fp32
            pixels = spatial.shape[0]
            self.a = torch.empty((batch * pixels, net.width), dtype=net.dtype, device=net.device)
            self.scratch = torch.empty_like(self.a)

    def __call__(self, bias: torch.Tensor) -> torch.Tensor:
        b, (pixels, width) = bias.shape[0], self.spatial_pre.shape
        a = self.a[:b * pixels]
        torch.add(self.spatial_pre[None], bias[:, None], out=a.view(b, pixels, width))
        rgb = torch.empty((b, pixels, 3), dtype=torch.uint8, device=a.device)  # the caller keeps it: not reused
        self.net.run(a, self.scratch[:b * pixels], rgb.view(-1, 3))
        return rgb

    def __enter__(self) -> CudaFrames:
        return self

    def __exit__(self, *exc: object) -> None:
        self.a = self.scratch = self.spatial_pre = torch.empty(0)  # free the buffers when the render ends


def to_uint8(rgb: torch.Tensor) -> torch.Tensor:
    """[0, 1] floats → uint8, rounded, on the same device."""
    return (rgb.float() * 255.0).round_().clamp_(0, 255).to(torch.uint8)


def check_features(style: Style, timeline: FeatureTimeline) -> None:
    """The timeline must carry exactly the columns the style was trained on, in the same order."""
    if tuple(timeline.names) != tuple(style.features.columns):
        raise RenderError(
            f"style '{style.name}' reads features {list(style.features.sets)} but the timeline has "
            f"{list(timeline.sets)}", hint="extract the style's feature sets (the pipeline does this)")
