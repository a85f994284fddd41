"""The offline default set: CLIP specs wait for their weights, afx.toml's [spec_override], the mood board.

Small and quick: planners on temporary folders, one open_clip import for the models-cache check.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from daemon.config import Limits, load_config
from daemon.errors import ConfigError
from daemon.library import Library
from daemon.service.ledger import Ledger
from daemon.service.planner import Plan, Planner, ProblemBook, SpecCatalog
from daemon.service.service import weights_ready
from daemon.service.watch import SettleTracker
from daemon.spec import load_specs
from daemon.style import random_style

CLIP_SPEC = 'prompts = ["organic"]\n[training]\nclip_model = "ViT-B-32"\npretrained = "openai"\n'
TINY_SPEC = 'prompts = ["tiny"]\n[training]\nclip_model = "afx-tiny"\npretrained = "none"\n'


def fake_cached_weights(models: Path, repo: str = "timm/vit_base_patch32_clip_224.openai") -> None:
    """A file where the Hugging Face cache keeps open_clip's ViT-B-32 (openai) weights."""
    folder = models / f"models--{repo.replace('/', '--')}"
    revision = "0" * 40
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text(revision)
    (folder / "snapshots" / revision).mkdir(parents=True)
    (folder / "snapshots" / revision / "open_clip_model.safetensors").write_bytes(b"weights")


def _planner(tmp_path: Path, specs: dict[str, str]) -> Planner:
    (tmp_path / "specs").mkdir()
    for name, text in specs.items():
        (tmp_path / "specs" / f"{name}.toml").write_text(text)
    ledger = Ledger(tmp_path / "state" / "ledger.sqlite3")
    catalog = SpecCatalog(ledger=ledger, limits=Limits(), renders=tmp_path / "renders", problems=ProblemBook(ledger))
    catalog.refresh(SettleTracker(settle_s=0.0).scan(tmp_path / "specs", include=lambda r: r.suffix == ".toml"))
    models = tmp_path / "models"
    return Planner(ledger=ledger, catalog=catalog, library=Library(tmp_path / "library"), renders=tmp_path / "renders",
                   default_styles=(), hash_file=lambda p: p.name,
                   weights_ready=lambda spec: weights_ready(spec, models=models))


def _plan(planner: Planner, inbox: Path) -> Plan:
    planner.plan(SettleTracker(settle_s=0.0).scan(inbox))  # the first plan imports open_clip: not timed
    deadline = time.monotonic() + 60
    while (plan := planner.plan(SettleTracker(settle_s=0.0).scan(inbox))).hashing:
        assert time.monotonic() < deadline, f"still hashing {plan.hashing}"
        time.sleep(0.02)
    return plan


def _jobs(plan: Plan) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for job in plan.jobs:
        found.setdefault(Path(str(job.track_path)).name if job.track_path else "-", set()).add(
            f"{job.kind}:{job.style_name}")
    return found


def test_clip_specs_without_weights_stay_out_of_the_default_set_until_the_weights_arrive(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    planner = _planner(tmp_path, {"organic": CLIP_SPEC, "tiny": TINY_SPEC})
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "a.wav").write_bytes(b"a")
    (inbox / "b.wav").write_bytes(b"b")
    (inbox / "b.toml").write_text('styles = ["organic"]\n')  # named explicitly: trained anyway
    first = _plan(planner, inbox)
    assert _jobs(first) == {"-": {"train:tiny", "train:organic"}, "a.wav": {"render:tiny"},
                            "b.wav": {"render:organic"}}
    assert [s.name for s in planner.held_out.values()] == ["organic"]
    _plan(planner, inbox)
    logged = capsys.readouterr()  # stdout while structlog is unconfigured, stderr once afx configured it
    held = [line for line in (logged.out + logged.err).splitlines() if "style.held_out" in line]
    assert len(held) == 1 and "afx models fetch ViT-B-32 openai" in held[0]  # one line per spec, not per scan

    (tmp_path / "specs" / "organic-warm.toml").write_text(CLIP_SPEC.replace("organic", "warm organic"))
    warm = load_specs(tmp_path / "specs" / "organic-warm.toml")[0]
    random_style(0).save(planner.library.folder_for(warm.name, warm.style_id))  # trained elsewhere: no weights needed
    planner.catalog.refresh(SettleTracker(settle_s=0.0).scan(tmp_path / "specs", include=lambda r: r.suffix == ".toml"))
    assert "render:organic-warm" in _jobs(_plan(planner, inbox))["a.wav"]
    assert [s.name for s in planner.held_out.values()] == ["organic"]

    fake_cached_weights(tmp_path / "models")
    later = _plan(planner, inbox)
    assert _jobs(later)["a.wav"] == {"render:tiny", "render:organic", "render:organic-warm"}
    assert planner.held_out == {}
    logged = capsys.readouterr()
    assert "style.weights_found" in logged.out + logged.err


