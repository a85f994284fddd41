"""Embedding feature sets (openl3, yamnet, vggish): child-process backends, frame alignment, cache, reduction.

YAMNet and VGGish: the real models cannot be downloaded here, so tests/fixtures_tf.py builds tiny SavedModels
with their signatures (16 kHz waveform in; scores [N, 521] + embeddings [N, 1024] + log-mel out, or [N, 128])
and the child process loads them through tensorflow_hub from a local folder, exactly as it would a copied-in
real model. These tests skip where TensorFlow or tensorflow_hub is missing (scripts/bootstrap.sh installs them
unless AFX_TEST_TF=0).

OpenL3: the package cannot be installed here (its install downloads weights). The project's side is tested
against openl3's documented API — `get_audio_embedding(audio, sr, model=, input_repr=, content_type=,
embedding_size=, hop_size=, center=, verbose=) → (embeddings [N, D], timestamps [N])` and
`models.load_audio_embedding_model(input_repr=, content_type=, embedding_size=)` — through a fake `openl3`
module put on the child's PYTHONPATH. `test_real_openl3` runs against the real package wherever it is installed.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from daemon.audio import embeddings as emb
from daemon.audio.cache import FeatureCache
from daemon.audio.decode import decode_audio
from daemon.audio.features import frame_count, robust_normalise
from daemon.config import Embeddings
from daemon.errors import AfxError, FeatureError, SpecError, StyleError
from daemon.pipeline import AudioContext, track_features
from tests.conftest import synth, write_wav

HAS_TF = all(importlib.util.find_spec(m) is not None for m in ("tensorflow", "tensorflow_hub"))
needs_tf = pytest.mark.skipif(not HAS_TF, reason="TensorFlow + tensorflow_hub not installed (AFX_TEST_TF=0?)")
PROMPT = "soft glowing waves"
SR = 22050


# ── fixtures ─────────────────────────────────────────────────────────────────────────────────────────────

@pytest.fixture(scope="module")
def tf_models(tmp_path_factory) -> Path:
    """yamnet/, vggish/ and broken/ SavedModel folders, built in a child process (no TensorFlow in this one)."""
    if not HAS_TF:
        pytest.skip("TensorFlow + tensorflow_hub not installed")
    out = tmp_path_factory.mktemp("tf-models")
    script = Path(__file__).with_name("fixtures_tf.py")
    subprocess.run([sys.executable, str(script), str(out)], check=True, capture_output=True,
                   env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}, timeout=300)
    return out


@pytest.fixture
def hub_env(tf_models, monkeypatch) -> Path:
    monkeypatch.setenv("AFX_YAMNET_HANDLE", str(tf_models / "yamnet"))
    monkeypatch.setenv("AFX_VGGISH_HANDLE", str(tf_models / "vggish"))
    return tf_models


@pytest.fixture(scope="module")
def song(tmp_path_factory) -> Path:
    """A 3.3 s track shared by the tests (its raw embeddings stay in the in-process memo between them)."""
    return write_wav(tmp_path_factory.mktemp("audio") / "song.wav", synth(3.3, seed=1))


FAKE_OPENL3 = '''
"""A stand-in for the openl3 package with its documented API (tests/test_embeddings.py)."""
import json, os, time
import numpy as np
from . import models

def get_audio_embedding(audio, sr, model=None, input_repr=None, content_type="music", embedding_size=6144,
                        center=True, hop_size=0.1, batch_size=32, frontend="kapre", verbose=True):
    if os.environ.get("FAKE_OPENL3_CRASH"):
        os.abort()
    time.sleep(float(os.environ.get("FAKE_OPENL3_SLEEP", "0")))
    log = os.environ.get("FAKE_OPENL3_LOG")
    if log:
        with open(log, "a") as f:
            f.write(json.dumps({"call": "get_audio_embedding", "sr": sr, "n": len(audio), "model": model,
                                "input_repr": input_repr, "content_type": content_type,
                                "embedding_size": embedding_size, "hop_size": hop_size, "center": center}) + "\\n")
    n = 1 + int(len(audio) / sr / hop_size)
    ts = np.arange(n) * hop_size
    hop = int(sr * hop_size)
    energy = np.array([np.log(np.mean(np.square(audio[i * hop:i * hop + sr])) + 1e-6) for i in range(n)])
    basis = np.random.default_rng(0).standard_normal((2, 512))
    return (np.stack([energy, np.sin(ts)], axis=1) @ basis).astype(np.float32), ts
'''
FAKE_OPENL3_MODELS = '''
import json, os

def load_audio_embedding_model(input_repr, content_type, embedding_size, frontend="kapre"):
    log = os.environ.get("FAKE_OPENL3_LOG")
    if log:
        with open(log, "a") as f:
            f.write(json.dumps({"call": "load", "input_repr": input_repr, "content_type": content_type,
                                "embedding_size": embedding_size}) + "\\n")
    return "fake-model"
'''


@pytest.fixture
def fake_openl3(tmp_path, monkeypatch) -> Path:
    """A fake `openl3` importable here (for spec checks) and in the child (PYTHONPATH); returns its call log."""
    if importlib.util.find_spec("openl3") is not None and "fake" not in str(importlib.util.find_spec("openl3").origin):
        pytest.skip("the real openl3 is installed: test_real_openl3 covers it")
    root = tmp_path / "fake_site"
    (root / "openl3").mkdir(parents=True)
    (root / "openl3" / "__init__.py").write_text(textwrap.dedent(FAKE_OPENL3))
    (root / "openl3" / "models.py").write_text(textwrap.dedent(FAKE_OPENL3_MODELS))
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]))
    log = tmp_path / "openl3-calls.jsonl"
    monkeypatch.setenv("FAKE_OPENL3_LOG", str(log))
    emb.forget_memo()
    return log


@pytest.fixture
def worker_runs(monkeypatch) -> list[str]:
    """Counts child-process runs (one per batch of cache misses)."""
    runs: list[str] = []
    real = emb.run_backend

    def counting(b, tracks):
        runs.append(b.name)
        return real(b, tracks)

    monkeypatch.setattr(emb, "run_backend", counting)
    return runs


def _calls(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def _audio(path: Path) -> emb.TrackAudio:
    track, samples = decode_audio(path, sample_rate=SR)
    return emb.TrackAudio(samples, SR, track.sha256, path.name)


# ── alignment and reduction (no TensorFlow) ──────────────────────────────────────────────────────────────

def test_align_to_frames_interpolates_onto_frame_times_and_holds_the_ends():
    values = np.array([[0.0, 10.0], [2.0, 30.0]])
    aligned = emb.align_to_frames(values, np.array([0.5, 1.5]), n_frames=5, fps=2)
    np.testing.assert_allclose(aligned[:, 0], [0, 0, 1, 2, 2])
    np.testing.assert_allclose(aligned[:, 1], [10, 10, 20, 30, 30])
    assert emb.align_to_frames(np.zeros((0, 3)), np.zeros(0), n_frames=4, fps=10).shape == (4, 3)
    np.testing.assert_allclose(emb.hub_frame_times(3, hop_s=0.48, window_s=0.96), [0.48, 0.96, 1.44])


def test_random_projection_is_seeded_orthonormal_and_balances_yamnet_blocks():
    a = emb.random_projection("yamnet", dims=8)
    b = emb.random_projection("yamnet", dims=8, seed=1)
    assert a.components.shape == (8, 1545) and a.method == "random-projection"
    np.testing.assert_allclose(a.components @ a.components.T, np.eye(8), atol=1e-5)
    assert a.digest() == emb.random_projection.__wrapped__("yamnet", dims=8).digest(), "same seed, same map"
    assert a.digest() != b.digest()
    np.testing.assert_allclose(a.scale[:521], 1 / math.sqrt(521), rtol=1e-6)
    np.testing.assert_allclose(a.scale[521:], 1 / math.sqrt(1024), rtol=1e-6)
    with pytest.raises(FeatureError, match="cannot reduce vggish's 128 dimensions to 129"):
        emb.random_projection("vggish", dims=129)


def test_pca_finds_the_dominant_direction_and_completes_short_tracks():
    rng = np.random.default_rng(0)
    direction = rng.standard_normal(128)
    direction /= np.linalg.norm(direction)
    frames = 5.0 + rng.standard_normal((400, 1)) * 3.0 * direction + 0.01 * rng.standard_normal((400, 128))
    r = emb.fit_reduction("vggish", [frames[:200], frames[200:]], dims=4)
    assert r.method == "pca" and r.info["tracks"] == 2 and r.info["fitted_frames"] == 400
    assert abs(float(r.components[0] @ direction)) > 0.99
    assert r.info["explained_variance"][0] > 0.9
    np.testing.assert_allclose(r.components @ r.components.T, np.eye(4), atol=1e-5)
    reduced = r.apply(frames.astype(np.float32))
    assert reduced.shape == (400, 4) and abs(reduced[:, 0].mean()) < 1e-3  # centred on the fitted mean
    short = emb.fit_reduction("vggish", [frames[:3]], dims=8)  # 3 frames: 2 directions, 6 random ones
    assert short.info["random_components"] == 6
    np.testing.assert_allclose(short.components @ short.components.T, np.eye(8), atol=1e-5)
    assert emb.fit_reduction("vggish", [], dims=8).method == "random-projection"


def test_reduction_is_stored_in_the_style_folder_and_checked(tmp_path):
    from daemon.style import FeatureDescription, Style, random_style

    style = random_style(3, sets=("fft", "vggish"))
    assert style.features.columns[-8:] == tuple(f"vggish.e{i}" for i in range(8))
    fitted = emb.fit_reduction("vggish", [np.random.default_rng(1).standard_normal((50, 128))], dims=8)
    style.features = FeatureDescription.for_sets(("fft", "vggish"), reduction={"vggish": fitted})
    folder = style.save(tmp_path / "style")
    meta = json.loads((folder / "style.json").read_text())["features"]["reduction"]["vggish"]
    assert meta["method"] == "pca" and meta["dims"] == 8 and meta["digest"] == fitted.digest()
    loaded = Style.load(folder)
    assert loaded.features.reduction["vggish"].digest() == fitted.digest()
    assert emb.plan_for_style(loaded).reduction("vggish") is loaded.features.reduction["vggish"]
    path = folder / emb.REDUCTION_FILE
    data = bytearray(path.read_bytes())
    data[-8:] = b"\x7f" * 8  # flip bytes inside the last array
    path.write_bytes(bytes(data))
    with pytest.raises(StyleError, match="reduction.safetensors is damaged"):
        Style.load(folder)
    path.unlink()
    with pytest.raises(StyleError, match="reduction.safetensors is missing"):
        Style.load(folder)


# ── spec checks ──────────────────────────────────────────────────────────────────────────────────────────

@pytest.mark.skipif(importlib.util.find_spec("openl3") is not None, reason="openl3 is installed here")
def test_spec_check_fails_with_the_pip_command_when_openl3_is_missing(tmp_path, monkeypatch, capsys):
    from daemon.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("AFX_CONFIG", raising=False)
    spec = tmp_path / "specs" / "semantic.toml"
    spec.parent.mkdir()
    spec.write_text('prompts = ["x"]\n[audio]\nfeatures = ["fft", "openl3"]\n')
    assert main(["spec", "check", str(spec)]) == 2
    out = capsys.readouterr().out
    assert "[audio.features[1]]: feature set 'openl3' needs openl3, which is not installed" in out
    assert "pip install 'audio-feature-explorer[openl3]'" in out


def test_spec_check_names_the_tfhub_extra_and_bounds_embedding_dims(monkeypatch):
    from daemon.spec import parse_spec

    monkeypatch.setattr(emb, "missing_packages", lambda name: ["tensorflow_hub"])
    with pytest.raises(SpecError) as e:
        parse_spec({"prompts": ["x"], "audio": {"features": ["fft", "yamnet"]}}, path=None, name="s")
    assert "pip install 'audio-feature-explorer[tfhub]'" in e.value.user_line()
    monkeypatch.setattr(emb, "missing_packages", lambda name: [])
    with pytest.raises(SpecError, match="200 is more than vggish's 128 dimensions"):
        parse_spec({"prompts": ["x"], "audio": {"features": ["vggish"], "embedding_dims": 200}}, path=None, name="s")
    spec = parse_spec({"prompts": ["x"], "audio": {"features": ["fft", "yamnet"], "embedding_dims": 4}},
                      path=None, name="s")
    assert spec.audio.embedding_dims == 4


# ── OpenL3 through the fake package (its documented API) ─────────────────────────────────────────────────

def test_openl3_calls_the_documented_api_in_the_child(fake_openl3, song, monkeypatch):
    monkeypatch.setenv("AFX_OPENL3_HOP_S", "0.25")
    raw = emb.raw_embedding("openl3", _audio(song))
    calls = _calls(fake_openl3)
    assert [c["call"] for c in calls] == ["load", "get_audio_embedding"]
    assert calls[0] == {"call": "load", "input_repr": "mel256", "content_type": "music", "embedding_size": 512}
    run = calls[1]
    assert (run["sr"], run["model"], run["hop_size"], run["center"]) == (48000, "fake-model", 0.25, True)
    assert (run["input_repr"], run["content_type"], run["embedding_size"]) == ("mel256", "music", 512)
    assert abs(run["n"] - 3.3 * 48000) < 10, "resampled to 48 kHz before the child"
    assert raw.values.shape == (1 + int(3.3 / 0.25), 512)
    np.testing.assert_allclose(raw.times, np.arange(raw.values.shape[0]) * 0.25)
    assert "tensorflow" not in sys.modules, "TensorFlow must never load in the process that holds torch"


def test_openl3_timeline_has_one_row_per_video_frame(fake_openl3, song, tmp_path):
    ctx = AudioContext(cache=FeatureCache(tmp_path / "cache"))
    for fps in (10, 24):
        track, timeline, _ = track_features(song, ("fft", "openl3"), fps=fps, ctx=ctx)
        assert timeline.n_frames == frame_count(track.duration_s, fps) == round(3.3 * fps)
        assert timeline.names[9:] == tuple(f"openl3.e{i}" for i in range(8))
        block = timeline.values[:, 9:]
        assert np.isfinite(block).all() and np.abs(block).max() < 1 and block[:, :2].std(axis=0).min() > 0.05
    assert timeline.normalisation["embeddings"]["openl3"]["reduction"]["source"] == "default"


def test_openl3_missing_in_the_child_is_a_feature_error_with_the_pip_command(song, monkeypatch):
    if importlib.util.find_spec("openl3") is not None:
        pytest.skip("openl3 is installed here")
    emb.forget_memo()
    with pytest.raises(FeatureError) as e:
        emb.raw_embedding("openl3", _audio(song))
    line = e.value.user_line()
    assert "song.wav [audio.features]: openl3: the openl3 package is not installed" in line
    assert "pip install 'audio-feature-explorer[openl3]'" in line


def test_a_crashing_or_hanging_worker_is_a_feature_error_not_a_crash(fake_openl3, song, monkeypatch):
    monkeypatch.setenv("FAKE_OPENL3_CRASH", "1")
    with pytest.raises(FeatureError) as e:
        emb.raw_embedding("openl3", _audio(song))
    assert "the embedding worker exited with status -6 and no result" in e.value.message
    monkeypatch.delenv("FAKE_OPENL3_CRASH")
    monkeypatch.setenv("FAKE_OPENL3_SLEEP", "30")
    monkeypatch.setenv("AFX_EMBEDDING_TIMEOUT_S", "2")
    with pytest.raises(FeatureError, match="took longer than 2 s") as e:
        emb.raw_embedding("openl3", _audio(song))
    assert e.value.transient
    monkeypatch.delenv("FAKE_OPENL3_SLEEP")
    assert emb.raw_embedding("openl3", _audio(song)).values.shape[1] == 512, "the next track still works"


def test_real_openl3():
    """Runs against the installed openl3 package (with its weights) wherever it is installed."""
    spec = importlib.util.find_spec("openl3")
    if spec is None or "fake_site" in str(spec.origin):
        pytest.skip("openl3 is not installed (its install downloads weights)")
    raw = emb.raw_embedding("openl3", emb.TrackAudio(synth(2.0, seed=3), 22050, "real-openl3-test"))
    assert raw.values.shape[1] == 512 and raw.values.shape[0] >= 10
    np.testing.assert_allclose(np.diff(raw.times), Embeddings().openl3_hop_s, atol=1e-6)


# ── YAMNet and VGGish through tensorflow_hub (local SavedModels) ─────────────────────────────────────────

@needs_tf
def test_yamnet_and_vggish_shapes_and_frame_times(hub_env, song):
    audio = _audio(song)
    n = round(3.3 * 16000)
    yam = emb.raw_embedding("yamnet", audio)
    expected = 1 + math.ceil((n - 15360) / 7680)
    assert yam.values.shape == (expected, 521 + 1024)
    assert ((yam.values[:, :521] >= 0) & (yam.values[:, :521] <= 1)).all(), "class scores come first"
    np.testing.assert_allclose(yam.times, 0.48 * np.arange(expected) + 0.48)
    vgg = emb.raw_embedding("vggish", audio)
    assert vgg.values.shape == (n // 15360, 128)
    np.testing.assert_allclose(vgg.times, 0.96 * np.arange(n // 15360) + 0.48)
    assert "tensorflow" not in sys.modules, "TensorFlow must never load in the process that holds torch"


@needs_tf
def test_yamnet_timeline_is_frame_aligned_and_cached_by_audio_hash_backend_and_settings(hub_env, tmp_path,
                                                                                        worker_runs, monkeypatch):
    track_path = write_wav(tmp_path / "cached.wav", synth(2.6, seed=7))
    ctx = AudioContext(cache=FeatureCache(tmp_path / "cache"))
    emb.forget_memo()
    track, timeline, _ = track_features(track_path, ("fft", "yamnet"), fps=12, ctx=ctx)
    assert worker_runs == ["yamnet"]
    assert timeline.values.shape == (round(2.6 * 12), 9 + 8)
    raw_files = list((tmp_path / "cache").glob("emb-*.npz"))
    assert len(raw_files) == 1
    # the same sets at another fps: a new timeline, but the raw embedding comes from the disk cache
    emb.forget_memo()
    _, other, _ = track_features(track_path, ("fft", "yamnet"), fps=25, ctx=ctx)
    assert worker_runs == ["yamnet"] and other.n_frames == round(2.6 * 25)
    # it is exactly the cached raw embedding, reduced, interpolated onto i / fps, then normalised
    raw = emb.raw_embedding("yamnet", emb.TrackAudio(np.zeros(1), SR, track.sha256))
    reduced = emb.random_projection("yamnet", dims=8).apply(raw.values)
    aligned = emb.align_to_frames(reduced, raw.times, n_frames=other.n_frames, fps=25)
    expected = np.stack([robust_normalise(c)[0] for c in aligned.T], axis=1)
    np.testing.assert_allclose(other.values[:, 9:], expected, atol=1e-5)
    # other dims or another model: other keys
    _, four, _ = track_features(track_path, ("yamnet",), fps=25, ctx=ctx, plan=emb.EmbeddingPlan(dims=4))
    assert four.names == tuple(f"yamnet.e{i}" for i in range(4)) and worker_runs == ["yamnet"]
    settings = emb.backend("yamnet").settings()
    monkeypatch.setenv("AFX_YAMNET_HANDLE", str(hub_env / "vggish"))
    assert emb.backend("yamnet").settings() != settings


@needs_tf
def test_bad_handles_are_feature_errors_naming_the_handle(hub_env, song, tmp_path, monkeypatch):
    from daemon.render import RenderSettings
    from daemon.pipeline import render_track
    from daemon.style import random_style

    emb.forget_memo()
    missing = tmp_path / "no-such-model"
    monkeypatch.setenv("AFX_YAMNET_HANDLE", str(missing))
    with pytest.raises(FeatureError) as e:
        track_features(song, ("fft", "yamnet"), fps=10, ctx=AudioContext())
    assert f"the yamnet model handle '{missing}' is neither a URL nor a folder" in e.value.user_line()
    assert "AFX_YAMNET_HANDLE" in e.value.hint and "yamnet_handle in afx.toml's [embeddings]" in e.value.hint
    monkeypatch.setenv("AFX_YAMNET_HANDLE", str(hub_env / "broken"))
    out = tmp_path / "renders" / "song.mp4"
    with pytest.raises(AfxError) as e:  # what the service's job boundary catches: the job fails, not the service
        render_track(song, random_style(1, sets=("fft", "yamnet")), RenderSettings(width=64, height=36, fps=10,
                     device="cpu"), out_path=out, ctx=AudioContext())
    assert isinstance(e.value, FeatureError)
    assert f"cannot load the yamnet model from '{hub_env / 'broken'}'" in e.value.message
    assert not out.exists() and not list(out.parent.glob("*"))
    monkeypatch.setenv("AFX_YAMNET_HANDLE", str(hub_env / "yamnet"))
    assert track_features(song, ("yamnet",), fps=10, ctx=AudioContext())[1].n_frames == 33


@needs_tf
def test_style_trained_on_yamnet_keeps_its_reduction_and_renders_any_track_through_it(hub_env, song, tmp_path):
    from daemon.library import Library
    from daemon.pipeline import render_track, train_style
    from daemon.render import RenderSettings
    from daemon.spec import parse_spec
    from daemon.style import Style

    spec = parse_spec({
        "prompts": [PROMPT], "network": {"width": 16, "depth": 2},
        "audio": {"features": ["fft", "yamnet"], "embedding_dims": 4},
        "training": {"clip_model": "afx-tiny", "pretrained": "none", "iterations": 3, "resolution": 32,
                     "cutouts": 2, "time_points": 2},
        "render": {"width": 64, "height": 36, "fps": 10}}, path=None, name="semantic")
    ctx = AudioContext(cache=FeatureCache(tmp_path / "cache"))
    trained = train_style(spec, library=Library(tmp_path / "library"), ctx=ctx, reference_tracks=[song],
                          device="cpu", allow_download=False)
    folder = trained.folder
    assert (folder / emb.REDUCTION_FILE).is_file()
    meta = json.loads((folder / "style.json").read_text())["features"]
    assert meta["columns"][-4:] == [f"yamnet.e{i}" for i in range(4)]
    assert meta["reduction"]["yamnet"]["method"] == "pca" and meta["reduction"]["yamnet"]["info"]["tracks"] == 1
    style = Style.load(folder)
    digest = style.features.reduction["yamnet"].digest()
    assert digest == meta["reduction"]["yamnet"]["digest"]

    other = write_wav(tmp_path / "other.wav", synth(2.0, kind="clicks", seed=5))
    report = render_track(other, style, RenderSettings(width=64, height=36, fps=10, device="cpu"),
                          out_path=tmp_path / "renders" / "other.mp4", ctx=ctx)
    assert report.features.sets == ["fft", "yamnet"] and report.style.feature_sets == ["fft", "yamnet"]
    assert report.features.embeddings is not None
    used = report.features.embeddings["yamnet"]
    assert used["reduction"]["digest"] == digest and "source" not in used["reduction"]
    assert report.video.frames == 20
    # the render's columns are the style's mapping, not the default projection
    _, with_style, _ = track_features(other, style.features.sets, fps=10, ctx=ctx, plan=emb.plan_for_style(style))
    _, default, _ = track_features(other, style.features.sets, fps=10, ctx=ctx, plan=emb.EmbeddingPlan(dims=4))
    raw = emb.raw_embedding("yamnet", _audio(other))
    aligned = emb.align_to_frames(style.features.reduction["yamnet"].apply(raw.values), raw.times, n_frames=20,
                                  fps=10)
    np.testing.assert_allclose(with_style.values[:, 9:], np.stack([robust_normalise(c)[0] for c in aligned.T], 1),
                               atol=1e-5)
    assert not np.allclose(with_style.values[:, 9:], default.values[:, 9:])


@needs_tf
def test_a_style_without_reference_tracks_stores_the_seeded_projection(hub_env, tmp_path):
    from daemon.library import Library
    from daemon.pipeline import train_style
    from daemon.spec import parse_spec
    from daemon.style import Style

    spec = parse_spec({
        "prompts": [PROMPT], "network": {"width": 8, "depth": 2}, "audio": {"features": ["vggish"]},
        "training": {"clip_model": "afx-tiny", "pretrained": "none", "iterations": 2, "resolution": 32,
                     "cutouts": 1, "time_points": 2},
        "render": {"width": 64, "height": 36, "fps": 10}}, path=None, name="prior")
    style = train_style(spec, library=Library(tmp_path / "library"), ctx=AudioContext(), reference_tracks=[],
                        device="cpu", allow_download=False)
    stored = Style.load(style.folder).features.reduction["vggish"]
    assert stored.method == "random-projection"
    assert stored.digest() == emb.random_projection("vggish", dims=8).digest()
    assert style.training["audio_source"] == "synthetic prior"


@needs_tf
def test_afx_features_shows_and_plots_yamnet(hub_env, song, tmp_path, monkeypatch, capsys):
    from daemon.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("AFX_CONFIG", raising=False)
    assert main(["features", str(song), "--set", "yamnet", "--fps", "10", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [f["name"] for f in report["features"]] == [f"yamnet.e{i}" for i in range(8)]
    assert report["frames"] == 33 and report["embeddings"]["yamnet"]["reduction"]["method"] == "random-projection"
    plot = tmp_path / "song.png"
    assert main(["features", str(song), "--set", "yamnet", "--fps", "10", "--plot", str(plot)]) == 0
    out = capsys.readouterr().out
    assert "yamnet: 1545-D from" in out and "random-projection (seed 0" in out
    assert plot.stat().st_size > 5000


def test_sweep_over_feature_sets_with_openl3_compares_variants(fake_openl3, tmp_path, monkeypatch, capsys):
    from daemon.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("AFX_CONFIG", raising=False)
    write_wav(tmp_path / "inbox" / "ref.wav", synth(2.0, seed=2))
    spec = tmp_path / "specs" / "emb.toml"
    spec.parent.mkdir()
    spec.write_text('prompts = ["x"]\n[network]\nwidth = 8\ndepth = 2\n[audio]\nembedding_dims = 3\n'
                    '[training]\nclip_model = "afx-tiny"\npretrained = "none"\niterations = 2\nresolution = 32\n'
                    'cutouts = 1\ntime_points = 2\n[render]\nwidth = 64\nheight = 36\nfps = 10\n'
                    '[sweep]\n"audio.features" = [["fft"], ["fft", "openl3"]]\n')
    assert main(["train", str(spec), "--offline"]) == 0
    table = json.loads((tmp_path / "library" / "_sweeps" / "emb" / "comparison.json").read_text())
    variants = {v["variant"]: v for v in table["variants"]}
    assert set(variants) == {"audio.features=fft", "audio.features=fft+openl3"}
    assert all(v["temporal_ssim_mean"] is not None for v in variants.values())
    from daemon.style import Style

    style = Style.load(Path(variants["audio.features=fft+openl3"]["folder"]))
    assert style.features.reduction["openl3"].method == "pca" and style.features.columns[-1] == "openl3.e2"
    assert any(c["call"] == "get_audio_embedding" for c in _calls(fake_openl3))
