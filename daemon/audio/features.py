"""Feature sets: a registry of named extractors, each giving one row per *video frame*.

A track of duration D at F fps has exactly round(D × F) frames; frame i is shown at time i / F, and every
feature row i describes the audio at that instant (spectral frames are interpolated onto those times).

Conditioning is level-aware (docs/FEATURES.md): energies are levels in [0, 1] relative to the track's loud
frames *and* above an absolute floor (ABS_FLOOR_DB), so near-silence stays ~0 and a quiet passage stays
below a loud one; spectral-shape columns are z-scored over the frames with signal and faded out where there
is none; onsets and beats exist only where there is signal. Each kind of column then gets its own
attack/release smoothing. Beside the columns, every timeline carries the designed channels the encoder
feeds to every CPPN: pulse (percussive onsets, HPSS), drift (integrated motion) and level.

This module must not know about styles, CPPNs or the service.
"""

from __future__ import annotations

import functools
import importlib
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import bottleneck
import librosa
import numpy as np
from threadpoolctl import threadpool_limits

from daemon.errors import FeatureError

N_FFT = 2048
HOP = 512
N_MELS = 128
AMIN = 1e-10  # absolute floor under powers before dB, so silence stays finite
TOP_DB = 80.0  # dB floor relative to the track's own peak: a gain change then shifts every value alike
BEAT_DECAY_S = 0.15  # the beat column falls to 1/e this long after a beat
NORMALISATION = "level-aware/2"  # energies: level over max(loud - RANGE_DB, ABS_FLOOR_DB); shape: gated z-tanh
ABS_FLOOR_DB = -80.0  # frame RMS (dB re full scale) at or below which there is no signal at all
GATE_DB = 10.0  # presence ramps from 0 at the floor to 1 this far above it
RANGE_DB = 40.0  # an energy column spans this many dB below the track's loud level (its 95th percentile)
LOUD_PERCENTILE = 95.0  # the track's loud reference level
# attack/release time constants (s) of each kind of column: onsets jump and fall fast, levels follow
# quickly and let go slowly, tonal/spectral shape glides
SMOOTHING = {"onset": (0.0, 0.08), "energy": (0.02, 0.25), "shape": (0.15, 0.40), "z": (0.0, 0.0)}
# HPSS runs on the mel magnitude spectrogram: median filters over this many spectral frames (harmonic, librosa's
# 31 ≈ 0.72 s) and this many mel bands (percussive, ≈ 0.35 kHz below 1 kHz like librosa's 31 STFT bins)
HPSS_KERNEL = (31, 13)
PULSE_RELEASE_S = 0.12  # the pulse channel falls to 1/e this long after a percussive onset
# onset columns and the pulse count an onset only above this share of the track's strong onsets (their 99th
# percentile), and rise from 0 there: a hi-hat tick or a reverb tail under it moves nothing (docs/FEATURES.md)
ONSET_FLOOR = 0.3
BEAT_ONSET_S = 0.05  # a tracked beat counts only with an onset above ONSET_FLOOR this close to it
MOTION_IDLE = 0.03  # drift speed in silence, as a share of the speed at full level (time alone drives it)
CHANNELS = ("pulse", "drift", "level")  # FeatureTimeline.channels columns
DEFAULT_EMBEDDING_DIMS = 8  # columns an embedding set (openl3, yamnet, vggish) is reduced to (audio.embedding_dims)


def frame_count(duration_s: float, fps: float) -> int:
    """Frames in a video of the track: round(duration × fps), at least 1."""
    return max(1, int(round(duration_s * fps)))


