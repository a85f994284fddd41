"""`afx bench --quick` as a smoke check: it runs, writes its JSON with every section, and the figures the
issue's targets are read from are numbers. No timing is asserted here: timings live in the benchmark."""

from __future__ import annotations

import contextlib
import io
import json
import math

import pytest

from daemon.cli import main


def number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


@pytest.fixture(scope="module")
def bench(tmp_path_factory) -> tuple[dict, str]:
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    screen = io.StringIO()
    with contextlib.redirect_stdout(screen):
        assert main(["bench", "--quick", "--device", "cpu", "--out", str(out)]) == 0
    return json.loads(out.read_text()), screen.getvalue()


def test_bench_writes_every_section(bench):
    result, _ = bench
    assert result["schema"] == "afx.bench/1" and result["plan"] == "quick" and result["devices"] == ["cpu"]
    assert {"cpu", "cores", "cpu_flags", "load_average_start", "load_average_end"} <= set(result["machine"])
    for section in ("render", "quality", "end_to_end", "training", "features", "encoder", "targets"):
        assert result[section], f"section {section} is empty"
        assert not [row for row in result[section] if "error" in row], f"{section}: {result[section]}"
    # the exported shader in headless Chromium: measured, or skipped with the reason where none is installed
    assert {row["weights"] for row in result["shader"]} == {"uniform", "texture", "inline"}
    assert all(row.get("fps", 0) > 0 or "Chromium" in row.get("skipped", "") for row in result["shader"])


def test_render_rows_compare_the_renderer_with_the_reference_path(bench):
    result, _ = bench
    assert {row["network"] for row in result["render"]} == {"128x4", "256x4"}
    for row in result["render"]:
        for path in ("renderer", "reference"):
            assert number(row[path]["fps"]) and number(row[path]["x_realtime"]) and row[path]["frames"] >= 1
        assert number(row["ratio"])
        assert row["ratio"] == pytest.approx(row["renderer"]["fps"] / row["reference"]["fps"], rel=0.01)
    for row in result["quality"]:
        assert number(row["psnr_db"]) and row["precision"] in ("fp32", "bf16")


def test_end_to_end_memory_training_features_encoder(bench):
    result, _ = bench
    renders = [row for row in result["end_to_end"] if "summary" not in row]
    assert len(renders) == 2 and all(number(r["total_s"]) and number(r["peak_rss_mb"]) for r in renders)
    memory = [row for row in result["end_to_end"] if row.get("summary") == "memory"]
    assert len(memory) == 1 and number(memory[0]["rss_ratio"])
    assert [row["clip_model"] for row in result["training"]] == ["afx-tiny", "none"]
    assert number(result["training"][0]["steps_per_s"])
    no_clip = result["training"][1]  # the style without CLIP: timed, and its whole default training estimated
    assert number(no_clip["default_iterations_s"]) and no_clip["iterations"] == 3 and no_clip["resolution"] == 48
    assert any(t["target"].startswith("cpu style without CLIP") for t in result["targets"])
    assert {row["set"] for row in result["features"]} == {"fft", "mfcc_chroma"}
    assert all(number(row["x_realtime"]) for row in result["features"])
    assert number(result["encoder"][0]["fps"])
    assert all(isinstance(t["met"], bool) and number(t["goal"]) for t in result["targets"])


def test_table_on_screen(bench):
    _, screen = bench
    assert "ratio" in screen and "PSNR" in screen and "steps/s" in screen and "frames/s" in screen
    assert "target" in screen
