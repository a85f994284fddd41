"""Shared fixtures: audio the tests synthesise themselves (never the corpus), tiny sizes, seeded RNGs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.io import wavfile

SR = 22050


def synth(seconds: float, *, sr: int = SR, kind: str = "music", gain: float = 0.5, seed: int = 0) -> np.ndarray:
    """Deterministic test audio: 'music' (a chord with clicks at 2 Hz), 'silence', 'tone', 'clicks'."""
    n = int(round(seconds * sr))
    t = np.arange(n) / sr
    rng = np.random.default_rng(seed)
    if kind == "silence":
        return np.zeros(n, dtype=np.float32)
    if kind == "tone":
        y = np.sin(2 * np.pi * 440 * t)
    elif kind == "clicks":
        y = np.zeros(n)
        for start in np.arange(0.25, seconds, 0.5):
            i = int(start * sr)
            y[i:i + 200] += rng.standard_normal(min(200, n - i)) * np.exp(-np.arange(min(200, n - i)) / 40)
    else:
        y = 0.3 * np.sin(2 * np.pi * 110 * t) + 0.2 * np.sin(2 * np.pi * 440 * t) + 0.1 * np.sin(2 * np.pi * 3300 * t)
        y *= 0.6 + 0.4 * np.sin(2 * np.pi * 0.5 * t)
        for start in np.arange(0.25, seconds, 0.5):
            i = int(start * sr)
            k = min(600, n - i)
            y[i:i + k] += rng.standard_normal(k) * np.exp(-np.arange(k) / 120)
    y = y / max(np.max(np.abs(y)), 1e-9) * gain
    return y.astype(np.float32)


def write_wav(path: Path, samples: np.ndarray, *, sr: int = SR) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    wavfile.write(path, sr, samples.astype(np.float32))
    return path


@pytest.fixture
def make_wav(tmp_path: Path):
    """make_wav(name, seconds, kind=..., gain=...) → path of a float32 WAV in tmp_path."""
    def make(name: str = "track.wav", seconds: float = 3.0, **kwargs) -> Path:
        return write_wav(tmp_path / name, synth(seconds, **kwargs))
    return make


@pytest.fixture
def music_wav(make_wav) -> Path:
    return make_wav("music.wav", 3.0)
