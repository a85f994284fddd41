"""Learned audio embeddings as feature sets: `openl3`, `yamnet` and `vggish`.

For one track and set: raw embeddings [N, D] at the model's own hop (computed in a child process, cached on
disk by audio hash, backend and settings) → reduced to `dims` columns by the style's Reduction → interpolated
onto the video frame times (one row per frame, like every set) → robust-normalised per track by
`features.extract_features`, like every other column.

Isolation: TensorFlow (which OpenL3 uses too) never runs in this process, which holds torch and the rendering
GPU. A child `python -m daemon.audio.tf_worker` reads the audio from .npy files and writes the embeddings
back; anything that goes wrong there (missing package, bad handle, crash, timeout) becomes a FeatureError
for that track.

The reduction belongs to the style (docs/EMBEDDINGS.md): fitted at training time by PCA on the reference
tracks' embedding frames — or, without any, a seeded random orthonormal projection — and stored in the style
folder, so every track a style renders goes through the same mapping.

This module must not import TensorFlow or torch, nor know about CPPNs.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import threading
import zlib
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import librosa
import numpy as np

from daemon.audio.features import (DEFAULT_EMBEDDING_DIMS, Analysis, FeatureSet, align_to_frames, feature_set,
                                   register, register_default_embeddings)
from daemon.audio.cache import FeatureCache
from daemon.config import Embeddings
from daemon.errors import EmbeddingUnavailable, FeatureError
from daemon.logs import get_logger

if TYPE_CHECKING:
    from daemon.style import Style  # torch: never imported here

log = get_logger("afx.embeddings")

OPENL3_MODEL: dict[str, Any] = {"content_type": "music", "input_repr": "mel256", "embedding_size": 512}
PROJECTION_SEED = 0  # the random projection's seed, mixed with the set's name: the same everywhere
MAX_FIT_FRAMES = 10_000  # embedding frames a PCA is fitted on (evenly subsampled beyond)
STDERR_TAIL_CHARS = 2000
REDUCTION_FILE = "reduction.safetensors"  # arrays of a style's reductions, beside style.json
_MEMO_ENTRIES = 32  # raw embeddings kept in memory, so fitting then extracting runs a model once per track


# ── backends ─────────────────────────────────────────────────────────────────────────────────────────────

@dataclass(frozen=True)
class Backend:
    """A model that turns audio into frames of embeddings, and how to reach it."""

    name: str  # the feature set's name
    kind: str  # "hub" (a tensorflow-hub handle) or "openl3" (the openl3 package)
    packages: tuple[str, ...]  # modules the child process imports (import names)
    extra: str  # the pip extra of audio-feature-explorer that installs them
    sample_rate: int  # the rate the model reads; this process resamples to it
    blocks: tuple[tuple[str, int], ...]  # raw columns as (block, width), concatenated in this order
    hop_s: float  # seconds between output frames
    window_s: float  # seconds of audio each frame sees; a frame's time is its window's centre
    handle: str | None = None  # hub: URL or local SavedModel folder
    version: int = 1  # bump when the raw output changes: invalidates the raw cache

    @property
    def input_dims(self) -> int:
        return sum(width for _, width in self.blocks)

    def install_hint(self) -> str:
        return f"pip install 'audio-feature-explorer[{self.extra}]'"

    def settings(self) -> dict[str, Any]:
        """Everything that changes the raw embeddings: part of the cache key and of reports."""
        out: dict[str, Any] = {"backend": self.name, "version": self.version, "sample_rate": self.sample_rate,
                               "hop_s": self.hop_s}
        if self.kind == "hub":
            out.update(handle=self.handle, model=_model_fingerprint(self.handle or ""))
        else:
            out.update(OPENL3_MODEL)
        return out


_BACKENDS: dict[str, Callable[[], Backend]] = {}  # embedding set → how to build its Backend now


def register_backend(name: str, make: Callable[[], Backend], *, version: int) -> None:
    """An embedding set, like `features.register` for a computed one: `make()` builds its Backend with the
    settings the environment gives at that moment (handles, hop); `version` is its feature set's (a change
    invalidates cached timelines and changes the ids of styles that use it). The child process
    (`daemon.audio.tf_worker`) runs the Backend's `kind`."""
    _BACKENDS[name] = make
    register(FeatureSet(name=name, columns=(), extract=functools.partial(_extract, name), embedding=True,
                        version=version))