def test_the_weights_check_finds_the_models_cache_and_never_holds_out_offline_guides(tmp_path: Path) -> None:
    from daemon.guidance import needs_download, weights_cached

    assert not weights_cached("ViT-B-32", "openai", cache_dir=tmp_path)
    fake_cached_weights(tmp_path)
    assert weights_cached("ViT-B-32", "openai", cache_dir=tmp_path)
    assert not weights_cached("RN50", "openai", cache_dir=tmp_path)  # another model's weights do not count
    assert not needs_download("afx-tiny", "none") and not needs_download("none", "openai")
    assert not needs_download("ViT-B-32", "/models/vit.safetensors") and needs_download("ViT-B-32", "openai")


def test_spec_override_replaces_spec_keys_and_a_typo_names_afx_toml(tmp_path: Path) -> None:
    spec = tmp_path / "s.toml"
    spec.write_text(TINY_SPEC + "[render]\nwidth = 640\nheight = 360\n")
    config = tmp_path / "afx.toml"
    config.write_text("[spec_override.render]\nwidth = 1280\nheight = 720\n[spec_override.training]\niterations = 3\n")
    override = load_config(config).spec_override
    [plain] = load_specs(spec)
    [big] = load_specs(spec, override=override)
    assert (big.render.width, big.render.height, big.training.iterations) == (1280, 720, 3)
    assert (plain.render.width, plain.training.iterations) == (640, 400)
    assert big.style_id != plain.style_id  # iterations change the weights
    config.write_text("[spec_override.training]\niteratons = 3\n")
    with pytest.raises(ConfigError) as e:
        load_config(config)
    assert e.value.path == str(config) and e.value.key == "spec_override.training.iteratons"



def test_the_mood_board_shows_swatches_palette_match_and_the_motion_metrics(tmp_path: Path) -> None:
    from PIL import Image

    from daemon.board import write_mood_board

    metrics = {"temporal_ssim_mean": 0.93, "motion_energy": 187.4, "onset_alignment": 0.61,
               "loud_quiet_contrast": 1.8, "onset_correlation": 0.5, "palette_match": 0.74}
    styles = {"ember": ("none", ["#1a0500", "#c1272d", "#ffb627"], metrics),
              "odd": ("afx-tiny", ["red;background:url(x)", "#00ff00"], {**metrics, "palette_match": 0.2})}
    for name, (clip, colours, m) in styles.items():
        folder = tmp_path / name / "0123456789abcdef"
        folder.mkdir(parents=True)
        Image.new("RGB", (48, 9), "black").save(folder / "preview.png")
        (folder / "style.json").write_text(json.dumps({
            "name": name, "id": "0123456789abcdef", "created": "2026-12-02T08:00:00",
            "spec": {"prompts": [{"text": f"{name} <b>"}]}, "palette": {"colors": colours},
            "guidance": {"clip_model": clip, "pretrained": None, "trained_guidance": False},
            "training": {"seconds": 61.2, "metrics": m}}))
    page = write_mood_board(Library(tmp_path)).read_text()
    ember, odd = page.split("<div class=\"card\">")[1:]
    assert [f"background:{c}" in ember for c in styles["ember"][1]] == [True, True, True]
    assert "palette match 74%" in ember and "class=\"match good\"" in ember
    assert "<b>187</b>motion energy" in ember and "<b>0.61</b>onset alignment" in ember and "<b>1.80</b>loud/quiet" in ember
    assert "no CLIP" in ember and "untrained guidance" not in ember  # weight-free is not "untrained"
    assert "untrained guidance" in odd and "class=\"match poor\"" in odd
    assert "url(x)" not in odd and "background:#00ff00" in odd  # only #rrggbb reaches a style attribute
    assert "&lt;b&gt;" in ember