class Analysis:
    """What extractors share for one track: samples, frame times, and lazily computed spectra."""

    def __init__(self, y: np.ndarray, *, sr: int, fps: float, embeddings: EmbeddingSource | None = None) -> None:
        self.y = y
        self.sr = sr
        self.fps = fps
        self.embeddings = embeddings  # how embedding sets are computed (None: the default plan, no cache)
        self.duration_s = y.size / sr
        self.n_frames = frame_count(self.duration_s, fps)
        self.frame_times = np.arange(self.n_frames, dtype=np.float64) / fps

    @functools.cached_property
    def power(self) -> np.ndarray:
        """|STFT|² [freq, spectral frames]."""
        power: np.ndarray = np.abs(librosa.stft(self.y, n_fft=N_FFT, hop_length=HOP, center=True)) ** 2
        return power

    @functools.cached_property
    def freqs(self) -> np.ndarray:
        return librosa.fft_frequencies(sr=self.sr, n_fft=N_FFT)

    @functools.cached_property
    def mel_power(self) -> np.ndarray:
        """Mel power spectrogram [N_MELS, spectral frames]: the log-mel features and the HPSS share it."""
        return librosa.feature.melspectrogram(S=self.power, sr=self.sr, n_mels=N_MELS)

    @functools.cached_property
    def mel_db(self) -> np.ndarray:
        db: np.ndarray = librosa.power_to_db(self.mel_power, ref=1.0, amin=AMIN, top_db=TOP_DB)
        return db

    @functools.cached_property
    def onset(self) -> np.ndarray:
        """Onset strength (spectral flux of the log-mel spectrogram) per spectral frame, zero where there is
        no signal (the log spectrum of near-silence is all noise) and weighted by the track-relative level."""
        flux = librosa.onset.onset_strength(S=self.mel_db, sr=self.sr, hop_length=HOP)
        onset: np.ndarray = flux * self.presence * self.level
        return onset

    @functools.cached_property
    def rms_db(self) -> np.ndarray:
        """Frame RMS in dB re full scale, per spectral frame (absolute: a gain shifts it)."""
        rms = librosa.feature.rms(y=self.y, frame_length=N_FFT, hop_length=HOP, center=True)[0]
        db: np.ndarray = 20.0 * np.log10(np.maximum(rms, 1e-10))[: self.power.shape[1]]
        return db

    @functools.cached_property
    def presence(self) -> np.ndarray:
        """0 at or below the absolute floor, 1 from GATE_DB above it, per spectral frame."""
        return np.clip((self.rms_db - ABS_FLOOR_DB) / GATE_DB, 0.0, 1.0)

    @functools.cached_property
    def level(self) -> np.ndarray:
        """Loudness in [0, 1] per spectral frame: relative to the track's loud frames, above the floor."""
        return energy_level(self.rms_db)

    @functools.cached_property
    def percussive_mask(self) -> np.ndarray:
        """The percussive share of each mel bin [N_MELS, spectral frames] in [0, 1], by median-filtering HPSS
        (librosa's method and soft mask) on the mel magnitude spectrogram; the harmonic share is 1 − it."""
        magnitude = np.sqrt(self.mel_power)
        harmonic = median_filter(magnitude, HPSS_KERNEL[0], axis=1) ** 2
        percussive = median_filter(magnitude, HPSS_KERNEL[1], axis=0) ** 2
        total = harmonic + percussive
        share: np.ndarray = np.divide(percussive, total, out=np.full_like(total, 0.5), where=total > 0)
        return share

    @functools.cached_property
    def harmonic_power(self) -> np.ndarray:
        """|STFT|² [freq, spectral frames] weighted by the harmonic share of HPSS, interpolated from the mel
        bins' centre frequencies onto the STFT bins."""
        centres = librosa.mel_frequencies(n_mels=N_MELS + 2, fmax=self.sr / 2.0)[1:-1]
        position = np.interp(self.freqs, centres, np.arange(N_MELS))
        below = np.minimum(position.astype(int), N_MELS - 2)
        weight = (position - below)[:, None].astype(np.float32)
        share = 1.0 - self.percussive_mask
        power: np.ndarray = self.power * (share[below] * (1.0 - weight) + share[below + 1] * weight)
        return power

    def to_frames(self, per_spectral_frame: np.ndarray) -> np.ndarray:
        """Resample rows of [spectral frames, F] (or [spectral frames]) onto the video frame times."""
        values = np.asarray(per_spectral_frame, dtype=np.float64)
        times = librosa.frames_to_time(np.arange(values.shape[0]), sr=self.sr, hop_length=HOP)
        return align_to_frames(values, times, n_frames=self.n_frames, fps=self.fps)


def align_to_frames(values: np.ndarray, times: np.ndarray, *, n_frames: int, fps: float) -> np.ndarray:
    """Rows at `times` (seconds) → one row per video frame, frame i at i / fps: linear between, held at the
    ends; [N] stays 1-D. The one frame-time rule of every feature set (spectral frames, embedding hops)."""
    values = np.asarray(values, dtype=np.float64)
    frame_times = np.arange(n_frames, dtype=np.float64) / fps
    if values.shape[0] == 0:
        return np.zeros((n_frames, *values.shape[1:]))
    times = np.asarray(times, dtype=np.float64)
    if values.ndim == 1:
        return np.asarray(np.interp(frame_times, times, values))
    return np.stack([np.interp(frame_times, times, column) for column in values.T], axis=1)