def backend(name: str) -> Backend:
    """The backend of an embedding set, with the handles and hop the environment gives now."""
    make = _BACKENDS.get(name)
    if make is None:
        raise FeatureError(f"'{name}' is not an embedding set", key="audio.features",
                           hint=f"embedding sets: {', '.join(_BACKENDS)}")
    return make()


def hub_handle(name: str) -> str:
    """The set's tensorflow-hub handle: afx.toml's `[embeddings] <name>_handle`, as the environment carries it."""
    key = f"{name}_handle"
    return os.environ.get(Embeddings.VARIABLES[key], "").strip() or str(getattr(Embeddings(), key))


def is_embedding(name: str) -> bool:
    return feature_set(name).embedding


def embedding_sets(sets: Sequence[str]) -> list[str]:
    return [s for s in sets if is_embedding(s)]


def missing_packages(name: str) -> list[str]:
    """The modules an embedding set needs that this Python cannot import (found without importing them)."""
    return [p for p in backend(name).packages if importlib.util.find_spec(p) is None]


def setting(name: str) -> float:
    """A numeric `[embeddings]` setting as the environment carries it (config.Embeddings: default, bounds)."""
    spec = next(f for f in fields(Embeddings) if f.name == name)
    default: float = getattr(Embeddings(), name)
    variable, lo, hi = Embeddings.VARIABLES[name], spec.metadata["lo"], spec.metadata["hi"]
    raw = os.environ.get(variable, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise FeatureError(f"{variable}={raw!r} is not a number", hint=f"e.g. {variable}={default}") from None
    if not lo <= value <= hi:
        raise FeatureError(f"{variable}={value} is outside [{lo}, {hi}]", hint=f"e.g. {variable}={default}")
    return value


def _model_fingerprint(handle: str) -> str:
    """A local SavedModel's size and mtime, so replacing the model in place invalidates the cache; URLs as is."""
    path = Path(handle).expanduser()
    saved = path / "saved_model.pb"
    if saved.is_file():
        stat = saved.stat()
        return f"local:{stat.st_size}:{stat.st_mtime_ns}"
    return "url"


# ── reduction ────────────────────────────────────────────────────────────────────────────────────────────

@dataclass(frozen=True, eq=False)
class Reduction:
    """A linear map from a set's raw embedding [D] to `dims` columns: ((x − mean) · scale) @ componentsᵀ."""

    method: str  # "pca" (fitted on reference tracks) or "random-projection" (seeded, without data)
    mean: np.ndarray  # [D] float32, subtracted first
    scale: np.ndarray  # [D] float32: gives each block (yamnet: scores, embedding) the same total variance
    components: np.ndarray  # [dims, D] float32, orthonormal rows
    info: dict[str, Any] = field(default_factory=dict)  # JSON-able: frames and tracks fitted on, variance, seed

    @property
    def dims(self) -> int:
        return int(self.components.shape[0])

    @property
    def input_dims(self) -> int:
        return int(self.components.shape[1])

    def apply(self, raw: np.ndarray) -> np.ndarray:
        """[N, D] raw embedding frames → [N, dims]."""
        raw = np.asarray(raw, dtype=np.float32)
        if raw.ndim != 2 or raw.shape[1] != self.input_dims:
            raise FeatureError(f"embedding frames have shape {raw.shape}, the reduction expects "
                               f"[N, {self.input_dims}]", hint="retrain the style: its backend changed")
        reduced: np.ndarray = ((raw - self.mean) * self.scale) @ self.components.T
        return reduced

    def digest(self) -> str:
        """Hash of the mapping itself (for cache keys): equal digests map every track alike."""
        h = hashlib.sha256(self.method.encode())
        for array in (self.mean, self.scale, self.components):
            h.update(np.ascontiguousarray(array, dtype=np.float32).tobytes())
        return h.hexdigest()[:16]

    def describe(self) -> dict[str, Any]:
        return {"method": self.method, "input_dims": self.input_dims, "dims": self.dims, "digest": self.digest(),
                **self.info}


def _block_scale(blocks: Sequence[tuple[str, int]], column_variance: np.ndarray | None) -> np.ndarray:
    """Per-column weights giving each block unit total variance (unit per column assumed without data)."""
    parts, start = [], 0
    for _, width in blocks:
        total = float(column_variance[start:start + width].sum()) if column_variance is not None else width
        parts.append(np.full(width, 1.0 / np.sqrt(total) if total > 1e-12 else 1.0))
        start += width
    return np.concatenate(parts)


def _seed_for(name: str, seed: int) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(name.encode())])


