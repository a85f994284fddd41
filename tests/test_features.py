"""Feature timelines: row count and alignment, finiteness on silence, per-track normalisation, the cache."""

from __future__ import annotations

import numpy as np
import pytest

from daemon.audio.cache import FeatureCache, cache_key
from daemon.audio.decode import decode_audio
from daemon.config import Limits
from daemon.audio.features import extract_features, frame_count
from tests.conftest import SR, synth


@pytest.mark.parametrize("seconds,fps", [(3.0, 30), (2.51, 24), (1.0, 25), (4.37, 60)])
def test_one_row_per_video_frame(seconds, fps):
    timeline = extract_features(synth(seconds), sr=SR, fps=fps, sets=["fft", "mfcc_chroma"])
    assert timeline.n_frames == round(seconds * fps) == frame_count(seconds, fps)
    assert timeline.values.shape == (timeline.n_frames, 9 + 25)
    assert timeline.onset.shape == (timeline.n_frames,)
    assert timeline.names[:3] == ("fft.bass", "fft.mid", "fft.treble")


def test_rows_are_aligned_to_frame_times():
    """Clicks every 0.5 s from 0.25 s: the flux peaks fall on the frames shown at those instants."""
    fps = 30
    timeline = extract_features(synth(4.0, kind="clicks"), sr=SR, fps=fps, sets=["fft"])
    flux = timeline.values[:, timeline.names.index("fft.flux")]
    for click in np.arange(0.25, 3.9, 0.5):
        frame = int(round(click * fps))
        window = flux[max(frame - 6, 0):frame + 7]
        peak = max(frame - 6, 0) + int(np.argmax(window))
        assert abs(peak - frame) <= 2, f"flux peak for the click at {click} s is at frame {peak}, not {frame}"
    time = timeline.values[:, timeline.names.index("fft.time")]
    assert time[0] == 0.0 and 0.98 < time[-1] <= 1.0 and np.all(np.diff(time) > 0)


def test_silence_gives_finite_values():
    timeline = extract_features(synth(2.0, kind="silence"), sr=SR, fps=30, sets=["fft", "mfcc_chroma"])
    assert np.all(np.isfinite(timeline.values)) and np.all(np.isfinite(timeline.onset))
    energy = timeline.values[:, [timeline.names.index(n) for n in ("fft.bass", "fft.rms", "fft.beat")]]
    assert np.all(energy == 0.0)


def test_normalisation_makes_quiet_and_loud_masters_alike():
    """A master 11 dB quieter keeps every band's loud level RANGE_DB above the absolute floor: the same timeline."""
    loud = extract_features(synth(3.0, gain=0.9), sr=SR, fps=30, sets=["fft", "mfcc_chroma"])
    quiet = extract_features(synth(3.0, gain=0.25), sr=SR, fps=30, sets=["fft", "mfcc_chroma"])
    for name in ("fft.bass", "fft.mid", "fft.rms", "fft.centroid", "fft.flux"):
        i = loud.names.index(name)
        assert np.max(np.abs(loud.values[:, i] - quiet.values[:, i])) < 0.05, name
    assert np.all(np.abs(loud.values) <= 1.0)
    raw_spread = np.ptp(loud.values, axis=0)
    # the chord swells by 14 dB: a third of the RANGE_DB = 40 dB level scale
    assert np.all(raw_spread[[loud.names.index("fft.bass"), loud.names.index("fft.rms")]] > 0.25)


def test_decoding_scales_samples_above_full_scale(make_wav):
    path = make_wav("hot.wav", 2.0, gain=1.6)
    track, samples = decode_audio(path)
    assert np.max(np.abs(samples)) == pytest.approx(1.0, rel=1e-4)
    # scaled by the peak, not clipped: the waveform keeps its shape
    np.testing.assert_allclose(samples, synth(2.0, gain=1.6)[:samples.size] / 1.6, atol=2e-3)
    assert track.duration_s == pytest.approx(2.0, abs=1e-3)
    assert len(track.sha256) == 64