class EmbeddingSource(Protocol):
    """How one track's embedding sets are computed and reduced (`daemon.audio.embeddings.TrackEmbeddings`):
    this module knows only this shape, and never imports the embeddings module."""

    @property
    def dims(self) -> int: ...  # columns each embedding set is reduced to

    def columns(self, name: str, analysis: Analysis) -> np.ndarray: ...  # [n_frames, dims], not normalised

    def describe(self, sets: Sequence[str]) -> dict[str, Any]: ...  # per embedding set, for reports


@dataclass(frozen=True)
class FeatureSet:
    """A named extractor: raw values [n_frames, len(columns)] from an Analysis."""

    name: str
    columns: tuple[str, ...]
    extract: Callable[[Analysis], np.ndarray]
    version: int = 1  # bump when the extractor's output changes, to invalidate caches and style ids
    raw_columns: frozenset[str] = field(default_factory=frozenset)  # already bounded: not normalised
    kinds: dict[str, str] = field(default_factory=dict)  # column → energy | onset | shape; others "z"
    # (median/MAD z-score and tanh, no gate: the learned embeddings)
    embedding: bool = False  # a learned embedding: `columns` is empty, the style's reduction sets the column count


@dataclass(frozen=True)
class FeatureTimeline:
    """Normalised features for one track: one row per video frame."""

    sets: tuple[str, ...]
    names: tuple[str, ...]
    values: np.ndarray  # [n_frames, len(names)] float32, finite
    fps: float
    onset: np.ndarray  # [n_frames] onset strength in [0, 1] (0 without signal), for the metrics
    normalisation: dict[str, object]  # method and per-column centre/scale, for reports
    channels: np.ndarray | None = None  # [n_frames, 3] pulse, drift (s), level: the encoder's designed
    # channels; None reads as zeros (a timeline made without audio)
    raw: np.ndarray | None = None  # [n_frames, len(names)] values before conditioning (plots; not cached)

    def channel_values(self) -> np.ndarray:
        """`channels`, or zeros when the timeline has none."""
        if self.channels is None:
            return np.zeros((self.n_frames, len(CHANNELS)), dtype=np.float32)
        return self.channels

    @property
    def n_frames(self) -> int:
        return int(self.values.shape[0])

    def summary(self) -> list[dict[str, object]]:
        """Per-column statistics of the normalised values, for `afx features`."""
        return [{"name": n, "min": float(c.min()), "mean": float(c.mean()), "max": float(c.max()),
                 "std": float(c.std())} for n, c in zip(self.names, self.values.T)]


_REGISTRY: dict[str, FeatureSet] = {}


_DEFAULT_EMBEDDINGS: list[Callable[[], EmbeddingSource]] = []  # set by daemon.audio.embeddings on import


def register(feature_set: FeatureSet) -> FeatureSet:
    _REGISTRY[feature_set.name] = feature_set
    return feature_set


def register_default_embeddings(factory: Callable[[], EmbeddingSource]) -> None:
    """What computes embedding sets when a caller gives no EmbeddingSource (the default plan, no cache)."""
    _DEFAULT_EMBEDDINGS[:] = [factory]


def _default_embeddings() -> EmbeddingSource:
    _with_providers()
    if not _DEFAULT_EMBEDDINGS:
        raise FeatureError("no embedding backend is registered", hint=f"one of {PROVIDERS} registers it")
    return _DEFAULT_EMBEDDINGS[0]()


#: modules that register more sets (the learned embeddings), imported on the registry's first lookup: they
#: build on this module, so it names them instead of importing them (no import cycle), as plugins
PROVIDERS = ("daemon.audio.embeddings",)


def _with_providers() -> dict[str, FeatureSet]:
    for module in PROVIDERS:
        importlib.import_module(module)  # registers its sets on first import; a dict lookup afterwards
    return _REGISTRY


def feature_set(name: str) -> FeatureSet:
    try:
        return _REGISTRY[name] if name in _REGISTRY else _with_providers()[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY))
        raise FeatureError(f"unknown feature set '{name}'", key="audio.features",
                           hint=f"known sets: {known}") from None


def available_sets() -> list[str]:
    return sorted(_with_providers())


