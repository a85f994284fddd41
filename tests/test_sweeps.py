"""daemon.pipeline.sweep_comparison, the one way `afx train` and the service make a sweep's comparison page:
what a row holds, which rows are measured again, and variants that are not trained yet. Random styles stand
in for trained ones (to the library, a style in its folder is trained)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from daemon import pipeline
from daemon.library import Library
from daemon.spec import StyleSpec, load_specs
from daemon.style import random_style

SWEEP = """prompts = ["flowing shapes"]
[network]
depth = 2
[training]
clip_model = "afx-tiny"
pretrained = "none"
[render]
width = 64
height = 36
fps = 10
[sweep]
"network.width" = [8, 16, 24]
"""


def place(library: Library, spec: StyleSpec, seed: int) -> None:
    style = random_style(seed, network=spec.network, encoder=spec.encoder, sets=tuple(spec.audio.features))
    style.name, style.style_id = spec.name, spec.style_id
    style.save(library.folder_for(spec.name, spec.style_id))


@pytest.fixture
def sweep(tmp_path: Path) -> tuple[Library, list[StyleSpec]]:
    path = tmp_path / "specs" / "sw.toml"
    path.parent.mkdir()
    path.write_text(SWEEP)
    variants = load_specs(path)
    library = Library(tmp_path / "library")
    for i, spec in enumerate(variants[:2]):  # the third is "not trained yet"
        place(library, spec, seed=i)
    return library, variants


@pytest.fixture
def measured(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the styles whose clip was rendered and measured, in order."""
    calls: list[str] = []
    real = pipeline.clip_metrics

    def counting(style: Any, timeline: Any, **kwargs: Any) -> dict[str, Any]:
        calls.append(style.name)
        return real(style, timeline, **kwargs)

    monkeypatch.setattr(pipeline, "clip_metrics", counting)
    return calls


def test_rows_side_by_side_and_untrained_variants_marked(sweep: tuple[Library, list[StyleSpec]],
                                                         measured: list[str]) -> None:
    library, variants = sweep
    pages = pipeline.sweep_comparison("sw", variants, library=library)
    assert pages["html"] == library.root / "_sweeps" / "sw" / "comparison.html"
    rows = json.loads(pages["json"].read_text())["variants"]
    assert [r["trained"] for r in rows] == [True, True, False]
    for row in rows[:2]:
        assert row["audio"] == "synthetic prior walk (seed 0)"
        assert 0 < row["temporal_ssim_mean"] <= 1 and row["detail"] > 0 and row["render_fps"] > 0
        assert row["motion_energy"] >= 0 and "onset_alignment" in row
        assert row["clip_similarity"] is None and row["palette_match"] is None  # untrained guide, no palette
    page = pages["html"].read_text()
    assert "not trained yet" in page and page.count("<tr>") == 4
    assert measured == [variants[0].name, variants[1].name]


def test_a_row_is_measured_once_per_style_and_audio(sweep: tuple[Library, list[StyleSpec]], measured: list[str],
                                                    make_wav: Any) -> None:
    library, variants = sweep
    pipeline.sweep_comparison("sw", variants, library=library)
    place(library, variants[2], seed=2)  # the service, after the third variant's training
    pipeline.sweep_comparison("sw", variants, library=library)
    assert measured == [v.name for v in variants]  # the first two were reused
    track = make_wav("song.wav", 2.0)
    pages = pipeline.sweep_comparison("sw", variants, library=library, fallback=[track])
    assert measured[3:] == [v.name for v in variants]  # other audio: every row measured again
    rows = json.loads(pages["json"].read_text())["variants"]
    assert all(r["audio"].startswith("song.wav ") for r in rows)


def test_a_damaged_or_outdated_comparison_is_measured_again(sweep: tuple[Library, list[StyleSpec]],
                                                            measured: list[str]) -> None:
    library, variants = sweep
    pages = pipeline.sweep_comparison("sw", variants, library=library)
    table = json.loads(pages["json"].read_text())
    del table["variants"][0]["measured"]["detail"]  # written by an afx without the detail metric
    pages["json"].write_text(json.dumps(table))
    pipeline.sweep_comparison("sw", variants, library=library)
    assert measured[2:] == [variants[0].name]
    pages["json"].write_text("{not json")
    pipeline.sweep_comparison("sw", variants, library=library)
    assert measured[3:] == [variants[0].name, variants[1].name]


def test_weight_free_variants_are_not_flagged_as_untrained_guidance(tmp_path: Path) -> None:
    from daemon.board import write_sweep_report

    folder = tmp_path / "style"
    folder.mkdir()
    common = {"variant": "", "folder": str(folder), "trained": True}
    pages = write_sweep_report([{**common, "name": "free", "clip_model": "none", "trained_guidance": False},
                                {**common, "name": "tiny", "clip_model": "afx-tiny", "trained_guidance": False}],
                               tmp_path / "out", title="t")
    page = pages["html"].read_text()
    assert "none (weight-free)" in page and page.count("untrained guidance") == 1
