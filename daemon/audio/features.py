"""Feature sets: a registry of named extractors, each giving one row per *video frame*.

A track of duration D at F fps has exactly round(D × F) frames; frame i is shown at time i / F, and every
feature row i describes the audio at that instant (spectral frames are interpolated onto those times).
Values are normalised per track so a quiet and a loud master of the same music give the same timeline:
energies are taken in dB (a gain is then a constant offset) and every normalised column is mapped through
a robust z-score (median, MAD) and tanh into (-1, 1). On silence every value is finite (zero).

This module must not know about styles, CPPNs or the service.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import librosa
import numpy as np

from daemon.errors import FeatureError

N_FFT = 2048
HOP = 512
N_MELS = 128
AMIN = 1e-10  # absolute floor under powers before dB, so silence stays finite
TOP_DB = 80.0  # dB floor relative to the track's own peak: a gain change then shifts every value alike
BEAT_DECAY_S = 0.15  # the beat column falls to 1/e this long after a beat
NORMALISATION = "robust-z-tanh/1"  # median/MAD z-score, then tanh(z/2): bounded, gain-invariant on dB inputs
DEFAULT_EMBEDDING_DIMS = 8  # columns an embedding set (openl3, yamnet, vggish) is reduced to (audio.embedding_dims)


def frame_count(duration_s: float, fps: float) -> int:
    """Frames in a video of the track: round(duration × fps), at least 1."""
    return max(1, int(round(duration_s * fps)))


class Analysis:
    """What extractors share for one track: samples, frame times, and lazily computed spectra."""

    def __init__(self, y: np.ndarray, *, sr: int, fps: float, embeddings: Any = None) -> None:
        self.y = y
        self.sr = sr
        self.fps = fps
        # daemon.audio.embeddings.TrackEmbeddings (or None: the default plan): how embedding sets are computed
        self.embeddings = embeddings
        self.duration_s = y.size / sr
        self.n_frames = frame_count(self.duration_s, fps)
        self.frame_times = np.arange(self.n_frames, dtype=np.float64) / fps

    @functools.cached_property
    def power(self) -> np.ndarray:
        """|STFT|² [freq, spectral frames]."""
        return np.abs(librosa.stft(self.y, n_fft=N_FFT, hop_length=HOP, center=True)) ** 2

    @functools.cached_property
    def freqs(self) -> np.ndarray:
        return librosa.fft_frequencies(sr=self.sr, n_fft=N_FFT)

    @functools.cached_property
    def mel_db(self) -> np.ndarray:
        mel = librosa.feature.melspectrogram(S=self.power, sr=self.sr, n_mels=N_MELS)
        return librosa.power_to_db(mel, ref=1.0, amin=AMIN, top_db=TOP_DB)

    @functools.cached_property
    def onset(self) -> np.ndarray:
        """Onset strength (spectral flux of the log-mel spectrogram) per spectral frame."""
        return librosa.onset.onset_strength(S=self.mel_db, sr=self.sr, hop_length=HOP)

    def to_frames(self, per_spectral_frame: np.ndarray) -> np.ndarray:
        """Resample rows of [spectral frames, F] (or [spectral frames]) onto the video frame times."""
        values = np.asarray(per_spectral_frame, dtype=np.float64)
        times = librosa.frames_to_time(np.arange(values.shape[0]), sr=self.sr, hop_length=HOP)
        if values.ndim == 1:
            return np.interp(self.frame_times, times, values)
        return np.stack([np.interp(self.frame_times, times, col) for col in values.T], axis=1)


@dataclass(frozen=True)
class FeatureSet:
    """A named extractor: raw values [n_frames, len(columns)] from an Analysis."""

    name: str
    columns: tuple[str, ...]
    extract: Callable[[Analysis], np.ndarray]
    version: int = 1  # bump when the extractor's output changes, to invalidate caches and style ids
    raw_columns: frozenset[str] = field(default_factory=frozenset)  # already bounded: not normalised
    description: str = ""
    embedding: bool = False  # a learned embedding: `columns` is empty, the style's reduction sets the column count


@dataclass(frozen=True)
class FeatureTimeline:
    """Normalised features for one track: one row per video frame."""

    sets: tuple[str, ...]
    names: tuple[str, ...]
    values: np.ndarray  # [n_frames, len(names)] float32, finite
    fps: float
    onset: np.ndarray  # [n_frames] onset strength in [0, 1], for the audio-reactivity metric
    normalisation: dict[str, object]  # method and per-column centre/scale, for reports

    @property
    def n_frames(self) -> int:
        return int(self.values.shape[0])

    def summary(self) -> list[dict[str, object]]:
        """Per-column statistics of the normalised values, for `afx features`."""
        return [{"name": n, "min": float(c.min()), "mean": float(c.mean()), "max": float(c.max()),
                 "std": float(c.std())} for n, c in zip(self.names, self.values.T)]


_REGISTRY: dict[str, FeatureSet] = {}


def register(feature_set: FeatureSet) -> FeatureSet:
    _REGISTRY[feature_set.name] = feature_set
    return feature_set


def feature_set(name: str) -> FeatureSet:
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY))
        raise FeatureError(f"unknown feature set '{name}'", key="audio.features",
                           hint=f"known sets: {known}") from None


def available_sets() -> list[str]:
    return sorted(_REGISTRY)


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
                     embeddings: Any = None) -> FeatureTimeline:
    """Compute and normalise the requested feature sets for one track.

    `embeddings` (daemon.audio.embeddings.TrackEmbeddings) says how embedding sets are computed and reduced
    (a style's reduction, the track's hash for the cache); None uses the default plan without a cache.
    """
    if not sets:
        raise FeatureError("no feature sets requested", key="audio.features", hint="e.g. features = [\"fft\"]")
    analysis = Analysis(y, sr=sr, fps=fps, embeddings=embeddings)
    dims = embeddings.plan.dims if embeddings is not None else DEFAULT_EMBEDDING_DIMS
    blocks, centres, scales = [], [], []
    for name in sets:
        fs = feature_set(name)
        columns = set_columns(name, embedding_dims=dims)
        raw = np.asarray(fs.extract(analysis), dtype=np.float64)
        if raw.shape != (analysis.n_frames, len(columns)):
            raise FeatureError(f"feature set '{name}' returned shape {raw.shape}, expected "
                               f"({analysis.n_frames}, {len(columns)})")
        raw = np.nan_to_num(raw, nan=0.0, posinf=0.0, neginf=0.0)
        for j, column in enumerate(columns):
            if column in fs.raw_columns:
                blocks.append(raw[:, j])
                centres.append(0.0)
                scales.append(1.0)
            else:
                values, centre, scale = robust_normalise(raw[:, j])
                blocks.append(values)
                centres.append(centre)
                scales.append(scale)
    values = np.stack(blocks, axis=1).astype(np.float32)
    onset = analysis.to_frames(analysis.onset)
    onset = onset / onset.max() if onset.max() > 0 else np.zeros_like(onset)
    normalisation: dict[str, object] = {"method": NORMALISATION, "centre": centres, "scale": scales}
    if any(feature_set(s).embedding for s in sets):
        from daemon.audio.embeddings import describe_reductions

        normalisation["embeddings"] = describe_reductions(sets, embeddings)
    return FeatureTimeline(
        sets=tuple(sets), names=columns_for(sets, embedding_dims=dims), values=values, fps=fps,
        onset=onset.astype(np.float32), normalisation=normalisation,
    )


def robust_normalise(column: np.ndarray) -> tuple[np.ndarray, float, float]:
    """tanh(z/2) of the median/MAD z-score; a constant column becomes zeros."""
    centre = float(np.median(column))
    scale = 1.4826 * float(np.median(np.abs(column - centre)))
    if scale < 1e-8:
        scale = float(np.std(column))
    if scale < 1e-8:
        return np.zeros_like(column), centre, 1.0
    return np.tanh((column - centre) / scale / 2.0), centre, scale


# ── the built-in sets ────────────────────────────────────────────────────────────────────────────────────

BANDS_HZ = {"bass": (20.0, 250.0), "mid": (250.0, 4000.0), "treble": (4000.0, 20000.0)}


def _db(x: np.ndarray) -> np.ndarray:
    """Power in dB, floored TOP_DB below the series' own peak (an absolute floor would not be gain-invariant)."""
    db = 10.0 * np.log10(np.maximum(x, AMIN))
    return np.maximum(db, db.max() - TOP_DB)