def set_columns(name: str, *, embedding_dims: int = DEFAULT_EMBEDDING_DIMS) -> tuple[str, ...]:
    """A set's own column names; an embedding set has `embedding_dims` reduced columns e0, e1, …"""
    fs = feature_set(name)
    return tuple(f"e{i}" for i in range(embedding_dims)) if fs.embedding else fs.columns


def columns_for(sets: Sequence[str], *, embedding_dims: int = DEFAULT_EMBEDDING_DIMS) -> tuple[str, ...]:
    """Column names of the concatenated sets, each prefixed by its set."""
    return tuple(f"{s}.{c}" for s in sets for c in set_columns(s, embedding_dims=embedding_dims))


def raw_column_mask(sets: Sequence[str], *, embedding_dims: int = DEFAULT_EMBEDDING_DIMS) -> np.ndarray:
    """True for the columns that are not normalised (bounded already, like time and beat)."""
    return np.array([c in feature_set(s).raw_columns for s in sets
                     for c in set_columns(s, embedding_dims=embedding_dims)], dtype=bool)


def extract_features(y: np.ndarray, *, sr: int, fps: float, sets: Sequence[str],
                     embeddings: EmbeddingSource | None = None, keep_raw: bool = False) -> FeatureTimeline:
    """Compute and condition the requested feature sets for one track.

    `embeddings` (daemon.audio.embeddings.TrackEmbeddings) says how embedding sets are computed and reduced
    (a style's reduction, the track's hash for the cache); None uses the default plan without a cache.
    `keep_raw` keeps the values before conditioning in `raw` (for `afx features --plot`).
    """
    if not sets:
        raise FeatureError("no feature sets requested", key="audio.features", hint="e.g. features = [\"fft\"]")
    # The products here are small: on a busy 2-core machine multi-threaded BLAS spends longer waking its
    # threads than computing (5 s of audio: fft 60-120× real time with 2 threads, 200-235× with one)
    with threadpool_limits(limits=1, user_api="blas"):
        return _extract(y, sr=sr, fps=fps, sets=sets, embeddings=embeddings, keep_raw=keep_raw)


def _extract(y: np.ndarray, *, sr: int, fps: float, sets: Sequence[str], embeddings: EmbeddingSource | None,
             keep_raw: bool) -> FeatureTimeline:
    if embeddings is None and any(feature_set(s).embedding for s in sets):
        embeddings = _default_embeddings()
    analysis = Analysis(y, sr=sr, fps=fps, embeddings=embeddings)
    dims = embeddings.dims if embeddings is not None else DEFAULT_EMBEDDING_DIMS
    presence = analysis.to_frames(analysis.presence)
    raw_blocks, blocks, centres, scales = [], [], [], []
    for name in sets:
        fs = feature_set(name)
        columns = set_columns(name, embedding_dims=dims)
        raw = np.asarray(fs.extract(analysis), dtype=np.float64)
        if raw.shape != (analysis.n_frames, len(columns)):
            raise FeatureError(f"feature set '{name}' returned shape {raw.shape}, expected "
                               f"({analysis.n_frames}, {len(columns)})")
        raw = np.nan_to_num(raw, nan=0.0, posinf=0.0, neginf=0.0)
        raw_blocks.append(raw)
        for j, column in enumerate(columns):
            kind = "raw" if column in fs.raw_columns else fs.kinds.get(column, "z")
            values, centre, scale = condition(raw[:, j], kind=kind, presence=presence, fps=fps)
            blocks.append(values)
            centres.append(centre)
            scales.append(scale)
    values = np.stack(blocks, axis=1).astype(np.float32)
    onset = analysis.to_frames(analysis.onset)
    onset = onset / onset.max() if onset.max() > 0 else np.zeros_like(onset)
    normalisation: dict[str, object] = {"method": NORMALISATION, "centre": centres, "scale": scales}
    if embeddings is not None and any(feature_set(s).embedding for s in sets):
        normalisation["embeddings"] = embeddings.describe(sets)
    return FeatureTimeline(
        sets=tuple(sets), names=columns_for(sets, embedding_dims=dims), values=values, fps=fps,
        onset=onset.astype(np.float32), normalisation=normalisation, channels=designed_channels(analysis),
        raw=np.concatenate(raw_blocks, axis=1).astype(np.float32) if keep_raw else None,
    )