def _orthonormal_completion(components: np.ndarray, dims: int, input_dims: int,
                            rng: np.random.Generator) -> np.ndarray:
    """`components` [k, D] extended to `dims` orthonormal rows with random directions orthogonal to them."""
    k = components.shape[0]
    if k >= dims:
        return components[:dims]
    extra = rng.standard_normal((dims - k, input_dims))
    if k:
        extra -= (extra @ components.T) @ components
    q, r = np.linalg.qr(extra.T)
    q = q * np.where(np.diag(r) < 0, -1.0, 1.0)
    return np.vstack([components, q.T])


def check_dims(name: str, dims: int) -> None:
    b = backend(name)
    if not 1 <= dims <= b.input_dims:
        raise FeatureError(f"cannot reduce {name}'s {b.input_dims} dimensions to {dims}",
                           key="audio.embedding_dims", hint=f"use 1 to {b.input_dims}")


@functools.lru_cache(maxsize=32)
def random_projection(name: str, *, dims: int, seed: int = PROJECTION_SEED) -> Reduction:
    """A seeded random orthonormal projection (the same on every machine for a set, dims and seed)."""
    check_dims(name, dims)
    b = backend(name)
    components = _orthonormal_completion(np.zeros((0, b.input_dims)), dims, b.input_dims, _seed_for(name, seed))
    return Reduction(method="random-projection", mean=np.zeros(b.input_dims, dtype=np.float32),
                     scale=_block_scale(b.blocks, None).astype(np.float32),
                     components=components.astype(np.float32), info={"seed": seed})


def fit_reduction(name: str, frames: Sequence[np.ndarray], *, dims: int, seed: int = PROJECTION_SEED) -> Reduction:
    """PCA of the embedding frames of some tracks (each block scaled to unit total variance first).

    With no frames at all: `random_projection`. With fewer independent directions than `dims` (short
    tracks), the remaining components are seeded random directions orthogonal to the fitted ones.
    """
    check_dims(name, dims)
    b = backend(name)
    rows = [np.asarray(f, dtype=np.float64) for f in frames if np.asarray(f).size]
    if not rows:
        return random_projection(name, dims=dims, seed=seed)
    x = np.concatenate(rows)
    if x.shape[0] > MAX_FIT_FRAMES:
        x = x[np.linspace(0, x.shape[0] - 1, MAX_FIT_FRAMES).round().astype(int)]
    mean = x.mean(axis=0)
    centred = x - mean
    scale = _block_scale(b.blocks, centred.var(axis=0))
    z = centred * scale
    variance, vectors = np.linalg.eigh(z.T @ z / max(1, z.shape[0]))
    order = np.argsort(variance)[::-1]
    variance, vectors = np.clip(variance[order], 0.0, None), vectors[:, order]
    rank = int((variance > max(variance[0], 1e-30) * 1e-9).sum()) if variance[0] > 1e-20 else 0
    keep = min(rank, dims)
    components = vectors[:, :keep].T
    components *= np.where(components[np.arange(keep), np.abs(components).argmax(axis=1)] < 0, -1.0, 1.0)[:, None]
    components = _orthonormal_completion(components, dims, b.input_dims, _seed_for(name, seed))
    total = float(variance.sum())
    info = {"fitted_frames": int(x.shape[0]), "tracks": len(rows), "random_components": dims - keep,
            "explained_variance": [round(float(v) / total, 6) if total > 0 else 0.0 for v in variance[:keep]]}
    return Reduction(method="pca", mean=mean.astype(np.float32), scale=scale.astype(np.float32),
                     components=components.astype(np.float32), info=info)


