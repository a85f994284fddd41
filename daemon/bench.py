"""`afx bench`: the numbers behind docs/PERFORMANCE.md, measured on every device present, in one run.

What it measures (each by one small function below):

- render throughput of the project's renderer and of a *reference path* — the prototype's approach to
  the same network (fp32, the full concatenated input built per frame, chunks of 100,000 pixels, each
  chunk copied to host numpy) — in the same run, and their ratio; plus the PSNR between the two;
- end-to-end `render_track` time (features + render + encode + verify) of a synthesised track, with peak
  RSS (and CUDA peak memory) from fresh child processes, so a short and a long render never share a peak;
- training steps/s of `daemon.train.optimise` per CLIP model at the spec defaults (untrained weights:
  the same FLOPs as trained ones, and nothing to download), and the whole training of a style without CLIP
  (`clip_model = "none"`, palette colour mode, contrast term) at the spec defaults: its target is 2 minutes
  on two CPU cores;
- feature extraction speed per feature set (× real time, after a warm-up run for numba's JIT);
- encoder frames/s (VideoWriter → ffmpeg x264 with synthetic frames);
- the exported shader's frames/s in headless Chromium (software GL, SwiftShader, where there is no GPU),
  with its weights in uniform buffers, a texture and inline.

Nothing here prints: the CLI renders the rows this module returns. Throughput is reported from the
fastest frame (the least disturbed by other processes; the median is kept beside it), with the renderer
and the reference measured in alternating rounds, so a neighbour that takes the CPU for a while slows
both rather than one. The machine's load average before and after the run is recorded with the figures.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from daemon.audio.features import FeatureTimeline, available_sets
from daemon.cppn_config import CPPNConfig
from daemon.errors import AfxError, RenderError
from daemon.render import (
    DTYPES, RenderSettings, plan_batches, render_frames, resolve_device, resolve_precision,
)
from daemon.report import now_iso, versions, write_json_atomic
from daemon.spec import TrainingSpec
from daemon.style import Style, random_style

BENCH_SCHEMA = "afx.bench/1"
REFERENCE_CHUNK = 100_000  # pixels per forward pass in the prototype's renderer
REALTIME_FPS = 30  # "× real time" is against a 30 fps video
RESULT_TAG = "AFX_BENCH_RESULT "  # prefix of the one stdout line a child process answers with
SAMPLE_RATE = 22050
FEATURE_REPEATS = 3  # feature extraction is timed this many times; the fastest counts (least disturbed)

Row = dict[str, Any]
OnRow = Callable[[str, Row], None]


@dataclass(frozen=True)
class BenchPlan:
    """What one run measures; `QUICK` fits in a minute on two CPU cores, `FULL` is the real thing."""

    name: str  # "quick" | "full"
    sizes: tuple[tuple[int, int], ...]  # render throughput sizes
    widths: tuple[int, ...]  # CPPN widths (depth 4)
    budget_s: float  # seconds per path and round of a throughput measurement (at least one frame)
    rounds: int  # alternating renderer/reference rounds per throughput measurement
    quality_size: tuple[int, int]  # frame size of the PSNR check against the reference path
    e2e_seconds: tuple[float, float]  # short and long track for the end-to-end and memory check
    e2e_size_cpu: tuple[int, int]  # end-to-end frame size on CPU (720p for 3 minutes takes ~30 min there)
    e2e_size_cuda: tuple[int, int]  # end-to-end frame size on CUDA
    clip_models: tuple[str, ...]  # training benchmark models
    train_steps_cpu: int  # optimiser steps per model on CPU (the first is a warm-up, not timed)
    train_steps_cuda: int  # optimiser steps per model on CUDA
    train_resolution: int | None  # training frames' shorter side; None: the spec default (224)
    feature_sets: tuple[str, ...] | None  # None: every registered set
    feature_seconds: float  # length of the synthesised track for feature extraction
    encoder_size: tuple[int, int]  # encoder benchmark frame size
    encoder_frames: int  # frames pushed through the encoder
    shader_size: tuple[int, int] = (1280, 720)  # exported shader in headless Chromium (software GL where no GPU)
    shader_width: int = 128  # CPPN width of the shader row (depth 4)
    shader_frames: int = 1  # timed frames per weight storage (a 720p frame takes minutes on SwiftShader)
    weight_free_steps: int = 0  # steps of the style without CLIP; 0: all of the spec default's iterations


QUICK = BenchPlan(
    name="quick", sizes=((160, 90),), widths=(128, 256), budget_s=0.3, rounds=1, quality_size=(64, 36),
    e2e_seconds=(1.5, 3.0), e2e_size_cpu=(64, 36), e2e_size_cuda=(64, 36), clip_models=("afx-tiny",),
    train_steps_cpu=2, train_steps_cuda=3, train_resolution=64, feature_sets=("fft", "mfcc_chroma"),
    feature_seconds=5.0,
    encoder_size=(160, 90), encoder_frames=30,
    shader_size=(160, 90), shader_width=32, shader_frames=3, weight_free_steps=3,
)
FULL = BenchPlan(
    name="full", sizes=((640, 360), (1280, 720), (1920, 1080)), widths=(128, 256), budget_s=3.0, rounds=2,
    quality_size=(64, 36), e2e_seconds=(30.0, 180.0), e2e_size_cpu=(320, 180), e2e_size_cuda=(1280, 720),
    clip_models=("RN50", "ViT-B-32", "ViT-L-14"), train_steps_cpu=2, train_steps_cuda=12,
    train_resolution=None, feature_sets=None, feature_seconds=60.0, encoder_size=(1280, 720), encoder_frames=90,
)


# ── the whole run ────────────────────────────────────────────────────────────────────────────────────────

def bench_devices(choice: str) -> list[torch.device]:
    """cpu | cuda | all (CPU, plus CUDA when present)."""
    if choice == "all":
        return [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    return [resolve_device(choice)]


def run_bench(plan: BenchPlan, *, devices: list[torch.device], out: Path, e2e_size: tuple[int, int] | None = None,
              on_row: OnRow | None = None) -> dict[str, Any]:
    """Measure everything in `plan` on `devices`; the JSON is rewritten to `out` after every row, so a long
    run that is stopped keeps what it measured."""
    result: dict[str, Any] = {"schema": BENCH_SCHEMA, "created": now_iso(), "plan": plan.name,
                              "machine": machine_info(), "versions": versions(), "devices": [str(d) for d in devices]}

    def section(name: str, rows: Iterator[Row]) -> None:
        result[name] = []
        for row in rows:
            result[name].append(row)
            if on_row:
                on_row(name, row)
            write_json_atomic(out, result)

    section("render", (row for d in devices for row in render_rows(plan, d)))
    section("quality", (row for d in devices for row in quality_rows(plan, d)))
    section("end_to_end", (row for d in devices for row in e2e_rows(plan, d, e2e_size)))
    section("training", (row for d in devices for row in training_rows(plan, d)))
    section("features", feature_rows(plan))
    section("encoder", encoder_rows(plan))
    section("shader", shader_rows(plan))
    result["machine"]["load_average_end"] = load_average()
    result["targets"] = target_checks(result)
    write_json_atomic(out, result)
    return result


def machine_info() -> dict[str, Any]:
    """CPU model, cores, the flags that decide the fast paths, memory, GPU."""
    flags: set[str] = set()
    model = platform.processor()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and model in ("", platform.machine()):
                model = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    info: dict[str, Any] = {
        "cpu": model, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "load_average_start": load_average(),  # other processes on the machine skew every timing: recorded
        "cpu_flags": sorted(flags & {"avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "avx512_fp16"}),
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9, 1),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    return info


def load_average() -> list[float]:
    """1, 5 and 15 minute load averages (runnable processes): above the core count, timings are contended."""
    return [round(x, 2) for x in os.getloadavg()]


# ── render throughput: the renderer against the reference path ─────────────────────────────────────────

def render_rows(plan: BenchPlan, device: torch.device) -> Iterator[Row]:
    for width in plan.widths:
        style = bench_style(width)
        for size in plan.sizes:
            context = {"device": device_label(device), "size": f"{size[0]}x{size[1]}", "network": network_label(style)}
            yield guarded(context, lambda: render_row(style, size, device, plan=plan))


def render_row(style: Style, size: tuple[int, int], device: torch.device, *, plan: BenchPlan) -> Row:
    """Renderer vs reference at one size, in alternating rounds; frames/s of the best and the median frame."""
    settings = RenderSettings(width=size[0], height=size[1], device=str(device))
    warm_reference(style, device)
    ours, ref = [], []
    memory = CudaPeak(device)
    for _ in range(plan.rounds):
        with memory:
            ours += time_frames(renderer_batches(style, settings, device), budget_s=plan.budget_s, warmup=True)
        ref += time_frames(reference_batches(style, settings, device), budget_s=plan.budget_s, warmup=False)
    dtype = resolve_precision(settings.precision, device)
    renderer, reference = throughput(ours), throughput(ref)
    return {
        "device": device_label(device), "size": f"{size[0]}x{size[1]}", "network": network_label(style),
        "precision": precision_name(dtype), "batch_frames": plan_batches(settings, device, style.network.width,
                                                                          dtype=dtype)[0],
        "renderer": renderer, "reference": reference,
        "ratio": round(renderer["fps"] / reference["fps"], 2),
        "ratio_median": round(renderer["fps_median"] / reference["fps_median"], 2),
        "cuda_peak_mb": memory.peak_mb,
    }


def time_frames(batches: Iterator[int], *, budget_s: float, warmup: bool) -> list[float]:
    """Per-frame seconds of each batch drawn from `batches` (which yields frame counts) within the budget."""
    times: list[float] = []
    with contextlib.closing(batches):  # type: ignore[type-var]
        if warmup:
            next(batches)
        began = time.perf_counter()
        while not times or time.perf_counter() - began < budget_s:
            t0 = time.perf_counter()
            n = next(batches)
            times.extend([(time.perf_counter() - t0) / n] * n)
    return times


def throughput(per_frame: list[float]) -> Row:
    """frames/s of the fastest frame (the least disturbed by other processes) and of the median frame."""
    fps = 1.0 / min(per_frame)
    return {"fps": round(fps, 3), "fps_median": round(1.0 / float(np.median(per_frame)), 3),
            "x_realtime": round(fps / REALTIME_FPS, 4), "frames": len(per_frame)}


def renderer_batches(style: Style, settings: RenderSettings, device: torch.device) -> Iterator[int]:
    """Endless frame batches from the project's renderer, each brought to the host as the encoder needs it."""
    timeline = synthetic_timeline(style, 10_000)
    while True:
        # closing: the renderer holds torch's thread setting until its generator ends
        with contextlib.closing(render_frames(style, timeline, settings, device=device)) as frames:
            for batch in frames:
                batch.cpu().numpy()
                yield batch.shape[0]


