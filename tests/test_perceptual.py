"""The VGG16 perceptual term (training.perceptual_weight): what it measures, that training lowers it, where its
weights come from and the error when they are absent. Every test uses randomly initialised VGG weights."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from daemon.cli import main
from daemon.errors import GuidanceError
from daemon.guidance import load_guide
from daemon.perceptual import VGG_FILE, Perceptual, load_perceptual, vgg_features, weights_path
from daemon.spec import load_spec, parse_spec
from daemon.train import TimeSampler, TrainingError, optimise, training_size

from .test_train import spec_file


def random_vgg_file(models: Path, *, seed: int = 0) -> Path:
    """A models cache holding random VGG16 feature weights under torchvision's file name."""
    torch.manual_seed(seed)
    path = weights_path(models)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({f"features.{k}": v for k, v in vgg_features().state_dict().items()}, path)
    return path


@pytest.fixture(scope="module")
def perceptual() -> Perceptual:
    torch.manual_seed(0)
    return Perceptual(vgg_features())


def test_noise_costs_and_smooth_structure_does_not(perceptual: Perceptual) -> None:
    noise = torch.rand(2, 3, 36, 64, generator=torch.Generator().manual_seed(1))
    ramp = torch.linspace(0, 1, 64).expand(2, 3, 36, 64).contiguous()
    disc = ((torch.linspace(-1, 1, 64)[None, :] ** 2 + torch.linspace(-1, 1, 36)[:, None] ** 2) < 0.4).float()
    shape = disc.expand(2, 3, 36, 64).contiguous()  # a bold edge: structure, not noise
    assert float(perceptual(ramp)) < 1e-3
    assert float(perceptual(noise)) > 20 * float(perceptual(shape)) > 0


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Tensors this small gain nothing from threads, and on a loaded 2-core machine OpenMP's waiting made
    this test ten times slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_training_with_the_term_lowers_it(perceptual: Perceptual, one_thread: None) -> None:
    guide = load_guide("afx-tiny", "none", cache_dir=None, device=torch.device("cpu"))

    def trained_score(weight: float) -> float:
        spec = parse_spec({"prompts": ["flowing shapes"], "network": {"width": 16, "depth": 2},
                           "training": {"clip_model": "afx-tiny", "pretrained": "none", "iterations": 30,
                                        "resolution": 32, "cutouts": 2, "time_points": 2, "learning_rate": 0.03,
                                        "perceptual_weight": weight},
                           "render": {"width": 64, "height": 36, "fps": 10}}, path=None, name="p")
        result = optimise(spec, guide, [], device=torch.device("cpu"), checkpoint_dir=None, perceptual=perceptual)
        from daemon.audio.features import columns_for
        from daemon.cppn import InputEncoder

        encoder = InputEncoder(spec.encoder, len(columns_for(spec.audio.features)))
        width, height = training_size(spec)
        positions, features, channels = TimeSampler([], spec.audio.features).sample(4, torch.Generator().manual_seed(5))
        with torch.no_grad():
            frames = result.model(encoder.spatial(width, height, device=torch.device("cpu")),
                                  encoder.temporal(positions, features, channels))
            return float(perceptual(frames.view(-1, height, width, 3).permute(0, 3, 1, 2)))

    without, with_term = trained_score(0.0), trained_score(1000.0)
    assert with_term < 0.5 * without, (with_term, without)


def test_the_term_needs_no_clip(perceptual: Perceptual, one_thread: None) -> None:
    """clip_model = "none": no guide at all, the perceptual term beside the weight-free ones, recorded per step."""
    spec = parse_spec({"prompts": ["fiery reds and oranges"], "network": {"width": 16, "depth": 2},
                       "training": {"clip_model": "none", "iterations": 4, "resolution": 32, "time_points": 2,
                                    "perceptual_weight": 1.0},
                       "render": {"width": 64, "height": 36, "fps": 10}}, path=None, name="free")
    result = optimise(spec, None, [], device=torch.device("cpu"), checkpoint_dir=None, perceptual=perceptual)
    assert len(result.history) == 4
    assert all(r.terms["perceptual"] > 0 and "palette" in r.terms for r in result.history)


def test_weight_zero_changes_no_style_id(tmp_path: Path) -> None:
    plain = load_spec(spec_file(tmp_path, "a"))
    zero = load_spec(spec_file(tmp_path, "b", extra="perceptual_weight = 0.0\n"))
    some = load_spec(spec_file(tmp_path, "c", extra="perceptual_weight = 0.1\n"))
    assert plain.style_id == zero.style_id != some.style_id


def test_missing_weights_offline_say_what_where_and_how(tmp_path: Path) -> None:
    with pytest.raises(GuidanceError) as err:
        load_perceptual(tmp_path / "models", device=torch.device("cpu"), allow_download=False)
    line = err.value.user_line()
    assert str(tmp_path / "models" / VGG_FILE) in line
    assert "training.perceptual_weight" in line and "afx models fetch vgg16" in line


def test_a_damaged_or_foreign_weights_file_is_a_clear_error(tmp_path: Path) -> None:
    path = weights_path(tmp_path)
    path.parent.mkdir(parents=True)
    torch.save({"features.0.weight": torch.zeros(2, 2)}, path)
    with pytest.raises(GuidanceError, match="not torchvision's VGG16 weights"):
        load_perceptual(tmp_path, device=torch.device("cpu"), allow_download=False)
    path.write_bytes(b"not a torch file")
    with pytest.raises(GuidanceError, match="cannot read the VGG16 weights"):
        load_perceptual(tmp_path, device=torch.device("cpu"), allow_download=False)


def test_optimise_refuses_a_weight_without_the_model(tmp_path: Path) -> None:
    spec = load_spec(spec_file(tmp_path, "p", iterations=1, extra="perceptual_weight = 1.0\n"))
    guide = load_guide("afx-tiny", "none", cache_dir=None, device=torch.device("cpu"))
    with pytest.raises(TrainingError, match="perceptual"):
        optimise(spec, guide, [], device=torch.device("cpu"), checkpoint_dir=None)


def test_afx_train_reads_vgg_from_the_models_cache_and_stops_clearly_without_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """Weight-free guidance (afx-tiny here; clip_model = "none" the same way): the term needs only VGG."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("AFX_CONFIG", raising=False)
    path = spec_file(tmp_path / "specs", "perc", iterations=3, extra="perceptual_weight = 0.5\n")
    assert main(["train", str(path), "--offline"]) == 2
    err = capsys.readouterr().err
    assert "VGG16" in err and "afx models fetch vgg16" in err and "training.perceptual_weight" in err
    assert not (tmp_path / "library" / "perc").exists()
    random_vgg_file(tmp_path / "state" / "models")
    assert main(["train", str(path), "--offline"]) == 0
    assert (tmp_path / "library" / "perc").is_dir()
    assert main(["models", "fetch", "vgg16"]) == 0  # present: nothing to download
    assert str(Path("state/models") / VGG_FILE) in capsys.readouterr().out


def test_models_fetch_of_a_clip_model_needs_its_tag(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "fetch", "ViT-B-32"]) == 2
    assert "afx models fetch ViT-B-32 openai" in capsys.readouterr().err
