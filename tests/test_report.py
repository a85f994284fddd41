"""Reports keep their JSON: the stored examples in tests/data/reports (written by afx before the Report type
existed) read back into `Report`/`FailureReport` and write out byte for byte, and a render today writes
the same keys in the same order, with the same values where a render is deterministic."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from daemon.errors import AudioError
from daemon.report import FailedJob, FailureReport, Report

EXAMPLES = Path(__file__).parent / "data" / "reports"


def _text(data: dict[str, object]) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"  # as write_json_atomic writes it


@pytest.mark.parametrize("name", ["render.json", "render-published.json"])
def test_a_stored_report_reads_back_and_writes_the_same_json(name: str) -> None:
    path = EXAMPLES / name
    report = Report.load(path)
    assert _text(report.to_dict()) == path.read_text()
    assert report.video.frames == 24 and report.track.sha256.startswith("645446c3")


def test_the_service_sections_are_typed() -> None:
    report = Report.load(EXAMPLES / "render-published.json")
    assert report.job is not None and report.job.by == "afx run" and report.job.attempt == 1
    assert report.published is not None and Report.load(EXAMPLES / "render.json").job is None


@pytest.mark.parametrize("name", ["failure.json", "spec-failure.json"])
def test_a_stored_failure_report_reads_back_and_writes_the_same_json(name: str) -> None:
    path = EXAMPLES / name
    assert _text(FailureReport.load(path).to_dict()) == path.read_text()


def test_an_internal_errors_report_gains_only_the_null_context_keys() -> None:
    """The documented change (docs/SERVICE.md): every `error` object has the same keys; an internal error's
    path, key and stderr_tail are null (they were absent)."""
    path = EXAMPLES / "internal-failure.json"
    old = json.loads(path.read_text())
    new = FailureReport.load(path).to_dict()
    assert {k: v for k, v in new.items() if k != "error"} == {k: v for k, v in old.items() if k != "error"}
    added = {k: new["error"][k] for k in set(new["error"]) - set(old["error"])}
    assert added == {"path": None, "key": None, "stderr_tail": None}
    assert all(new["error"][k] == v for k, v in old["error"].items())


def test_a_failure_report_built_today_matches_the_stored_one() -> None:
    stored = json.loads((EXAMPLES / "failure.json").read_text())
    error = AudioError("ffmpeg could not decode the file", path="inbox/corrupt.wav", hint="re-encode it",
                       stderr_tail="Invalid data")
    job = FailedJob(key="k" * 64, kind="render", attempts=1, state="bad_input", retry_at=None,
                    style_id="abcd" * 4, output=None)
    built = FailureReport.of(error, stage="render", track="inbox/corrupt.wav", style="neon", job=job).to_dict()
    assert list(built) == list(stored)
    assert {k: v for k, v in built.items() if k not in ("time", "versions")} == {
        k: v for k, v in stored.items() if k not in ("time", "versions")}


@pytest.mark.parametrize("change, words", [
    (lambda d: d.update(schema="afx.report/2"), "schema"),
    (lambda d: d["video"].pop("frames"), "report.video: missing key 'frames'"),
    (lambda d: d["timing"].update(extra=1), "report.timing: unknown key 'extra'"),
    (lambda d: d.update(track=None), "report.track: expected an object"),
    (lambda d: d["video"].update(frames="24"), "report.video.frames: expected int, got '24'"),
    (lambda d: d["style"].update(trained=1), "report.style.trained: expected bool, got 1"),
])
def test_a_damaged_report_is_refused_naming_the_key(change, words: str) -> None:
    data = json.loads((EXAMPLES / "render.json").read_text())
    change(data)
    with pytest.raises(ValueError, match=words):
        Report.from_dict(data)


def test_a_render_today_writes_the_stored_reports_json(tmp_path: Path) -> None:
    """The same render as the stored example (the same synthesised track, random:5, 64x36 at 12 fps): the
    same keys in the same order, and the same values except timings, dates, paths and versions (metrics
    within 5 %: bf16 CPUs round differently)."""
    from daemon.cli import main
    from tests.conftest import synth, write_wav

    audio = write_wav(tmp_path / "song.wav", synth(2.0))
    out = tmp_path / "out" / "song.mp4"
    assert main(["render", str(audio), "--style", "random:5", "--size", "64x36", "--fps", "12", "-o", str(out)]) == 0
    stored = json.loads((EXAMPLES / "render.json").read_text())
    written = json.loads(out.with_suffix(".json").read_text())

    def shape(value: object) -> object:
        return {k: shape(v) for k, v in value.items()} if isinstance(value, dict) else type(value).__name__

    assert json.dumps(shape(written)) == json.dumps(shape(stored))  # keys, order and JSON types
    varying = {("created",), ("track", "path"), ("video", "path"), ("video", "bytes"), ("timing",), ("versions",)}
    for section, values in stored.items():
        if (section,) in varying:
            continue
        if isinstance(values, dict):
            for key, value in values.items():
                if (section, key) not in varying:
                    assert written[section][key] == pytest.approx(value, rel=0.05, abs=0.02) if isinstance(value, float) \
                        else written[section][key] == value, f"{section}.{key}"
        else:
            assert written[section] == values, section


def test_publishing_keeps_a_report_an_earlier_afx_wrote(tmp_path: Path) -> None:
    """Reports of earlier releases have fewer metrics under the same schema: publishing changes only their
    paths (an upgrade must not render again), while a current report is read and written as a Report."""
    from daemon.report import published_report

    older = json.loads((EXAMPLES / "render.json").read_text())
    del older["metrics"]["loud_quiet_contrast"]
    (tmp_path / "older.json").write_text(json.dumps(older))
    out = published_report(tmp_path / "older.json", track_path="inbox/song.wav", video_path=tmp_path / "v.mp4")
    assert out is not None and out["metrics"] == older["metrics"] and out["published"]
    assert out["track"]["path"] == "inbox/song.wav" and out["video"]["path"] == str(tmp_path / "v.mp4")
    current = published_report(EXAMPLES / "render.json", track_path="inbox/song.wav", video_path=tmp_path / "v.mp4")
    assert current is not None and Report.from_dict(current).published == current["published"]
    (tmp_path / "damaged.json").write_text('{"track": null}')
    assert published_report(tmp_path / "damaged.json", track_path="x", video_path=tmp_path / "v.mp4") is None
    assert published_report(tmp_path / "gone.json", track_path="x", video_path=tmp_path / "v.mp4") is None
