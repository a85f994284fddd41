"""Style specs: the examples load, validation names file + key + reason, the style id tracks the weights."""

from __future__ import annotations

from pathlib import Path

import pytest

from daemon.audio.features import feature_set
from daemon.cli import main
from daemon.config import Limits
from daemon.errors import SpecError
from daemon.spec import (
    AudioSpec,
    Prompt,
    RenderSpec,
    TrainingSpec,
    load_spec,
    load_specs,
)
from daemon.train import TRAINER_VERSION

SPECS = Path(__file__).resolve().parents[1] / "specs"
SWEEP_EXAMPLE = SPECS / "sweeps" / "organic-sweep.toml.example"
BASIC = 'prompts = ["organic flowing shapes"]\n'


def write(tmp_path: Path, text: str, name: str = "style.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def spec_error(tmp_path: Path, text: str, *, limits: Limits = Limits()) -> SpecError:
    path = write(tmp_path, text)
    with pytest.raises(SpecError) as info:
        load_specs(path, limits=limits)
    assert info.value.path == str(path)
    return info.value


# ── the examples ─────────────────────────────────────────────────────────────────────────────────────────

def test_every_example_spec_loads_on_vit_b_32_with_openai_weights() -> None:
    files = sorted(SPECS.glob("organic*.toml"))  # the seed's CLIP examples; the offline styles: test_styles.py
    assert {f.stem for f in files} >= {"organic", "organic-cool", "organic-warm", "organic-neon", "organic-earth",
                                       "organic-pastel", "organic-mono", "organic-fiery"}
    specs = [load_spec(f) for f in files]
    for spec, file in zip(specs, files):
        assert spec.training.clip_model == "ViT-B-32" and spec.training.pretrained == "openai"
        assert spec.prompts[0].text.startswith("organic flowing shapes with strong contrast")
        assert spec.name == file.stem and spec.source == file.absolute()
    assert len({s.style_id for s in specs}) == len(specs)
    assert load_spec(SPECS / "organic-cool.toml").prompts == (
        Prompt("organic flowing shapes with strong contrast, cool blues and purples"),)


def test_the_sweep_example_expands_but_is_not_a_toml_spec() -> None:
    assert SWEEP_EXAMPLE.suffix == ".example"
    variants = load_specs(SWEEP_EXAMPLE)
    assert len(variants) == 6
    assert variants[0].name == "organic-sweep--clip_model-RN50--width-128"


@pytest.mark.parametrize("name, axis, count", [
    ("width", "network.width=", 2), ("iterations", "training.iterations=", 3), ("colour", "prompts=", 7),
    ("features", "audio.features=", 2),
])
def test_the_roadmaps_example_sweeps_expand_weight_free_and_stay_out_of_the_service(
        name: str, axis: str, count: int) -> None:
    """The roadmap's questions as sweeps: weight-free guidance (they train offline once copied in), and
    `.example` files, which the service's `*.toml` scan never picks up on a fresh clone."""
    variants = load_specs(SPECS / "sweeps" / f"{name}.toml.example")
    assert len(variants) == count and len({v.style_id for v in variants}) == count
    assert all(v.variant.startswith(axis) and v.training.clip_model == "none" for v in variants)
    assert not list((SPECS / "sweeps").glob("*.toml"))


# ── defaults and the id ──────────────────────────────────────────────────────────────────────────────────

def test_defaults_fill_everything_but_the_prompts(tmp_path: Path) -> None:
    spec = load_spec(write(tmp_path, BASIC, "my-style.toml"))
    assert spec.name == "my-style"
    assert spec.prompts == (Prompt("organic flowing shapes", 1.0),)
    assert spec.negative_prompts == () and spec.tracks == () and spec.variant == ""
    assert spec.training == TrainingSpec() and spec.render == RenderSpec() and spec.audio == AudioSpec()
    assert spec.training.clip_model == "ViT-B-32" and spec.training.iterations == 400
    assert spec.to_dict()["style_id"] == spec.style_id
    assert spec.to_dict()["training"]["clip_model"] == "ViT-B-32"
    assert spec.weight_fields()["versions"] == {"trainer": TRAINER_VERSION, "features": {"fft": feature_set("fft").version}}


def test_style_id_is_stable_and_ignores_formatting(tmp_path: Path) -> None:
    plain = write(tmp_path, BASIC + '[training]\niterations = 200\nlearning_rate = 0.01\n', "a.toml")
    explicit = write(tmp_path, """
# the same style, written differently: inline tables, dotted keys, defaults spelled out, ints for floats
name = "a"
prompts = [ { text = "  organic flowing shapes ", weight = 1 } ]
negative_prompts = []
training.learning_rate = 0.01
training.iterations = 200
training.clip_model = "ViT-B-32"
[network]
width = 128
""", "b.toml")
    first = load_spec(plain)
    assert first.style_id == load_spec(plain).style_id
    assert len(first.style_id) == 16 and int(first.style_id, 16) >= 0
    assert load_spec(explicit).style_id == first.style_id


@pytest.mark.parametrize("change", [
    'prompts = ["organic flowing shapes, blue"]',
    'prompts = [{ text = "organic flowing shapes", weight = 2.0 }]',
    'negative_prompts = ["text"]',
    "[training]\niterations = 401",
    "[training]\nclip_model = 'RN50'",
    "[training]\nseed = 1",
    "[network]\nwidth = 64",
    "[audio]\nfeatures = ['fft', 'mfcc_chroma']",
    "[render]\nwidth = 720\nheight = 720",
])
def test_style_id_changes_with_what_changes_the_weights(tmp_path: Path, change: str) -> None:
    base = load_spec(write(tmp_path, BASIC, "base.toml"))
    text = change if change.startswith("prompts") else BASIC + change
    assert load_spec(write(tmp_path, text + "\n", "changed.toml")).style_id != base.style_id


@pytest.mark.parametrize("change", [
    'name = "renamed"\n' + BASIC,
    BASIC + 'tracks = ["albums/*.flac"]',
    BASIC + "[render]\nfps = 60",
    BASIC + "[render]\nwidth = 1920\nheight = 1080",  # same 16:9 aspect: the same training frames
    BASIC + "[training]\ncheckpoint_every = 7",
])
def test_style_id_ignores_what_does_not_change_the_weights(tmp_path: Path, change: str) -> None:
    base = load_spec(write(tmp_path, BASIC, "base.toml"))
    assert load_spec(write(tmp_path, change + "\n", "other.toml")).style_id == base.style_id


# ── validation names the file, the key and the reason ───────────────────────────────────────────────────

def test_unknown_key_names_file_dotted_key_and_nearest(tmp_path: Path) -> None:
    e = spec_error(tmp_path, BASIC + "[training]\niteratons = 10\n")
    assert e.key == "training.iteratons" and "training.iterations" in (e.hint or "")
    assert e.user_line().startswith(f"{tmp_path / 'style.toml'} [training.iteratons]: unknown key")
    e = spec_error(tmp_path, BASIC + 'negativ_prompts = ["x"]\n')
    assert e.key == "negativ_prompts" and "negative_prompts" in (e.hint or "")
    e = spec_error(tmp_path, BASIC + "[netwrk]\nwidth = 3\n")
    assert e.key == "netwrk" and "network" in (e.hint or "")
    e = spec_error(tmp_path, BASIC + "[network]\nwidht = 3\n")
    assert e.key == "network.widht" and "network.width" in (e.hint or "")


@pytest.mark.parametrize("text, key, reason", [
    ('[training]\niterations = "many"', "training.iterations", "expected int, got str"),
    ("[training]\naugment = 1", "training.augment", "expected bool"),
    ("[audio]\nfeatures = 'fft'", "audio.features", "expected a list"),
    ("[network]\nactivations = 'sin'", "network.activations", "expected a list"),
    ("[render]\nfps = 29.97", "render.fps", "expected int, got float"),
    ('tracks = "*.wav"', "tracks", "expected a list"),
    ("training = 3", "training", "expected a table"),
])
def test_wrong_types_are_named(tmp_path: Path, text: str, key: str, reason: str) -> None:
    e = spec_error(tmp_path, BASIC + text + "\n")
    assert e.key == key and reason in e.message


@pytest.mark.parametrize("text, key, reason", [
    ("[training]\niterations = 0", "training.iterations", "0 is below the minimum 1"),
    ("[training]\niterations = 20001", "training.iterations", "20001 is above the maximum 20000"),
    ("[training]\nlearning_rate = 0", "training.learning_rate", "must be above 0"),
    ("[training]\nlearning_rate = 2", "training.learning_rate", "above the maximum 1"),
    ("[training]\nresolution = 16", "training.resolution", "below the minimum 32"),
    ("[training]\ncutouts = 65", "training.cutouts", "above the maximum 64"),
    ("[training]\ntime_points = 33", "training.time_points", "above the maximum 32"),
    ("[training]\nsmoothness_weight = -1", "training.smoothness_weight", "below the minimum 0"),
    ("[training]\nclip_model = ' '", "training.clip_model", "empty"),
    ("[render]\nwidth = 1281", "render.width", "odd"),
    ("[render]\nheight = 8", "render.height", "below the minimum 16"),
    ("[render]\nwidth = 7680\nheight = 4320", "render", "at most 8294400"),
    ("[render]\nfps = 241", "render.fps", "above the maximum 240"),
    ("[network]\nwidth = 4", "network.width", "below the minimum 8"),
    ("[network]\ndepth = 17", "network.depth", "above the maximum 16"),
    ("[network]\nactivations = ['sin', 'sine']", "network.activations[1]", "not one of"),
    ("[network]\nactivations = []", "network.activations", "at least one"),
    ("[encoder]\ncoord_scale = 0", "encoder.coord_scale", "below the minimum"),
    ('name = ""', "name", "empty"),
    (f'name = "{"n" * 101}"', "name", "at most 100"),
    ('tracks = ["../outside/*.wav"]', "tracks[0]", "not inside the inbox"),
])
def test_out_of_range_values_are_named(tmp_path: Path, text: str, key: str, reason: str) -> None:
    e = spec_error(tmp_path, BASIC + text + "\n")
    assert e.key == key and reason in e.message, e.user_line()


def test_iteration_limit_comes_from_the_config(tmp_path: Path) -> None:
    e = spec_error(tmp_path, BASIC + "[training]\niterations = 101\n", limits=Limits(max_iterations=100))
    assert e.user_line().endswith("101 is above the maximum 100 — raise limits.max_iterations in afx.toml")


def test_the_example_message_format(tmp_path: Path) -> None:
    e = spec_error(tmp_path, BASIC + "[training]\niterations = 0\n")
    assert e.user_line() == f"{tmp_path / 'style.toml'} [training.iterations]: 0 is below the minimum 1"


def test_toml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    e = spec_error(tmp_path, BASIC + "[training]\niterations = = 3\n")
    assert e.key is None and "not valid TOML" in e.message and "line 3" in e.message


def test_missing_file_is_a_spec_error(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="not found"):
        load_spec(tmp_path / "absent.toml")


def test_prompt_count_and_length_limits(tmp_path: Path) -> None:
    limits = Limits(max_prompts=3, max_prompt_chars=20)
    e = spec_error(tmp_path, 'prompts = ["a", "b"]\nnegative_prompts = ["c", "d"]\n', limits=limits)
    assert e.key == "prompts" and "4 prompts" in e.message and "at most 3" in e.message
    e = spec_error(tmp_path, 'prompts = ["a", "' + "x" * 21 + '"]\n', limits=limits)
    assert e.key == "prompts[1]" and "21 characters, at most 20" in e.message
    e = spec_error(tmp_path, 'prompts = ["a"]\nnegative_prompts = ["  "]\n')
    assert e.key == "negative_prompts[0]" and "empty" in e.message
    e = spec_error(tmp_path, "prompts = []\n")
    assert e.key == "prompts" and "at least one" in e.message
    e = spec_error(tmp_path, "[training]\niterations = 3\n")
    assert e.key == "prompts" and "at least one" in e.message
    e = spec_error(tmp_path, 'prompts = [{ text = "a", weight = 0 }]\n')
    assert e.key == "prompts[0].weight" and "must be above 0" in e.message
    e = spec_error(tmp_path, 'prompts = [{ txt = "a" }]\n')
    assert e.key == "prompts[0]" and "text" in e.message
    e = spec_error(tmp_path, "prompts = [3]\n")
    assert e.key == "prompts[0]" and "expected a string" in e.message


def test_unknown_feature_set_suggests_the_nearest(tmp_path: Path) -> None:
    e = spec_error(tmp_path, BASIC + "[audio]\nfeatures = ['fft', 'mfcc_croma']\n")
    assert e.key == "audio.features[1]" and "unknown feature set 'mfcc_croma'" in e.message
    assert "mfcc_chroma" in (e.hint or "")
    e = spec_error(tmp_path, BASIC + "[audio]\nfeatures = ['fft', 'fft']\n")
    assert e.key == "audio.features[1]" and "twice" in e.message


# ── sweeps ───────────────────────────────────────────────────────────────────────────────────────────────

SWEEP = BASIC + """
[sweep]
"training.clip_model" = ["RN50", "ViT-B-32", "ViT-L-14"]
"network.width" = [128, 256]
"training.iterations" = [200, 400]
"audio.features" = [["fft"], ["fft", "mfcc_chroma"]]
"""


def test_sweep_expands_to_the_cartesian_product(tmp_path: Path) -> None:
    path = write(tmp_path, SWEEP, "organic.toml")
    variants = load_specs(path)
    assert len(variants) == 3 * 2 * 2 * 2
    first, last = variants[0], variants[-1]
    assert first.name == "organic--clip_model-RN50--width-128--iterations-200--features-fft"
    assert first.variant == ("training.clip_model=RN50,network.width=128,training.iterations=200,"
                             "audio.features=fft")
    assert (first.training.clip_model, first.network.width, first.training.iterations) == ("RN50", 128, 200)
    assert last.name == "organic--clip_model-ViT-L-14--width-256--iterations-400--features-fft.mfcc_chroma"
    assert last.audio.features == ("fft", "mfcc_chroma") and last.network.width == 256
    assert len({v.name for v in variants}) == len({v.style_id for v in variants}) == 24
    assert all(v.prompts == first.prompts and v.source == path.absolute() for v in variants)
    # load_spec ignores the sweep: the base spec alone
    base = load_spec(path)
    assert base.name == "organic" and base.variant == "" and base.network.width == 128


def test_sweep_as_nested_tables(tmp_path: Path) -> None:
    path = write(tmp_path, BASIC + "[sweep]\ntraining.seed = [1, 2]\n[sweep.render]\nwidth = [640, 1280]\n")
    names = [v.name for v in load_specs(path)]
    assert names == ["style--seed-1--width-640", "style--seed-1--width-1280",
                     "style--seed-2--width-640", "style--seed-2--width-1280"]


def test_sweep_over_prompts(tmp_path: Path) -> None:
    path = write(tmp_path, BASIC + '[sweep]\nprompts = ["red waves", ["blue dots", { text = "grid", weight = 2 }]]\n')
    variants = load_specs(path)
    assert [v.name for v in variants] == ["style--prompts-red-waves", "style--prompts-blue-dots.grid"]
    assert variants[0].prompts == (Prompt("red waves"),)
    assert variants[1].prompts == (Prompt("blue dots"), Prompt("grid", 2.0))


def test_sweep_errors_name_the_sweep_key(tmp_path: Path) -> None:
    e = spec_error(tmp_path, BASIC + '[sweep]\n"training.clip_modle" = ["RN50"]\n')
    assert e.key == "sweep.training.clip_modle" and "sweep.training.clip_model" in (e.hint or "")
    e = spec_error(tmp_path, BASIC + '[sweep]\n"network.width" = 128\n')
    assert e.key == "sweep.network.width" and "list" in e.message
    e = spec_error(tmp_path, BASIC + '[sweep]\n"training.iterations" = [10, 0]\n')
    assert e.key == "sweep.training.iterations" and "below the minimum 1" in e.message
    e = spec_error(tmp_path, BASIC + '[sweep]\n"training.seed" = [1, 1]\n')
    assert e.key == "sweep.training.seed[1]" and "twice" in e.message
    e = spec_error(tmp_path, BASIC + "[sweep]\n" + "".join(f'"training.{k}" = [1, 2, 3, 4, 5]\n'
                                                          for k in ("seed", "cutouts", "time_points")))
    assert e.key == "sweep" and "125 variants, at most 64" in e.message


def test_long_variant_names_stay_short_and_unique(tmp_path: Path) -> None:
    prompts = [[f"a very long prompt number {i} about organic flowing shapes with strong contrast"] for i in range(3)]
    text = f'name = "{"n" * 90}"\n' + BASIC + "[sweep]\nprompts = " + repr(prompts).replace("'", '"') + "\n"
    variants = load_specs(write(tmp_path, text))
    assert len({v.name for v in variants}) == 3 and all(len(v.name) <= 100 for v in variants)
    assert [v.prompts[0].text for v in variants] == [p[0] for p in prompts]


# ── afx spec check ───────────────────────────────────────────────────────────────────────────────────────

@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("AFX_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_spec_check_all_specs_ok(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (workdir / "specs").mkdir()
    good = write(workdir / "specs", BASIC, "good.toml")
    assert main(["spec", "check"]) == 0
    out = capsys.readouterr().out
    assert out == f"ok specs/good.toml → style good id {load_spec(good).style_id}\n"


def test_spec_check_reports_each_file_and_fails(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (workdir / "specs").mkdir()
    write(workdir / "specs", BASIC, "good.toml")
    write(workdir / "specs", BASIC + "[training]\niterations = 0\n", "bad.toml")
    assert main(["spec", "check"]) == 2
    lines = capsys.readouterr().out.splitlines()
    assert lines == ["specs/bad.toml [training.iterations]: 0 is below the minimum 1",
                     f"ok specs/good.toml → style good id {load_spec(Path('specs/good.toml')).style_id}"]


def test_spec_check_named_files_and_sweeps(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sweep = write(workdir, SWEEP, "sw.toml")
    assert main(["spec", "check", str(sweep)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"ok {sweep} → style sw id ") and out[0].endswith("sweep of 24 variants")
    assert len(out) == 25 and "sw--clip_model-RN50--width-128--iterations-200--features-fft" in out[1]
    assert main(["spec", "check", "missing.toml"]) == 2
    assert capsys.readouterr().out.startswith("missing.toml: spec file not found — ")