def test_cache_hits_by_content_and_settings(tmp_path, make_wav):
    path = make_wav("a.wav", 2.0)
    track, samples = decode_audio(path, limits=Limits())
    cache = FeatureCache(tmp_path / "cache")
    calls = []

    def compute():
        calls.append(1)
        return extract_features(samples, sr=SR, fps=30, sets=["fft"])

    key = cache_key(track.sha256, sets=["fft"], fps=30, sample_rate=SR)
    first, hit1 = cache.get_or_compute(key, compute)
    second, hit2 = cache.get_or_compute(key, compute)
    assert (hit1, hit2) == (False, True) and len(calls) == 1
    np.testing.assert_array_equal(first.values, second.values)
    assert second.names == first.names and second.normalisation == first.normalisation
    assert cache_key(track.sha256, sets=["fft"], fps=24, sample_rate=SR) != key
    assert cache_key(track.sha256, sets=["fft", "mfcc_chroma"], fps=30, sample_rate=SR) != key
    entry = tmp_path / "cache" / f"{key}.npz"
    whole = entry.read_bytes()
    entry.write_bytes(b"damaged")
    _, hit3 = cache.get_or_compute(key, compute)
    assert hit3 is False and len(calls) == 2
    entry.write_bytes(whole[: len(whole) // 2])  # truncated mid-write on a filesystem without atomic rename
    _, hit4 = cache.get_or_compute(key, compute)
    assert hit4 is False and len(calls) == 3


def test_near_silence_stays_near_zero():
    """The same music 90 dB down is below the absolute floor: no energy, shape, onset, beat, pulse or drift."""
    faint = extract_features(synth(3.0, gain=0.9) * 10 ** (-90 / 20), sr=SR, fps=30, sets=["fft", "mfcc_chroma"])
    moving = [i for i, n in enumerate(faint.names) if n != "fft.time"]
    assert np.max(np.abs(faint.values[:, moving])) < 1e-6
    assert faint.onset.max() == 0.0
    pulse, drift, level = faint.channels.T
    assert pulse.max() == 0.0 and level.max() == 0.0
    loud = extract_features(synth(3.0, gain=0.9), sr=SR, fps=30, sets=["fft"])
    assert drift[-1] < 0.1 * loud.channels[-1, 1], "drift in silence is at most the idle share of the loud drift"


def test_quiet_passage_stays_below_loud_passage():
    """A passage 30 dB down inside a loud track keeps lower energies, pulse and level than the loud part."""
    y = synth(6.0, gain=0.9)
    y[: 3 * SR] *= 10 ** (-30 / 20)
    timeline = extract_features(y, sr=SR, fps=30, sets=["fft"])
    quiet, loud = slice(15, 80), slice(105, 170)  # away from the step and its release
    for name in ("fft.bass", "fft.mid", "fft.treble", "fft.rms", "fft.flux"):
        column = timeline.values[:, timeline.names.index(name)]
        assert column[quiet].mean() < 0.6 * column[loud].mean(), name
    pulse, _, level = timeline.channels.T
    assert level[quiet].max() < level[loud].min()
    assert pulse[quiet].max() < pulse[loud].max()


def test_onsets_jump_and_tonal_columns_glide():
    """Attack/release: the flux reaches a click's peak at once and falls within ~0.3 s; a step in pitch
    moves the centroid over several frames, not one."""
    timeline = extract_features(synth(4.0, kind="clicks"), sr=SR, fps=30, sets=["fft"])
    flux = timeline.values[:, timeline.names.index("fft.flux")]
    click = int(round(1.25 * 30))
    peak = click - 2 + int(np.argmax(flux[click - 2:click + 3]))
    # a click between two frame times is sampled below its peak, and ONSET_FLOOR rescales what is left
    assert flux[peak - 1] < 0.1 < 0.4 < flux[peak] and flux[peak + 10] < 0.2 * flux[peak]
    t = np.arange(3 * SR) / SR
    y = np.where(t < 1.5, np.sin(2 * np.pi * 220 * t), np.sin(2 * np.pi * 3520 * t)).astype(np.float32) * 0.5
    centroid = extract_features(y, sr=SR, fps=30, sets=["fft"]).values[:, 3]
    step = np.abs(np.diff(centroid[40:60]))
    assert step.max() < 0.5 * (centroid[80] - centroid[20]), "the centroid glides rather than jumps"


# ── the fast paths (docs/PERFORMANCE.md: fft features ≥ 200× real time) ────────────────────────────────────

@pytest.mark.parametrize("size,axis", [(31, 1), (13, 0), (3, 1), (1, 0)])
def test_running_median_is_scipys_reflecting_median_filter(size, axis):
    from scipy.ndimage import median_filter as scipy_median

    from daemon.audio.features import median_filter

    values = np.random.default_rng(size).random((40, 57)).astype(np.float32)
    values[:, 20:25] = 0.0  # ties and a flat stretch
    kernel = [1, 1]
    kernel[axis] = size
    expected = scipy_median(values, size=tuple(kernel), mode="reflect")
    np.testing.assert_array_equal(median_filter(values, size, axis=axis), expected)


def test_centroid_and_rolloff_are_librosas():
    import librosa

    from daemon.audio.features import _centroid_rolloff

    y = synth(3.0)
    y[SR:2 * SR] = 0.0  # silent frames: centroid 0, rolloff at the lowest bin, as librosa gives
    magnitude = np.abs(librosa.stft(y, n_fft=2048, hop_length=512))
    freqs = librosa.fft_frequencies(sr=SR, n_fft=2048)
    centroid, rolloff = _centroid_rolloff(magnitude, freqs)
    np.testing.assert_allclose(centroid, librosa.feature.spectral_centroid(S=magnitude, sr=SR)[0], rtol=1e-5,
                               atol=1e-3)
    np.testing.assert_array_equal(rolloff, librosa.feature.spectral_rolloff(S=magnitude, sr=SR, roll_percent=0.85)[0])


def test_hpss_runs_on_the_mel_spectrogram(monkeypatch):
    """The pulse's median filters see N_MELS rows, not the 1025 STFT bins (8× the work, and a 130× slower
    extraction with scipy's filter before this change); the pulse still peaks on the percussive hits."""
    from daemon.audio import features

    shapes = []

    def recording(values, size, *, axis):
        shapes.append(values.shape)
        return median_filter(values, size, axis=axis)

    median_filter = features.median_filter
    monkeypatch.setattr(features, "median_filter", recording)
    timeline = extract_features(synth(4.0), sr=SR, fps=30, sets=["fft"])
    assert len(shapes) == 2 and all(rows == features.N_MELS for rows, _ in shapes)
    pulse = timeline.channels[:, 0]
    hits = [int(round(t * 30)) for t in np.arange(0.75, 3.9, 0.5)]  # the first one is the start of the chord
    assert min(pulse[h - 1:h + 2].max() for h in hits) > 0.5, "a hit jumps the pulse"
    assert max(pulse[h - 2] for h in hits) < 0.15, "and it has fallen back before the next one"


# ── clear onsets (ONSET_FLOOR): weak events leave the picture alone ───────────────────────────────────────

def hits_then_ticks(seconds: float = 8.0, faint: float = 0.01) -> np.ndarray:
    """A hum with a noise hit every 0.25 s: full strength in the first half, `faint` × in the second."""
    rng = np.random.default_rng(3)
    t = np.arange(int(seconds * SR)) / SR
    y = 0.15 * np.sin(2 * np.pi * 220 * t)
    for start in np.arange(0.25, seconds, 0.25):
        i = int(start * SR)
        y[i:i + 300] += (1.0 if start < seconds / 2 else faint) * rng.standard_normal(300) * np.exp(-np.arange(300) / 60)
    return (y / np.abs(y).max() * 0.5).astype(np.float32)


def test_clear_onsets_drop_what_is_under_the_floor_and_keep_strong_onsets_whole():
    from daemon.audio.features import ONSET_FLOOR, clear_onsets

    share = np.array([0.0, 0.5 * ONSET_FLOOR, ONSET_FLOOR, (1 + ONSET_FLOOR) / 2, 1.0])
    np.testing.assert_allclose(clear_onsets(share), [0.0, 0.0, 0.0, 0.5, 1.0], atol=1e-12)


def test_faint_ticks_barely_move_the_flux_and_pulse_that_strong_hits_fill(monkeypatch):
    """The faint half's ticks reach a third of the track's strong onsets: without the floor they move the
    flux and pulse that far each time; with it, an eighth (flux) and a third (pulse) as far. The strong hits
    still reach 1."""
    from daemon.audio import features

    def halves(timeline):
        flux, pulse = timeline.values[:, timeline.names.index("fft.flux")], timeline.channels[:, 0]
        loud, faint = slice(10, 115), slice(125, 235)
        return flux[loud].max(), flux[faint].max(), pulse[loud].max(), pulse[faint].max()

    y = hits_then_ticks()
    floored = halves(extract_features(y, sr=SR, fps=30, sets=["fft"]))
    monkeypatch.setattr(features, "ONSET_FLOOR", 0.0)
    unfloored = halves(extract_features(y, sr=SR, fps=30, sets=["fft"]))
    assert floored[0] > 0.95 and floored[2] > 0.95, "a strong hit still fills the flux and the pulse"
    assert unfloored[1] > 0.25 and unfloored[3] > 0.25, "without the floor the faint ticks move them"
    assert floored[1] < 0.3 * unfloored[1] and floored[3] < 0.4 * unfloored[3], "with it they barely do"


BEAT = 7  # fft.beat's column


def test_a_tracked_beat_with_no_clear_onset_near_it_is_dropped(monkeypatch):
    """The beat tracker keeps its tempo through a passage with nothing in it: those beats are dropped, the ones
    on the hits stay."""
    import librosa

    from daemon.audio import features

    y = hits_then_ticks(faint=0.0)  # hits for 4 s, then the hum alone
    beats = np.arange(0.25, 7.9, 0.5)
    monkeypatch.setattr(librosa.beat, "beat_track", lambda **_: (120.0, beats))
    beat = extract_features(y, sr=SR, fps=30, sets=["fft"]).values[:, BEAT]
    starts = np.flatnonzero(np.diff(beat, prepend=0.0) > 0.5) / 30
    kept = beats[beats < 4.0]
    assert starts.size == kept.size and np.all(np.abs(starts - kept) <= 1 / 30 + 1e-9), starts
    monkeypatch.setattr(features, "ONSET_FLOOR", 0.0)  # every tracked beat in the signal counts again
    beat = extract_features(y, sr=SR, fps=30, sets=["fft"]).values[:, BEAT]
    assert np.flatnonzero(np.diff(beat, prepend=0.0) > 0.5).size == beats.size