def reduction_files(reductions: Mapping[str, Reduction]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """A style's reductions as (JSON for style.json, arrays for reduction.safetensors)."""
    meta, arrays = {}, {}
    for name, r in reductions.items():
        meta[name] = {"method": r.method, "input_dims": r.input_dims, "dims": r.dims, "digest": r.digest(),
                      "info": r.info}
        arrays.update({f"{name}.mean": r.mean, f"{name}.scale": r.scale, f"{name}.components": r.components})
    return meta, {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in arrays.items()}


def reductions_from_files(meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> dict[str, Reduction]:
    """The inverse of `reduction_files`; a digest that does not match means the arrays were damaged."""
    out = {}
    for name, m in meta.items():
        r = Reduction(method=m["method"], mean=arrays[f"{name}.mean"], scale=arrays[f"{name}.scale"],
                      components=arrays[f"{name}.components"], info=dict(m.get("info") or {}))
        if m.get("digest") and r.digest() != m["digest"]:
            raise ValueError(f"the {name} reduction does not match its digest")
        out[name] = r
    return out


# ── frame alignment ──────────────────────────────────────────────────────────────────────────────────────

def hub_frame_times(n: int, *, hop_s: float, window_s: float) -> np.ndarray:
    """Centres of frames that start every `hop_s` at 0 and last `window_s` (YAMNet, VGGish)."""
    return np.arange(n, dtype=np.float64) * hop_s + window_s / 2.0


# ── raw embeddings (child process, cache) ────────────────────────────────────────────────────────────────

@dataclass(frozen=True)
class TrackAudio:
    """One track's samples and identity, as the embedding backends need them."""

    samples: np.ndarray  # mono float32
    sample_rate: int  # Hz
    sha256: str  # content hash (cache key)
    label: str = ""  # file name, for errors


@dataclass(frozen=True)
class RawEmbedding:
    """A track's embedding frames at the model's own hop."""

    values: np.ndarray  # [N, D] float32
    times: np.ndarray  # [N] seconds: the centre of each frame's window


_memo: OrderedDict[str, RawEmbedding] = OrderedDict()
_memo_lock = threading.Lock()


def raw_key(sha256: str, settings: Mapping[str, Any]) -> str:
    material = json.dumps({"track": sha256, "embedding": dict(settings)}, sort_keys=True)
    return "emb-" + hashlib.sha256(material.encode()).hexdigest()[:32]


def raw_embeddings(name: str, tracks: Sequence[TrackAudio], *,
                   cache: FeatureCache | None = None) -> list[RawEmbedding | FeatureError]:
    """Each track's raw embedding (memory, then disk cache, then one child process for all misses).

    A track that failed gives its FeatureError in its place, so a caller can skip it or raise it.
    """
    b = backend(name)
    settings = b.settings()
    keys = [raw_key(t.sha256, settings) for t in tracks]
    results: list[RawEmbedding | FeatureError | None] = [_lookup(key, cache) for key in keys]
    missing = [i for i, r in enumerate(results) if r is None]
    if missing:
        log.info("embeddings.compute", set=name, tracks=len(missing), handle=b.handle)
        for i, result in zip(missing, run_backend(b, [tracks[i] for i in missing])):
            results[i] = result
            if isinstance(result, RawEmbedding):
                _remember(keys[i], result, cache)
    return [r for r in results if r is not None]


def raw_embedding(name: str, track: TrackAudio, *, cache: FeatureCache | None = None) -> RawEmbedding:
    """One track's raw embedding; raises its FeatureError."""
    result = raw_embeddings(name, [track], cache=cache)[0]
    if isinstance(result, FeatureError):
        raise result
    return result


def _lookup(key: str, cache: FeatureCache | None) -> RawEmbedding | None:
    with _memo_lock:
        if key in _memo:
            _memo.move_to_end(key)
            return _memo[key]
    arrays = cache.load_arrays(key) if cache is not None else None
    if arrays is None or "values" not in arrays or "times" not in arrays:
        return None
    hit = RawEmbedding(values=arrays["values"], times=arrays["times"])
    _remember(key, hit, None)
    return hit


def _remember(key: str, raw: RawEmbedding, cache: FeatureCache | None) -> None:
    with _memo_lock:
        _memo[key] = raw
        while len(_memo) > _MEMO_ENTRIES:
            _memo.popitem(last=False)
    if cache is not None:
        cache.store_arrays(key, {"values": raw.values, "times": raw.times})


def forget_memo() -> None:
    """Drop the in-memory raw embeddings (tests; a long-lived process never needs to)."""
    with _memo_lock:
        _memo.clear()


def run_backend(b: Backend, tracks: Sequence[TrackAudio]) -> list[RawEmbedding | FeatureError]:
    """Run the backend on `tracks` in one child process (one model load); one result per track."""
    with tempfile.TemporaryDirectory(prefix="afx-embed-") as tmp:
        folder = Path(tmp)
        jobs = []
        for i, track in enumerate(tracks):
            audio = np.asarray(track.samples, dtype=np.float32)
            if track.sample_rate != b.sample_rate:
                audio = librosa.resample(audio, orig_sr=track.sample_rate, target_sr=b.sample_rate)
            np.save(folder / f"in{i}.npy", np.ascontiguousarray(audio, dtype=np.float32))
            jobs.append({"input": str(folder / f"in{i}.npy"), "output": str(folder / f"out{i}.npz"),
                         "error": str(folder / f"err{i}.json"), "label": track.label})
        request = {"backend": b.name, "kind": b.kind, "handle": b.handle, "sample_rate": b.sample_rate,
                   "hop_s": b.hop_s, "window_s": b.window_s, "openl3": OPENL3_MODEL, "dims": b.input_dims,
                   "extra": b.extra, "jobs": jobs, "error": str(folder / "error.json")}
        (folder / "request.json").write_text(json.dumps(request))
        try:
            proc = _run_worker(folder / "request.json")
        except subprocess.TimeoutExpired as e:
            error = EmbeddingUnavailable(f"{b.name}: the embedding worker took longer than {e.timeout:.0f} s and "
                                         "was stopped", key="audio.features",
                                 hint=f"raise [embeddings] timeout_s in afx.toml ({Embeddings.VARIABLES['timeout_s']}),"
                                      " or use a GPU for the embedding models")
            return [error for _ in tracks]
        return [_collect(b, job, proc, request_error=folder / "error.json") for job in jobs]


def _run_worker(request: Path) -> subprocess.CompletedProcess[str]:
    """`python -m daemon.audio.tf_worker REQUEST` with TensorFlow's GPU memory growth on."""
    timeout = setting("timeout_s")
    root = str(Path(__file__).resolve().parents[2])  # the folder holding the daemon package
    env = {**os.environ, "TF_FORCE_GPU_ALLOW_GROWTH": "true",
           "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"),
           "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)}
    return subprocess.run([sys.executable, "-m", "daemon.audio.tf_worker", str(request)], env=env,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout, check=False)


def _collect(b: Backend, job: Mapping[str, str], proc: subprocess.CompletedProcess[str], *,
             request_error: Path) -> RawEmbedding | FeatureError:
    """The job's embedding, or the clearest error the child left: its own, the run's, or its exit status."""
    tail = (proc.stderr or "")[-STDERR_TAIL_CHARS:] or None
    label = job.get("label") or None
    output, job_error = Path(job["output"]), Path(job["error"])
    if output.is_file():
        try:
            with np.load(output, allow_pickle=False) as data:
                values, times = data["values"].astype(np.float32), data["times"].astype(np.float64)
        except (OSError, ValueError, KeyError) as e:
            return FeatureError(f"{b.name}: unreadable worker output ({e})", path=label, stderr_tail=tail)
        if values.ndim != 2 or values.shape[1] != b.input_dims or times.shape != (values.shape[0],):
            return FeatureError(f"{b.name}: the model returned frames of shape {values.shape} (times "
                                f"{times.shape}), expected [N, {b.input_dims}]", path=label, key="audio.features",
                                hint=_handle_hint(b))
        return RawEmbedding(values=values, times=times)
    for source in (job_error, request_error):
        if source.is_file():
            try:
                err = json.loads(source.read_text())
            except (OSError, ValueError):
                continue
            kind = EmbeddingUnavailable if err.get("transient") else FeatureError  # the child's verdict
            return kind(f"{b.name}: {err.get('message', 'failed')}", path=label, key="audio.features",
                        hint=err.get("hint") or _handle_hint(b), stderr_tail=tail)
    kind = EmbeddingUnavailable if proc.returncode < 0 else FeatureError  # killed by a signal: try again
    return kind(f"{b.name}: the embedding worker exited with status {proc.returncode} and no result",
                path=label, key="audio.features", stderr_tail=tail,
                hint="see the stderr tail in the log; out of memory is the usual cause")


def _handle_hint(b: Backend) -> str:
    if b.kind == "hub":
        variable = Embeddings.VARIABLES[f"{b.name}_handle"]
        return (f"set {b.name}_handle in afx.toml's [embeddings] table (or {variable}) to a tfhub.dev "
                f"URL or a local SavedModel folder with {b.name}'s signature")
    return b.install_hint()


# ── plans: how a style turns embedding sets into columns ─────────────────────────────────────────────────

@dataclass(frozen=True)
class EmbeddingPlan:
    """The number of columns per embedding set and the style's reductions (a set without one: the projection)."""

    dims: int = DEFAULT_EMBEDDING_DIMS  # columns per embedding set after reduction
    reductions: Mapping[str, Reduction] = field(default_factory=dict)  # by set name, fitted at training time

    def reduction(self, name: str) -> Reduction:
        r = self.reductions.get(name)
        if r is None:
            return random_projection(name, dims=self.dims)
        if r.dims != self.dims:
            raise FeatureError(f"the style's {name} reduction has {r.dims} columns, the style reads {self.dims}",
                               hint="the style folder is inconsistent: retrain it")
        return r

    def cache_material(self, sets: Sequence[str]) -> dict[str, Any]:
        """What a feature timeline of `sets` depends on beyond the spectral sets: for the timeline cache key."""
        return {s: {"dims": self.dims, "reduction": self.reduction(s).digest(), "raw": backend(s).settings()}
                for s in embedding_sets(sets)}


@dataclass(frozen=True)
class TrackEmbeddings:
    """A plan bound to one track: what `features.Analysis.embeddings` holds while its sets are extracted."""

    plan: EmbeddingPlan = EmbeddingPlan()  # dims and reductions
    sha256: str | None = None  # the track's content hash (None: hashed from the samples)
    cache: FeatureCache | None = None  # where raw embeddings are cached (None: nowhere)
    label: str = ""  # the track's file name, for errors

    @property
    def dims(self) -> int:
        return self.plan.dims

    def describe(self, sets: Sequence[str]) -> dict[str, Any]:
        """For timelines and reports: per embedding set, its backend and the reduction applied."""
        out = {}
        for s in embedding_sets(sets):
            b = backend(s)
            reduction = self.plan.reduction(s).describe() | ({} if s in self.plan.reductions else {"source": "default"})
            out[s] = {"backend": b.handle or f"openl3 {OPENL3_MODEL['content_type']}/{OPENL3_MODEL['input_repr']}/"
                      f"{OPENL3_MODEL['embedding_size']}", "hop_s": b.hop_s, "reduction": reduction}
        return out

    def columns(self, name: str, analysis: Analysis) -> np.ndarray:
        """[n_frames, dims] reduced, frame-aligned (not yet normalised) embedding columns."""
        sha = self.sha256 or hashlib.sha256(np.ascontiguousarray(analysis.y, dtype=np.float32).tobytes()
                                            + str(analysis.sr).encode()).hexdigest()
        raw = raw_embedding(name, TrackAudio(analysis.y, analysis.sr, sha, self.label), cache=self.cache)
        reduced = self.plan.reduction(name).apply(raw.values) if raw.values.shape[0] else \
            np.zeros((0, self.plan.dims))
        return align_to_frames(reduced, raw.times, n_frames=analysis.n_frames, fps=analysis.fps)


def plan_for_style(style: Style) -> EmbeddingPlan:
    """The plan a style was trained with: its column count and its stored reductions."""
    features = style.features
    dims = DEFAULT_EMBEDDING_DIMS
    for s in embedding_sets(features.sets):
        dims = sum(1 for c in features.columns if c.startswith(f"{s}."))
        break
    return EmbeddingPlan(dims=dims, reductions=dict(features.reduction or {}))


def fit_reductions(sets: Sequence[str], tracks: Sequence[TrackAudio], *, dims: int, cache: FeatureCache | None = None,
                   on_skip: Callable[[TrackAudio, FeatureError], None] | None = None) -> dict[str, Reduction]:
    """A style's reductions: PCA per embedding set over `tracks`, the seeded projection when there are none.

    A track whose embedding fails is skipped (`on_skip(track, error)`); when every track fails, the first
    error is raised: a style must not silently train on a different mapping than it will render with.
    """
    reductions = {}
    for name in embedding_sets(sets):
        results = raw_embeddings(name, tracks, cache=cache) if tracks else []
        frames = [r.values for r in results if isinstance(r, RawEmbedding)]
        errors = [(t, r) for t, r in zip(tracks, results) if isinstance(r, FeatureError)]
        if errors and not frames:
            raise errors[0][1]
        for track, error in errors:
            if on_skip is not None:
                on_skip(track, error)
        reductions[name] = fit_reduction(name, frames, dims=dims)
    return reductions


# ── the feature sets ─────────────────────────────────────────────────────────────────────────────────────

def _extract(name: str, analysis: Analysis) -> np.ndarray:
    embeddings = analysis.embeddings if analysis.embeddings is not None else TrackEmbeddings()
    return embeddings.columns(name, analysis)


register_default_embeddings(TrackEmbeddings)


# The embedding sets. Version 2 of each: the pulse and drift channels every timeline carries come from the
# mel HPSS (fft 3); cached version-1 timelines hold the old channels (or none, from before issue 10).
# Version 3: the pulse counts only onsets above ONSET_FLOOR (fft 4).
HUB_PACKAGES = ("tensorflow", "tensorflow_hub")

# OpenL3 (music, mel256) 512-D embedding, every `[embeddings] openl3_hop_s`
register_backend("openl3", lambda: Backend(
    name="openl3", kind="openl3", packages=("openl3",), extra="openl3", sample_rate=48000,
    blocks=(("embedding", int(OPENL3_MODEL["embedding_size"])),), hop_s=setting("openl3_hop_s"), window_s=1.0),
    version=3)
# YAMNet: 521 AudioSet class scores + its 1024-D embedding
register_backend("yamnet", lambda: Backend(
    name="yamnet", kind="hub", packages=HUB_PACKAGES, extra="tfhub", sample_rate=16000,
    blocks=(("scores", 521), ("embedding", 1024)), hop_s=0.48, window_s=0.96, handle=hub_handle("yamnet")),
    version=3)
# VGGish 128-D embedding
register_backend("vggish", lambda: Backend(
    name="vggish", kind="hub", packages=HUB_PACKAGES, extra="tfhub", sample_rate=16000,
    blocks=(("embedding", 128),), hop_s=0.96, window_s=0.96, handle=hub_handle("vggish")),
    version=3)