def reference_batches(style: Style, settings: RenderSettings, device: torch.device) -> Iterator[int]:
    timeline = synthetic_timeline(style, 10_000)
    while True:
        for _ in reference_frames(style, timeline, width=settings.width, height=settings.height, device=device):
            yield 1


def reference_frames(style: Style, timeline: FeatureTimeline, *, width: int, height: int, device: torch.device,
                     start: int = 0, stop: int | None = None) -> Iterator[np.ndarray]:
    """The prototype's renderer: per frame the full concatenated input, fp32, 100,000-pixel chunks, each
    chunk to host numpy, quantised on the host; uint8 [1, H, W, 3] numpy frames, one at a time."""
    encoder, model = style.input_encoder, copy.deepcopy(style.model).to(device).float().eval()
    spatial = encoder.spatial(width, height, device=device)
    features = torch.from_numpy(timeline.values).to(device)
    channels = torch.from_numpy(timeline.channel_values()).to(device)
    positions = encoder.positions(timeline.n_frames, device=device)
    for i in range(start, timeline.n_frames if stop is None else stop):
        with torch.no_grad():
            temporal = encoder.temporal(positions[i:i + 1], features[i:i + 1], channels[i:i + 1])
            inputs = encoder.concat(spatial, temporal)[0]
            rgb = np.empty((inputs.shape[0], 3), dtype=np.float32)
            for p in range(0, inputs.shape[0], REFERENCE_CHUNK):
                rgb[p:p + REFERENCE_CHUNK] = model.forward_concat(inputs[p:p + REFERENCE_CHUNK]).cpu().numpy()
        yield np.clip(np.round(rgb * 255.0), 0, 255).astype(np.uint8).reshape(1, height, width, 3)