def condition(column: np.ndarray, *, kind: str, presence: np.ndarray, fps: float) -> tuple[np.ndarray, float, float]:
    """One raw column → (conditioned values, centre, scale) by its kind (docs/FEATURES.md)."""
    if kind == "raw":
        return column, 0.0, 1.0
    if kind == "energy":  # dB re full scale → level in [0, 1]
        values, centre, scale = energy_level(column), float(np.percentile(column, LOUD_PERCENTILE)), RANGE_DB
    elif kind == "onset":  # already gated by presence and level: the clear ones, by the track's strong onsets
        values, scale = onset_share(column)
        values, centre = clear_onsets(values), 0.0
    elif kind == "shape":  # z-scored over the frames with signal, faded out where there is none
        present = presence > 0.5
        if present.sum() < 2:
            return np.zeros_like(column), 0.0, 1.0
        _, centre, scale = robust_normalise(column[present])
        values = np.tanh((column - centre) / scale / 2.0) * presence
    else:
        values, centre, scale = robust_normalise(column)
    attack, release = SMOOTHING.get(kind, (0.0, 0.0))
    return envelope(values, fps=fps, attack_s=attack, release_s=release), centre, scale


def onset_share(column: np.ndarray) -> tuple[np.ndarray, float]:
    """An onset strength over the track's strong onsets (its 99th percentile), clipped to [0, 1]; and that
    scale. All zeros when the track has no onsets."""
    scale = float(np.percentile(column, 99.0)) if column.size else 0.0
    if scale <= 1e-8:
        return np.zeros_like(column), scale
    return np.clip(column / scale, 0.0, 1.0), scale


def clear_onsets(share: np.ndarray) -> np.ndarray:
    """Onset shares in [0, 1] → 0 up to ONSET_FLOOR, rising linearly to 1 at a strong onset: weak events
    (hi-hat ticks, reverb tails, noise) leave the picture alone, clear ones still kick it at full strength."""
    return np.clip((share - ONSET_FLOOR) / (1.0 - ONSET_FLOOR), 0.0, 1.0)


def energy_level(db: np.ndarray) -> np.ndarray:
    """dB → [0, 1]: 0 at max(loud − RANGE_DB, ABS_FLOOR_DB), 1 at the loud level (95th percentile) and above.

    Gain-invariant while the track's loud level is RANGE_DB above the floor; quieter tracks fade towards 0.
    """
    loud = float(np.percentile(db, LOUD_PERCENTILE)) if db.size else ABS_FLOOR_DB
    low = max(loud - RANGE_DB, ABS_FLOOR_DB)
    return np.clip((db - low) / RANGE_DB, 0.0, 1.0)


def envelope(values: np.ndarray, *, fps: float, attack_s: float, release_s: float) -> np.ndarray:
    """One-pole attack/release follower: rises with time constant `attack_s`, falls with `release_s`."""
    if attack_s <= 0 and release_s <= 0:
        return values
    up = 1.0 - np.exp(-1.0 / (fps * attack_s)) if attack_s > 0 else 1.0
    down = 1.0 - np.exp(-1.0 / (fps * release_s)) if release_s > 0 else 1.0
    out = np.empty_like(values)
    state = float(values[0]) if values.size else 0.0
    for i, x in enumerate(values.tolist()):
        state += (up if x > state else down) * (x - state)
        out[i] = state
    return out


def median_filter(values: np.ndarray, size: int, *, axis: int) -> np.ndarray:
    """Running median of odd length `size` along `axis`, edges mirrored: scipy.ndimage.median_filter's
    mode="reflect" (what librosa's HPSS uses), in O(log size) per value instead of O(size). Along an axis of
    exactly 2 values (46 ms of audio) the mirroring repeats differently from scipy's; every other length gives
    scipy's values."""
    half = size // 2
    pad = [(0, 0)] * values.ndim
    pad[axis] = (half, half)
    trailing = bottleneck.move_median(np.pad(values, pad, mode="symmetric"), window=size, axis=axis)
    return np.take(trailing, np.arange(size - 1, trailing.shape[axis]), axis=axis)


def robust_normalise(column: np.ndarray) -> tuple[np.ndarray, float, float]:
    """tanh(z/2) of the median/MAD z-score; a constant column becomes zeros."""
    centre = float(np.median(column))
    scale = 1.4826 * float(np.median(np.abs(column - centre)))
    if scale < 1e-8:
        scale = float(np.std(column))
    if scale < 1e-8:
        return np.zeros_like(column), centre, 1.0
    return np.tanh((column - centre) / scale / 2.0), centre, scale