def _fft(a: Analysis) -> np.ndarray:
    power, freqs = a.power, a.freqs
    bands = []
    for lo, hi in BANDS_HZ.values():
        # treble ends at Nyquist when the analysis rate is below 40 kHz
        mask = (freqs >= lo) & (freqs < hi)
        bands.append(_db(power[mask].sum(axis=0)))
    magnitude = np.sqrt(power)
    centroid = librosa.feature.spectral_centroid(S=magnitude, sr=a.sr)[0]
    rolloff = librosa.feature.spectral_rolloff(S=magnitude, sr=a.sr, roll_percent=0.85)[0]
    rms = _db(librosa.feature.rms(S=magnitude, frame_length=N_FFT)[0] ** 2)
    per_spectral = np.stack([*bands, centroid, rolloff, a.onset, rms], axis=1)
    frames = a.to_frames(per_spectral)
    time = a.frame_times / max(a.duration_s, 1e-9)
    beat = _beat_envelope(a)
    bass, mid, treble, centroid_f, rolloff_f, flux, rms_f = frames.T
    return np.stack([bass, mid, treble, centroid_f, rolloff_f, flux, np.clip(time, 0, 1), beat, rms_f], axis=1)


def _beat_envelope(a: Analysis) -> np.ndarray:
    """1 at each detected beat, decaying exponentially until the next; 0 before the first."""
    if not np.any(a.onset > 0):
        return np.zeros(a.n_frames)
    _, beats = librosa.beat.beat_track(onset_envelope=a.onset, sr=a.sr, hop_length=HOP, units="time")
    beats = np.sort(np.asarray(beats, dtype=np.float64))
    if beats.size == 0:
        return np.zeros(a.n_frames)
    idx = np.searchsorted(beats, a.frame_times + 0.5 / a.fps, side="right") - 1
    since = a.frame_times - beats[np.clip(idx, 0, None)]
    env = np.exp(-np.maximum(since, 0.0) / BEAT_DECAY_S)
    env[idx < 0] = 0.0
    return env


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
    raw_columns=frozenset({"time", "beat"}),
    description="band energies (dB), spectral centroid/rolloff/flux, time 0→1, beat envelope, RMS (dB)",
))
register(FeatureSet(
    name="mfcc_chroma",
    columns=tuple(f"mfcc{i}" for i in range(13)) + tuple(
        f"chroma_{n}" for n in ("C", "Cs", "D", "Ds", "E", "F", "Fs", "G", "Gs", "A", "As", "B")),
    extract=_mfcc_chroma,
    description="13 MFCCs of the log-mel spectrogram and 12 chroma bins",
))

# The learned embeddings (openl3, yamnet, vggish) register themselves; their module needs the names above.
from daemon.audio import embeddings as _embeddings  # noqa: E402,F401