def warm_reference(style: Style, device: torch.device) -> None:
    """One small frame through the reference path, so its first timed frame pays no library start-up."""
    for _ in reference_frames(style, synthetic_timeline(style, 1), width=64, height=36, device=device):
        pass


class CudaPeak:
    """Peak CUDA memory over the `with` blocks it wraps (None on CPU)."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.peak_mb = device, None if device.type != "cuda" else 0.0

    def __enter__(self) -> CudaPeak:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            peak = torch.cuda.max_memory_allocated(self.device) / 2**20
            self.peak_mb = round(max(self.peak_mb or 0.0, peak), 1)


# ── quality: every precision the device runs against the fp32 reference ────────────────────────────────

def quality_rows(plan: BenchPlan, device: torch.device) -> Iterator[Row]:
    for width in plan.widths:
        style = bench_style(width)
        for precision in device_precisions(device):
            context = {"device": device_label(device), "network": network_label(style), "precision": precision}
            yield guarded(context, lambda: quality_row(style, device, precision, size=plan.quality_size))


def device_precisions(device: torch.device) -> list[str]:
    """The explicit precisions worth checking on this device (fp16 on CPU has no fast path: skipped)."""
    if device.type == "cuda":
        return ["fp32", "fp16"] + (["bf16"] if torch.cuda.is_bf16_supported() else [])
    return ["fp32", "bf16"]


def quality_row(style: Style, device: torch.device, precision: str, *, size: tuple[int, int]) -> Row:
    frames = 8
    timeline = synthetic_timeline(style, frames)
    settings = RenderSettings(width=size[0], height=size[1], device=str(device), precision=precision)
    ours = np.concatenate([b.cpu().numpy() for b in render_frames(style, timeline, settings, device=device)])
    ref = np.concatenate(list(reference_frames(style, timeline, width=size[0], height=size[1], device=device)))
    diff = np.abs(ours.astype(np.int16) - ref.astype(np.int16))
    return {"device": device_label(device), "network": network_label(style), "precision": precision,
            "size": f"{size[0]}x{size[1]}", "frames": frames, "psnr_db": round(psnr(ours, ref), 2),
            "max_abs_diff": int(diff.max()), "auto": precision_name(resolve_precision("auto", device)) == precision}


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio of two uint8 images in dB (inf when identical, reported as 99)."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 99.0 if mse == 0 else min(99.0, 10 * math.log10(255.0**2 / mse))


# ── end to end, in fresh child processes (peak RSS of one render only) ──────────────────────────────────

def e2e_rows(plan: BenchPlan, device: torch.device, size: tuple[int, int] | None) -> Iterator[Row]:
    if size is None:
        size = plan.e2e_size_cuda if device.type == "cuda" else plan.e2e_size_cpu
    rows = []
    for seconds in plan.e2e_seconds:
        row = run_child({"kind": "e2e", "device": str(device), "seconds": seconds, "size": list(size)})
        rows.append(row)
        yield row
    short, long = rows[0].get("peak_rss_mb"), rows[-1].get("peak_rss_mb")
    if short and long:
        yield {"device": device_label(device), "summary": "memory", "short_s": plan.e2e_seconds[0],
               "long_s": plan.e2e_seconds[-1], "rss_ratio": round(long / short, 4)}


def child_e2e(params: dict[str, Any]) -> Row:
    """One render_track of a synthesised track (no feature cache), in this (fresh) process."""
    from daemon.pipeline import AudioContext, render_track

    device = resolve_device(params["device"])
    width, height = params["size"]
    with tempfile.TemporaryDirectory(prefix="afx-bench-") as tmp:
        audio = write_wav(Path(tmp) / "track.wav", synth_track(params["seconds"]))
        settings = RenderSettings(width=width, height=height, device=str(device))
        with CudaPeak(device) as memory:
            report = render_track(audio, random_style(7), settings, out_path=Path(tmp) / "out.mp4",
                                  ctx=AudioContext())
    timing = report.timing
    return {"device": device_label(device), "size": f"{width}x{height}", "track_s": params["seconds"],
            "frames": report.video.frames, "features_s": timing.features_s, "render_s": timing.render_s,
            "total_s": timing.total_s, "x_realtime": timing.realtime_factor,
            "render_fps": round(report.video.frames / timing.render_s, 2),
            **peak_rss(), "cuda_peak_mb": memory.peak_mb}


def peak_rss() -> Row:
    """Peak resident memory of this process in MB: VmHWM, the high-water mark of this program's own memory
    (ru_maxrss would include the parent's size that a forked child carries until it execs)."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return {"peak_rss_mb": round(int(line.split()[1]) / 1024, 1)}
    return {"peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}  # Linux: kB


# ── training steps/s ─────────────────────────────────────────────────────────────────────────────────────

def training_rows(plan: BenchPlan, device: torch.device) -> Iterator[Row]:
    steps = plan.train_steps_cuda if device.type == "cuda" else plan.train_steps_cpu
    # CUDA reserves far more address space than memory it uses: the cap is for CPU runs only
    cap = address_space_budget_gb() if device.type == "cpu" else 0.0
    for model in plan.clip_models:
        yield run_child({"kind": "train", "device": str(device), "clip_model": model, "steps": steps,
                         "resolution": plan.train_resolution, "address_space_gb": cap})
    yield run_child({"kind": "train", "device": str(device), "clip_model": "none", "steps": plan.weight_free_steps,
                     "resolution": None, "address_space_gb": cap})


def address_space_budget_gb() -> float:
    """A cap on a training child's address space: ViT-L-14's backward on CPU needs ~15 GB, and on a shared
    machine a MemoryError in the child beats the kernel's OOM killer picking a neighbour's process."""
    available = 0.0
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                available = int(line.split()[1]) / 2**20
    return round(4.0 + 0.75 * available, 1) if available else 0.0  # + ~4 GB of mapped libraries


def child_train(params: dict[str, Any]) -> Row:
    """`steps` optimiser steps of daemon.train.optimise with untrained CLIP weights; the first is not timed."""
    from daemon.guidance import load_guide
    from daemon.spec import parse_spec
    from daemon.train import optimise

    from daemon.spec import NO_CLIP
    from daemon.train import training_size

    device = resolve_device(params["device"])
    no_clip = params["clip_model"] == NO_CLIP
    training: dict[str, Any] = {"clip_model": params["clip_model"], "pretrained": "none"}
    if params["steps"]:
        training["iterations"] = params["steps"]
    if params.get("resolution"):
        training["resolution"] = params["resolution"]
    table: dict[str, Any] = {"prompts": ["a benchmark"], "training": training}
    if no_clip:  # a weight-free style as the shipped ones are: palette colour mode, palette and contrast terms
        table.update(prompts=["neon"], network={"color_mode": "palette"})
        training["contrast_weight"] = 1.0
    spec = parse_spec(table, path=None, name="bench")
    guide = None if no_clip else load_guide(spec.training.clip_model, "none", cache_dir=None, device=device)
    ends: list[float] = []
    started = time.perf_counter()
    with CudaPeak(device) as memory:
        optimise(spec, guide, [], device=device, checkpoint_dir=None,
                 on_step=lambda record, total: ends.append(time.perf_counter()))
    timed = np.diff(ends)
    t = spec.training
    per_step = float(np.median(timed)) if timed.size else None
    return {"device": device_label(device), "clip_model": params["clip_model"], "steps": len(timed),
            "steps_per_s": round(len(timed) / float(timed.sum()), 4) if timed.size else None,
            "seconds_per_step": round(per_step, 4) if per_step is not None else None,
            "cutouts": 0 if no_clip else t.cutouts, "time_points": t.time_points,
            "resolution": min(training_size(spec)),
            **({"iterations": t.iterations, "train_s": round(time.perf_counter() - started, 2),
                "default_iterations_s": round(per_step * TrainingSpec().iterations, 1) if per_step else None}
               if no_clip else {}),
            **peak_rss(), "cuda_peak_mb": memory.peak_mb}


# ── features and encoder ─────────────────────────────────────────────────────────────────────────────────

def feature_rows(plan: BenchPlan) -> Iterator[Row]:
    from daemon.audio.features import extract_features

    y = synth_track(plan.feature_seconds)
    for name in plan.feature_sets or tuple(available_sets()):
        try:
            extract_features(y[:SAMPLE_RATE * 2], sr=SAMPLE_RATE, fps=REALTIME_FPS, sets=(name,))  # JIT warm-up
            seconds = min(timed(lambda: extract_features(y, sr=SAMPLE_RATE, fps=REALTIME_FPS, sets=(name,)))
                          for _ in range(FEATURE_REPEATS))
        except AfxError as e:
            yield {"set": name, "skipped": e.user_line()}
            continue
        yield {"set": name, "audio_s": plan.feature_seconds, "seconds": round(seconds, 4),
               "x_realtime": round(plan.feature_seconds / seconds, 1)}


def timed(fn: Callable[[], object]) -> float:
    began = time.perf_counter()
    fn()
    return time.perf_counter() - began


def encoder_rows(plan: BenchPlan) -> Iterator[Row]:
    yield guarded({"size": "{}x{}".format(*plan.encoder_size)}, lambda: encoder_row(plan))


def encoder_row(plan: BenchPlan) -> Row:
    from daemon.encode import VideoWriter

    width, height = plan.encoder_size
    frames = synthetic_frames(width, height, plan.encoder_frames)
    with tempfile.TemporaryDirectory(prefix="afx-bench-") as tmp:
        audio = write_wav(Path(tmp) / "a.wav", synth_track(plan.encoder_frames / REALTIME_FPS + 1))
        began = time.perf_counter()
        writer = VideoWriter(Path(tmp) / "v.mp4", width=width, height=height, fps=REALTIME_FPS, audio_path=audio)
        for frame in frames:
            writer.write(frame[None])
        writer.close()
        seconds = time.perf_counter() - began
    return {"size": f"{width}x{height}", "frames": plan.encoder_frames, "seconds": round(seconds, 3),
            "fps": round(plan.encoder_frames / seconds, 2)}


def synthetic_frames(width: int, height: int, n: int) -> list[np.ndarray]:
    """Smooth moving colour fields (CPPN-like content: x264 sees realistic motion, not noise)."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32) / max(width, height) * 6.0
    out = []
    for i in range(n):
        t = i / REALTIME_FPS
        rgb = np.stack([np.sin(x * 1.3 + t), np.cos(y * 1.7 - t * 0.7), np.sin((x + y) * 0.9 + t * 1.3)], axis=-1)
        out.append(((rgb * 0.5 + 0.5) * 255).astype(np.uint8))
    return out


# ── the exported shader in headless Chromium ──────────────────────────────────────────────────────────────

def shader_rows(plan: BenchPlan) -> Iterator[Row]:
    from daemon.export.browser import find_chromium

    size = "{}x{}".format(*plan.shader_size)
    for weights in ("uniform", "texture", "inline"):
        context = {"size": size, "network": f"{plan.shader_width}x4", "weights": weights}
        if find_chromium() is None:
            yield {**context, "skipped": "no Chromium (scripts/bootstrap.sh installs Debian's chromium)"}
            continue
        yield guarded(context, lambda: shader_row(plan, weights))


def shader_row(plan: BenchPlan, weights: str) -> Row:
    """Frames/s of the `afx export` shader (the player's page and runtime) in headless Chromium: the first
    frame's time at 16x16 (mostly compiling), then finished frames at the plan's size."""
    from daemon.export.webgl import ShaderFrames

    style = bench_style(plan.shader_width)
    features = synthetic_timeline(style, 1).values[0]
    width, height = plan.shader_size
    with ShaderFrames(style, weights=weights, timeout_s=3600) as shader:
        first_s = timed(lambda: shader.frame(16, 16, position=0.5, features=features))
        shader.resize(width, height)  # no warm-up frame: one 720p frame takes minutes on software GL
        renderer = shader.browser.evaluate("(e => e ? afx.gl.getParameter(e.UNMASKED_RENDERER_WEBGL) : "
                                           "afx.gl.getParameter(afx.gl.RENDERER))"
                                           "(afx.gl.getExtension('WEBGL_debug_renderer_info'))")
        times = shader.time(plan.shader_frames, features=features)
    return {"size": f"{width}x{height}", "network": network_label(style), "weights": weights,
            "compile_s": round(first_s, 3), "seconds_per_frame": round(min(times), 2), "gl": renderer,
            **throughput(times)}


# ── targets from issue 5 ─────────────────────────────────────────────────────────────────────────────────

def target_checks(result: dict[str, Any]) -> list[Row]:
    """The issue's targets, evaluated on this run's figures where it measured them."""
    checks: list[Row] = []
    for row in result.get("render", []):
        if row.get("size") == "1280x720" and row.get("network") == "128x4":
            goal = 6.0 if row["device"] == "cpu" else None
            if goal:
                checks.append(check("cpu renderer / reference at 1280x720, 128x4", row["ratio"], goal))
            else:
                checks.append(check(f"{row['device']} frames/s at 1280x720, 128x4", row["renderer"]["fps"], 600.0))
    for row in result.get("features", []):
        if row.get("set") == "fft" and "x_realtime" in row:
            checks.append(check("fft features × real time", row["x_realtime"], 200.0))
    for row in result.get("end_to_end", []):
        if row.get("summary") == "memory":
            checks.append(check(f"{row['device']} peak RSS long/short render", row["rss_ratio"], 1.10, above=False))
    for row in result.get("quality", []):
        checks.append(check(f"{row['device']} {row['network']} {row['precision']} PSNR dB", row["psnr_db"], 40.0))
    for row in result.get("training", []):
        if row.get("clip_model") == "none" and row.get("device") == "cpu" and row.get("default_iterations_s"):
            checks.append(check("cpu style without CLIP: seconds to train at the defaults",
                                row["default_iterations_s"], 120.0, above=False))
    return checks


def check(what: str, value: float, goal: float, *, above: bool = True) -> Row:
    return {"target": what, "value": value, "goal": goal, "met": value >= goal if above else value <= goal}


def guarded(context: Row, measure: Callable[[], Row]) -> Row:
    """One measurement; a failure (out of memory at 1080p, an ffmpeg error) becomes an error row, not the
    end of the run."""
    try:
        return measure()
    except AfxError as e:
        return {**context, "error": e.user_line()}
    except (RuntimeError, MemoryError) as e:  # torch reports allocation failures as RuntimeError
        return {**context, "error": f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}"}


# ── shared helpers ───────────────────────────────────────────────────────────────────────────────────────

def bench_style(width: int) -> Style:
    return random_style(11, network=CPPNConfig(width=width, depth=4))


def synthetic_timeline(style: Style, n_frames: int, *, seed: int = 0) -> FeatureTimeline:
    """Feature rows shaped like normalised ones (tanh of a random walk), for the style's columns."""
    rng = np.random.default_rng(seed)
    columns = style.features.columns  # the style's own (embedding sets: its embedding_dims, not the default)
    walk = np.cumsum(rng.standard_normal((n_frames, len(columns))) * 0.1, axis=0)
    channels = np.stack([rng.random(n_frames) ** 3, np.arange(n_frames) * 0.8 / REALTIME_FPS,
                         np.full(n_frames, 0.8)], axis=1).astype(np.float32)  # pulse, drift, level
    return FeatureTimeline(sets=tuple(style.features.sets), names=columns, values=np.tanh(walk).astype(np.float32),
                           fps=float(REALTIME_FPS), onset=np.zeros(n_frames, dtype=np.float32),
                           normalisation={"method": "synthetic"}, channels=channels)


def synth_track(seconds: float, *, sr: int = SAMPLE_RATE) -> np.ndarray:
    """A music-like test signal: a slowly swelling chord with a click every half second."""
    t = np.arange(int(seconds * sr)) / sr
    y = 0.3 * np.sin(2 * np.pi * 110 * t) + 0.2 * np.sin(2 * np.pi * 440 * t) + 0.1 * np.sin(2 * np.pi * 3300 * t)
    y *= 0.6 + 0.4 * np.sin(2 * np.pi * 0.25 * t)
    clicks = (np.mod(t, 0.5) < 0.02) * np.exp(-np.mod(t, 0.5) * 200) * np.sin(2 * np.pi * 2000 * t)
    y = y + 0.5 * clicks
    return np.asarray(y / np.max(np.abs(y)) * 0.5, dtype=np.float32)


def write_wav(path: Path, samples: np.ndarray, *, sr: int = SAMPLE_RATE) -> Path:
    from scipy.io import wavfile

    wavfile.write(path, sr, samples)
    return path


def device_label(device: torch.device) -> str:
    return "cpu" if device.type == "cpu" else f"cuda:{device.index or 0}"


def network_label(style: Style) -> str:
    return f"{style.network.width}x{style.network.depth}"


def precision_name(dtype: torch.dtype) -> str:
    return {value: name for name, value in DTYPES.items()}[dtype]


# ── child processes ──────────────────────────────────────────────────────────────────────────────────────

def run_child(params: dict[str, Any], *, timeout_s: float = 3600) -> Row:
    """Run one measurement in a fresh Python process; its result row (or the error it died of)."""
    code = "import sys; from daemon.bench import child_main; child_main(sys.argv[1])"
    try:
        proc = subprocess.run([sys.executable, "-c", code, json.dumps(params)], capture_output=True, text=True,
                              timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return {**params, "error": f"timed out after {timeout_s:.0f} s"}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_TAG):
            row: Row = json.loads(line[len(RESULT_TAG):])
            return row
    tail = (proc.stderr or "").strip().splitlines()[-1:] or [f"exit status {proc.returncode}"]
    return {**params, "error": tail[0]}


def child_main(params_json: str) -> None:
    """Entry point of a child process: one measurement, one tagged JSON line on stdout."""
    params = json.loads(params_json)
    if params.get("address_space_gb"):
        limit = int(params["address_space_gb"] * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    kinds = {"e2e": child_e2e, "train": child_train}
    if params.get("kind") not in kinds:
        raise RenderError(f"unknown bench child kind {params.get('kind')!r}")
    try:
        row = kinds[params["kind"]](params)
    except AfxError as e:
        row = {**params, "error": e.user_line()}
    except MemoryError:
        row = {**params, "error": f"out of memory (address space capped at {params.get('address_space_gb')} GB)"}
    except RuntimeError as e:  # torch reports a failed allocation as a RuntimeError
        row = {**params, "error": str(e).splitlines()[0][:300]}
    print(RESULT_TAG + json.dumps(row), flush=True)


# ── what the CLI shows ───────────────────────────────────────────────────────────────────────────────────

def describe_row(section: str, row: Row) -> str:
    """One line for a person, per measured row."""
    if "error" in row or "skipped" in row:
        return f"{section:<11} {row.get('clip_model') or row.get('set') or row.get('size') or ''}: " \
               f"{row.get('error') or row.get('skipped')}"
    if section == "render":
        r, ref = row["renderer"], row["reference"]
        return (f"render      {row['device']:<7} {row['size']:>9} {row['network']:>5} {row['precision']:>4}  "
                f"{r['fps']:8.2f} fps ({r['x_realtime']:.3f}x rt)   reference {ref['fps']:7.3f} fps   "
                f"ratio {row['ratio']:.1f}x")
    if section == "quality":
        return (f"quality     {row['device']:<7} {row['size']:>9} {row['network']:>5} {row['precision']:>4}  "
                f"PSNR {row['psnr_db']:.1f} dB vs reference (max diff {row['max_abs_diff']})")
    if section == "end_to_end" and row.get("summary") == "memory":
        return (f"memory      {row['device']:<7} peak RSS {row['long_s']:g} s / {row['short_s']:g} s render: "
                f"{row['rss_ratio']:.3f}")
    if section == "end_to_end":
        return (f"end-to-end  {row['device']:<7} {row['size']:>9} {row['track_s']:g} s track: {row['total_s']:.1f} s "
                f"({row['x_realtime']:.2f}x rt; features {row['features_s']:.1f} s, render+encode "
                f"{row['render_s']:.1f} s), peak RSS {row['peak_rss_mb']:.0f} MB")
    if section == "training" and row.get("clip_model") == "none":
        return (f"training    {row['device']:<7} {'no CLIP':>9}  {row['steps_per_s']} steps/s at {row['resolution']} px "
                f"({row['time_points']} time points): {row['iterations']} steps in {row['train_s']:.1f} s, "
                f"the default {TrainingSpec().iterations} in ~{row['default_iterations_s']} s, "
                f"peak RSS {row['peak_rss_mb']:.0f} MB")
    if section == "training":
        return (f"training    {row['device']:<7} {row['clip_model']:>9}  {row['steps_per_s']} steps/s "
                f"({row['cutouts']} cutouts x {row['time_points']} time points), peak RSS {row['peak_rss_mb']:.0f} MB")
    if section == "features":
        return f"features    {row['set']:<12} {row['x_realtime']:8.1f}x real time"
    if section == "encoder":
        return f"encoder     {row['size']:>9}  {row['fps']:.1f} frames/s"
    if section == "shader":
        return (f"shader      {row['size']:>9} {row['network']:>5} {row['weights']:>7}  {row['fps']:8.3f} fps "
                f"({row['seconds_per_frame']:g} s a frame; compile + first frame {row['compile_s']:.1f} s; {row['gl']})")
    return f"{section} {row}"