def designed_channels(a: Analysis) -> np.ndarray:
    """[n_frames, 3]: pulse, drift and level (lucid-sonic-dreams' split of pulse and motion).

    pulse: onsets of the percussive part (HPSS on the mel spectrogram), gated and level-weighted, scaled by
    the track's strong onsets, the weak ones (below ONSET_FLOOR) dropped, jumping at once and falling with
    PULSE_RELEASE_S. drift: seconds of full-speed motion so far, the integral of
    MOTION_IDLE + (1 − MOTION_IDLE) · level · (0.6 + 0.4 · tonal change), tonal change being the chroma flux
    of the harmonic part, so it never stops while there is sound and barely moves in silence. level: the
    smoothed loudness.
    """
    gate = a.presence * a.level
    p_mel = librosa.power_to_db(a.mel_power * a.percussive_mask, ref=1.0, amin=AMIN, top_db=TOP_DB)
    p_onset = librosa.onset.onset_strength(S=p_mel, sr=a.sr, hop_length=HOP) * gate
    pulse, _, _ = condition(a.to_frames(p_onset), kind="onset", presence=np.ones(a.n_frames), fps=a.fps)
    pulse = envelope(pulse, fps=a.fps, attack_s=0.0, release_s=PULSE_RELEASE_S)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Trying to estimate tuning from empty frequency set")
        chroma = librosa.feature.chroma_stft(S=a.harmonic_power, sr=a.sr, tuning=0.0)
    chroma = chroma / np.maximum(np.linalg.norm(chroma, axis=0, keepdims=True), 1e-9)
    tonal = np.concatenate([[0.0], 1.0 - np.sum(chroma[:, 1:] * chroma[:, :-1], axis=0)]) * gate
    tonal = envelope(onset_share(a.to_frames(tonal))[0], fps=a.fps, attack_s=SMOOTHING["onset"][0],
                     release_s=SMOOTHING["onset"][1])  # every chord change counts: no ONSET_FLOOR
    tonal = envelope(tonal, fps=a.fps, attack_s=SMOOTHING["shape"][0], release_s=SMOOTHING["shape"][1])
    level = envelope(a.to_frames(a.level), fps=a.fps, attack_s=SMOOTHING["energy"][0],
                     release_s=SMOOTHING["energy"][1])
    speed = MOTION_IDLE + (1.0 - MOTION_IDLE) * level * (0.6 + 0.4 * tonal)
    drift = np.concatenate([[0.0], np.cumsum(speed[:-1])]) / a.fps
    return np.stack([pulse, drift, level], axis=1).astype(np.float32)


# ── the built-in sets ────────────────────────────────────────────────────────────────────────────────────

BANDS_HZ = {"bass": (20.0, 250.0), "mid": (250.0, 4000.0), "treble": (4000.0, 20000.0)}


def _fft(a: Analysis) -> np.ndarray:
    """Band levels and RMS in dB re full scale (a band's share of the frame's power added to the frame's
    RMS level), centroid and rolloff in Hz, the gated onset strength, time, the beat envelope."""
    power, freqs = a.power, a.freqs
    total = np.maximum(power.sum(axis=0), AMIN)
    bands = []
    for lo, hi in BANDS_HZ.values():
        # the bins lo <= f < hi (freqs ascend); treble ends at Nyquist when the analysis rate is below 40 kHz
        band = slice(*np.searchsorted(freqs, (lo, hi)))
        share = np.maximum(power[band].sum(axis=0), AMIN) / total
        bands.append(np.maximum(a.rms_db + 10.0 * np.log10(share), ABS_FLOOR_DB - TOP_DB))
    centroid, rolloff = _centroid_rolloff(np.sqrt(power), freqs)
    per_spectral = np.stack([*bands, centroid, rolloff, a.onset, a.rms_db], axis=1)
    frames = a.to_frames(per_spectral)
    time = a.frame_times / max(a.duration_s, 1e-9)
    beat = _beat_envelope(a)
    bass, mid, treble, centroid_f, rolloff_f, flux, rms_f = frames.T
    return np.stack([bass, mid, treble, centroid_f, rolloff_f, flux, np.clip(time, 0, 1), beat, rms_f], axis=1)