TINY_TRAINING = ('[network]\nwidth = 16\ndepth = 2\n[training]\nclip_model = "afx-tiny"\npretrained = "none"\n'
                 "iterations = 2\nresolution = 32\ncutouts = 1\ntime_points = 2\n")


def test_one_evaluate_command_trains_and_scores_every_style_of_the_default_set(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from daemon.cli import main
    from tests.conftest import synth, write_wav

    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "glow.toml").write_text('prompts = ["glow"]\n' + TINY_TRAINING)
    (tmp_path / "specs" / "organic.toml").write_text(CLIP_SPEC)  # no weights here: held out, not a failure
    (tmp_path / "afx.toml").write_text('download_models = false\n[folders]\ninbox = "inbox"\nspecs = "specs"\n'
                                       'library = "library"\nstate = "state"\n')
    track = write_wav(tmp_path / "corpus" / "beat.wav", synth(2.0, seed=3))
    doc, art = tmp_path / "ART.md", tmp_path / "art"
    doc.write_text("# Art\n\nkept\n")
    assert main(["--config", str(tmp_path / "afx.toml"), "evaluate", "--tracks", str(track), "--seconds", "2",
                 "--size", "64x36", "--fps", "10", "--doc", str(doc), "--art", str(art), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "trained glow" in out and "held out: organic" in out
    result = json.loads((art / "evaluate.json").read_text())
    [glow] = result["styles"]
    assert glow["style"] == "glow" and glow["render_fps"] > 0 and glow["training_s"] is not None
    assert glow["aligned"].endswith("/1") and glow["ssim"] is not None and glow["motion_energy"] is not None
    assert [r["track"] for r in result["rows"]] == ["beat", "beat at -90 dB"]
    text = doc.read_text()
    assert text.startswith("# Art\n\nkept\n") and "| glow |" in text and "![glow](art/glow.jpg)" in text
    assert (art / "glow.jpg").is_file()


ROOT = Path(__file__).resolve().parents[1]
#: the roadmap's five colour experiments plus a cool and a warm variant: each must be covered by a shipped style
EXPERIMENTS = ("neon", "earth", "pastel", "mono", "fiery", "cool", "warm")


def test_the_shipped_offline_styles_are_a_designed_mood_board() -> None:
    from daemon.spec import NO_CLIP

    offline = [s for p in sorted((ROOT / "specs").glob("*.toml")) for s in load_specs(p)
               if s.training.clip_model == NO_CLIP]
    assert 7 <= len(offline) <= 10, [s.name for s in offline]
    assert all(any(s.name.startswith(word) for s in offline) for word in EXPERIMENTS)
    for spec in offline:
        palette = spec.resolved_palette()
        assert palette is not None and len(palette.colors) >= 2, spec.name  # every one is a palette style
        assert spec.network.color_mode == "palette" and spec.palette_trains, spec.name
    assert sum(s.encoder.fold > 0 or s.encoder.mirror != "none" for s in offline) >= len(offline) - 2  # symmetry
    assert len({s.style_id for s in offline}) == len({s.resolved_palette().colors for s in offline}) == len(offline)
