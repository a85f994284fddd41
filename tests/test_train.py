"""CLIP-guided training with the tiny untrained model: it learns, is deterministic, resumes, and feeds the library.

The guidance model here is `afx-tiny` with random weights (pretrained weights cannot be had offline):
similarity to its text embedding is meaningless as aesthetics but is a real objective the loop must climb.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from daemon.cli import main
from daemon.errors import GuidanceError
from daemon.guidance import load_guide
from daemon.library import Library
from daemon.report import Report
from daemon.spec import load_spec, parse_spec
from daemon.train import TrainingInterrupted, optimise

PROMPT = "organic flowing shapes with strong contrast"
TINY = {"clip_model": "afx-tiny", "pretrained": "none", "resolution": 32, "cutouts": 4, "time_points": 2,
        "learning_rate": 0.01, "lr_warmup": 5}


def tiny_spec(name: str = "tiny", **training) -> object:
    return parse_spec({"prompts": [PROMPT], "negative_prompts": ["text, letters"],
                       "network": {"width": 32, "depth": 3}, "encoder": {"coord_scale": 1.7},
                       "training": {**TINY, "iterations": 40, **training},
                       "render": {"width": 64, "height": 36, "fps": 10}}, path=None, name=name)


def spec_file(folder: Path, name: str, *, prompt: str = PROMPT, iterations: int = 12, extra: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.toml"
    path.write_text(f'prompts = ["{prompt}"]\n[network]\nwidth = 16\ndepth = 2\n'
                    f'[training]\nclip_model = "afx-tiny"\npretrained = "none"\niterations = {iterations}\n'
                    f'resolution = 32\ncutouts = 2\ntime_points = 2\ncheckpoint_every = 5\n{extra}'
                    f'[render]\nwidth = 64\nheight = 36\nfps = 10\n')
    return path


@pytest.fixture(scope="module")
def guide():
    return load_guide("afx-tiny", "none", cache_dir=None, device=torch.device("cpu"))


def test_similarity_rises(guide):
    """The untrained tiny CLIP maps every image close to every text (similarity ≈ 0.3), so the climb is small
    in absolute terms; step-to-step noise is ~0.003, the climb must clear it several times over."""
    spec = parse_spec({"prompts": [PROMPT], "network": {"width": 32, "depth": 3},
                       "training": {**TINY, "iterations": 40, "learning_rate": 0.03},
                       "render": {"width": 64, "height": 36, "fps": 10}}, path=None, name="rise")
    result = optimise(spec, guide, [], device=torch.device("cpu"), checkpoint_dir=None)
    sims = np.array([r.similarity[PROMPT] for r in result.history])
    assert sims.size == 40
    assert sims[-5:].mean() > sims[:5].mean() + 0.008, sims
    assert np.polyfit(np.arange(sims.size), sims, 1)[0] > 0, "similarity must trend upwards"
    assert result.history[-1].loss < result.history[0].loss - 0.02
    assert result.audio_source == "synthetic prior"


def test_same_seed_same_weights_on_cpu(guide):
    a = optimise(tiny_spec(iterations=8), guide, [], device=torch.device("cpu"), checkpoint_dir=None).model
    b = optimise(tiny_spec(iterations=8), guide, [], device=torch.device("cpu"), checkpoint_dir=None).model
    c = optimise(tiny_spec(iterations=8, seed=1), guide, [], device=torch.device("cpu"), checkpoint_dir=None).model
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(pa, pb), name
    assert not torch.equal(a.rgb.weight, c.rgb.weight)


def test_stopped_training_resumes_to_the_same_weights(guide, tmp_path):
    spec = tiny_spec(iterations=20, checkpoint_every=5)
    whole = optimise(spec, guide, [], device=torch.device("cpu"), checkpoint_dir=None)
    calls = {"n": 0}

    def stop_at_13() -> bool:
        calls["n"] += 1
        return calls["n"] > 13

    with pytest.raises(TrainingInterrupted) as stopped:
        optimise(spec, guide, [], device=torch.device("cpu"), checkpoint_dir=tmp_path, should_stop=stop_at_13)
    assert stopped.value.step == 13 and (tmp_path / "checkpoint.pt").is_file()
    resumed = optimise(spec, guide, [], device=torch.device("cpu"), checkpoint_dir=tmp_path)
    assert resumed.resumed_from == 13 and len(resumed.history) == 20
    for (name, pa), pb in zip(whole.model.state_dict().items(), resumed.model.state_dict().values()):
        torch.testing.assert_close(pa, pb, msg=name)


def test_killed_training_resumes_from_its_checkpoint(tmp_path):
    """SIGKILL a real `afx train` once it has checkpointed; running it again finishes from there."""
    spec = spec_file(tmp_path / "specs", "slow", iterations=400)
    env = {**os.environ, "AFX_CONFIG": ""}
    cmd = [sys.executable, "-m", "daemon.cli", "train", str(spec), "--offline"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    checkpoint = None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        found = list((tmp_path / "state" / "checkpoints").glob("*/checkpoint.pt"))
        if found:
            checkpoint = found[0]
            break
        time.sleep(0.05)
    assert checkpoint is not None, proc.stderr.read().decode() if proc.poll() is not None else "no checkpoint"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    step = torch.load(checkpoint, weights_only=True)["step"]
    assert 0 < step < 400
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    history = json.loads(next((tmp_path / "library" / "slow").glob("*/training.json")).read_text())
    assert history["resumed_from"] >= step and len(history["history"]) == 400
    assert not checkpoint.exists(), "a finished training removes its checkpoint"


def test_unchanged_spec_is_not_retrained_and_an_edited_one_is(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("AFX_CONFIG", raising=False)
    path = spec_file(tmp_path / "specs", "moody")
    assert main(["train", str(path), "--offline"]) == 0
    first = capsys.readouterr().out
    assert "trained moody" in first and "UNTRAINED guidance" in first
    assert main(["train", str(path), "--offline"]) == 0
    assert "up to date: moody" in capsys.readouterr().out
    spec_file(tmp_path / "specs", "moody", prompt="sharp crystalline geometry")
    assert main(["train", "--offline"]) == 0  # no file: every spec in specs/
    assert "trained moody" in capsys.readouterr().out
    library = Library(tmp_path / "library")
    versions = library.versions("moody")
    assert len(versions) == 2
    newest = load_spec(path)
    assert versions[0].style_id == newest.style_id, "the newest version is the default"
    assert library.load("moody").style_id == newest.style_id


def test_library_folder_and_mood_board(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("AFX_CONFIG", raising=False)
    path = spec_file(tmp_path / "specs", "board <test>")
    assert main(["train", str(path), "--offline"]) == 0
    folder = next((tmp_path / "library").glob("board _test_~*/*"))  # `<`, `>` are unsafe on shares: hashed
    assert {"style.json", "weights.safetensors", "training.json", "preview.png", "curve.png"} <= {
        p.name for p in folder.iterdir()}
    training = json.loads((folder / "training.json").read_text())
    assert training["trained_guidance"] is False and training["clip_model"] == "afx-tiny"
    assert [r["step"] for r in training["history"]] == list(range(1, 13))
    assert set(training["history"][0]["similarity"]) == {PROMPT}
    board = (tmp_path / "library" / "index.html").read_text()
    assert "board &lt;test&gt;" in board and "preview.png" in board and "untrained guidance model" in board
    metrics = json.loads((folder / "style.json").read_text())["training"]["metrics"]
    assert metrics["motion_energy"] >= 0 and "onset_alignment" in metrics and "loud_quiet_contrast" in metrics
    assert "motion energy" in board and "onset alignment" in board  # the card shows the clip metrics
    capsys.readouterr()
    assert main(["library"]) == 0
    listing = capsys.readouterr().out
    assert "board <test>" in listing and "afx-tiny/none*" in listing and folder.name in listing


def test_trained_style_renders_with_its_training_encoding(tmp_path, monkeypatch, capsys, make_wav):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("AFX_CONFIG", raising=False)
    path = spec_file(tmp_path / "specs", "enc")
    path.write_text(path.read_text() + "[encoder]\ncoord_scale = 2.5\ntime_scale = 0.5\n")
    assert main(["train", str(path), "--offline"]) == 0
    spec = load_spec(path)
    style = Library(tmp_path / "library").load("enc")
    assert (style.encoder, style.network, style.features.sets) == (spec.encoder, spec.network, spec.audio.features)
    audio = make_wav("inbox/song.wav", 1.5)
    capsys.readouterr()
    assert main(["render", str(audio), "--style", "enc"]) == 0  # the style's own 64x36 at 10 fps: no tag
    report = Report.load(tmp_path / "renders" / "song.wav" / "enc.json")
    assert (report.video.width, report.video.height, report.video.fps) == (64, 36, 10)
    assert report.style.trained is True and report.style.id == spec.style_id
    assert report.style.clip_model == "afx-tiny" and report.style.trained_guidance is False


def test_missing_weights_error_is_clear(tmp_path):
    with pytest.raises(GuidanceError) as err:
        load_guide("ViT-B-32", "openai", cache_dir=tmp_path / "models", device=torch.device("cpu"),
                   allow_download=False)
    line = err.value.user_line()
    for part in ("ViT-B-32", "openai", str(tmp_path / "models"), "afx models fetch ViT-B-32 openai", "checkpoint"):
        assert part in line
    with pytest.raises(GuidanceError) as err:
        load_guide("ViT-B-99", "openai", cache_dir=None, device=torch.device("cpu"))
    assert "unknown CLIP model" in err.value.user_line()
    with pytest.raises(GuidanceError) as err:
        load_guide("ViT-B-32", "no-such-tag", cache_dir=None, device=torch.device("cpu"))
    assert "laion2b_s34b_b79k" in err.value.user_line()


def test_a_failed_download_is_not_retried_by_every_style_that_needs_it(tmp_path, monkeypatch):
    import open_clip

    from daemon import guidance

    calls: list[bool] = []

    def unreachable(*args, **kwargs):
        import huggingface_hub.constants as hub

        calls.append(hub.HF_HUB_OFFLINE)
        raise RuntimeError("Name or service not known")

    monkeypatch.setattr(open_clip, "create_model", unreachable)
    monkeypatch.setattr(guidance, "_failed_downloads", {})
    for _ in range(3):
        with pytest.raises(GuidanceError, match="not in the models cache"):
            load_guide("ViT-B-32", "openai", cache_dir=tmp_path, device=torch.device("cpu"))
    assert calls == [True, False, True, True]  # the cache each time, the network once
    monkeypatch.setattr(guidance, "DOWNLOAD_RETRY_S", 0.0)
    with pytest.raises(GuidanceError):
        load_guide("ViT-B-32", "openai", cache_dir=tmp_path, device=torch.device("cpu"))
    assert calls[-2:] == [True, False]  # once the pause is over, it tries again


def test_local_checkpoints_load_without_unpickling_code(tmp_path, guide):
    from safetensors.torch import save_file

    good = tmp_path / "tiny.safetensors"
    save_file({k: v.contiguous() for k, v in guide.model.state_dict().items()}, str(good))
    loaded = load_guide("afx-tiny", str(good), cache_dir=None, device=torch.device("cpu"))
    assert loaded.trained is False  # afx-tiny stays marked untrained whatever weights it gets
    evil = tmp_path / "evil.pt"
    torch.save({"state_dict": {"x": Path("/etc/passwd")}}, evil)  # a pickled non-tensor object
    with pytest.raises(GuidanceError) as err:
        load_guide("ViT-B-32", str(evil), cache_dir=None, device=torch.device("cpu"))
    assert "no pickled code" in err.value.user_line()


def test_sweep_trains_every_variant_and_writes_a_comparison(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("AFX_CONFIG", raising=False)
    path = spec_file(tmp_path / "specs", "sw", iterations=4)
    path.write_text(path.read_text()
                    + '[sweep]\n"network.width" = [8, 16]\n"audio.features" = [["fft"], ["fft", "mfcc_chroma"]]\n')
    assert main(["train", str(path), "--offline"]) == 0
    out = tmp_path / "library" / "_sweeps" / "sw"
    table = json.loads((out / "comparison.json").read_text())
    assert len(table["variants"]) == 4
    assert len({v["id"] for v in table["variants"]}) == 4
    assert all("network.width=" in v["variant"] and "audio.features=" in v["variant"] for v in table["variants"])
    assert all(0 < v["temporal_ssim_mean"] <= 1 for v in table["variants"])
    assert all(v["motion_energy"] >= 0 and "onset_alignment" in v and "audio_reactivity" not in v
               for v in table["variants"])
    assert all(v["detail"] > 0 and v["render_fps"] > 0 and v["seconds"] > 0 for v in table["variants"])
    assert all(v["audio"] == "synthetic prior walk (seed 0)" and v["clip_similarity"] is None  # untrained guide
               and v["palette_match"] is None for v in table["variants"])  # no palette: shown as "—"
    page = (out / "comparison.html").read_text()
    for heading in ("CLIP similarity", "palette match", "temporal SSIM", "onset alignment", "motion /s", "detail",
                    "training s", "render fps"):
        assert f"<th>{heading}</th>" in page
    assert page.count("<tr>") == 5 and (out / "contact_sheet.png").stat().st_size > 1000

    # a second run trains nothing and measures nothing again: the rows (render fps included) are reused
    assert main(["train", str(path), "--offline"]) == 0
    again = json.loads((out / "comparison.json").read_text())
    assert [v["measured"] for v in again["variants"]] == [v["measured"] for v in table["variants"]]


def test_reference_tracks_are_chosen_as_the_service_chooses_them_and_recorded(tmp_path, monkeypatch, capsys, make_wav):
    """`afx train` and the service both take inbox_references: nested folders too, the spec's `tracks`
    globs respected, hidden files skipped; the style records which tracks (and contents) it sampled."""
    from daemon.audio.decode import file_sha256
    from daemon.tracks import inbox_references

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("AFX_CONFIG", raising=False)
    live = make_wav("inbox/live/b.wav", 1.0)
    make_wav("inbox/studio/a.wav", 1.0, seed=1)
    make_wav("inbox/live/.hidden.wav", 1.0)
    path = spec_file(tmp_path / "specs", "stage", iterations=2)
    path.write_text('tracks = ["live/*.wav"]\n' + path.read_text())
    spec = load_spec(path)
    assert inbox_references(spec, tmp_path / "inbox") == [live]
    assert main(["train", str(path), "--offline"]) == 0
    style = Library(tmp_path / "library").load("stage")
    assert style.training["reference_tracks"] == [{"path": str(live), "sha256": file_sha256(live)}]