def _centroid_rolloff(magnitude: np.ndarray, freqs: np.ndarray, *, roll_percent: float = 0.85
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Per frame, librosa's spectral centroid (magnitude-weighted mean frequency; 0 for a silent frame) and
    rolloff (the lowest frequency with `roll_percent` of the magnitude at or below it), the same values in a
    quarter of librosa's time (one float32 product and one cumulative sum)."""
    total = magnitude.sum(axis=0)
    weighted = (freqs.astype(magnitude.dtype) @ magnitude).astype(np.float64)
    centroid = np.divide(weighted, total, out=np.zeros(total.shape), where=total > 0)
    cumulative = np.cumsum(magnitude, axis=0)
    rolloff = freqs[np.argmax(cumulative >= roll_percent * cumulative[-1], axis=0)]
    return centroid, rolloff


def _beat_envelope(a: Analysis) -> np.ndarray:
    """1 at each detected beat, decaying exponentially until the next; 0 before the first. The tracker runs on
    the gated onset strength, and a beat where there is no signal (presence < 0.5), or no onset above
    ONSET_FLOOR within BEAT_ONSET_S, is dropped: the tracker keeps its tempo through sparse passages and
    would put beats where nothing is heard."""
    if not np.any(a.onset > 0):
        return np.zeros(a.n_frames)
    _, beats = librosa.beat.beat_track(onset_envelope=a.onset, sr=a.sr, hop_length=HOP, units="time")
    beats = np.sort(np.asarray(beats, dtype=np.float64))
    times = librosa.frames_to_time(np.arange(a.presence.size), sr=a.sr, hop_length=HOP)
    beats = beats[np.interp(beats, times, a.presence) >= 0.5]
    share, _ = onset_share(a.onset)
    lo, hi = np.searchsorted(times, beats - BEAT_ONSET_S), np.searchsorted(times, beats + BEAT_ONSET_S, side="right")
    beats = beats[[bool(share[i:max(j, i + 1)].max(initial=0.0) >= ONSET_FLOOR) for i, j in zip(lo, hi)]]
    if beats.size == 0:
        return np.zeros(a.n_frames)
    idx = np.searchsorted(beats, a.frame_times + 0.5 / a.fps, side="right") - 1
    since = a.frame_times - beats[np.clip(idx, 0, None)]
    env = np.exp(-np.maximum(since, 0.0) / BEAT_DECAY_S)
    env[idx < 0] = 0.0
    return np.asarray(env)


def _mfcc_chroma(a: Analysis) -> np.ndarray:
    mfcc = librosa.feature.mfcc(S=a.mel_db, n_mfcc=13)
    with warnings.catch_warnings():  # silence has no pitched content to tune to: librosa falls back to 0
        warnings.filterwarnings("ignore", message="Trying to estimate tuning from empty frequency set")
        chroma = librosa.feature.chroma_stft(S=a.power, sr=a.sr)
    return a.to_frames(np.concatenate([mfcc, chroma], axis=0).T)


register(FeatureSet(
    name="fft",
    columns=("bass", "mid", "treble", "centroid", "rolloff", "flux", "time", "beat", "rms"),
    extract=_fft,
    version=4,  # 2: level-aware conditioning, gated onsets and beats, attack/release smoothing; 3: the timeline's
    # pulse and drift channels come from HPSS on the mel spectrogram (the columns are unchanged); 4: flux, beat
    # and pulse only count onsets above ONSET_FLOOR
    raw_columns=frozenset({"time", "beat"}),
    kinds={"bass": "energy", "mid": "energy", "treble": "energy", "rms": "energy", "centroid": "shape",
           "rolloff": "shape", "flux": "onset"},
))
register(FeatureSet(
    name="mfcc_chroma",
    columns=tuple(f"mfcc{i}" for i in range(13)) + tuple(
        f"chroma_{n}" for n in ("C", "Cs", "D", "Ds", "E", "F", "Fs", "G", "Gs", "A", "As", "B")),
    extract=_mfcc_chroma,
    version=4,  # 2: gated z-scores (zero without signal) and shape smoothing; 3: mel-HPSS channels, as fft 3;
    # 4: the pulse above ONSET_FLOOR, as fft 4
    kinds={c: "shape" for c in tuple(f"mfcc{i}" for i in range(13)) + tuple(
        f"chroma_{n}" for n in ("C", "Cs", "D", "Ds", "E", "F", "Fs", "G", "Gs", "A", "As", "B"))},
))
