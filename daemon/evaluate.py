"""`afx evaluate`: render styles on real tracks and measure whether the music visibly drives the picture.

Each style is rendered (frames only, no video file) at 320×180 over the first `seconds` of every track,
plus a near-silent copy of the loudest track (−90 dB, synthesised in memory), and scored with the metrics
of daemon.metrics. An excerpt is the opening of the render the service makes of the whole track: its
features are extracted and normalised over the whole track and the time input advances at the whole
track's pace (a render of a cut-off 6-s copy would sweep the time input over its whole range in 6 s, 30×
faster than the real render of a 3-minute track does). The targets of docs/ART.md are checked per style
and track, a contact sheet per style (rows: tracks, columns: moments) is written as a small JPEG, and the
table replaces the block between the markers in docs/ART.md. Nothing here is asserted in a timed test.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw

from daemon.audio.decode import ANALYSIS_RATE, decode_audio
from daemon.audio.features import FeatureTimeline, extract_features
from daemon.metrics import TemporalMetrics
from daemon.palette import PaletteMatch
from daemon.render import RenderSettings, render_frames
from daemon.report import write_json_atomic
from daemon.style import Style

SILENT_DB = -90.0  # the near-silent track: the loudest track attenuated this much
SSIM_GOAL, ALIGNMENT_GOAL, SILENCE_SHARE, CONTRAST_GOAL = 0.90, 0.5, 0.10, 2.0
PALETTE_GOAL = 0.70  # palette match of a style with a palette (docs/ART.md)
SHEET_MOMENTS = 6  # frames per track in a contact sheet
THUMB = (160, 90)
BEGIN, END = "<!-- afx evaluate: begin -->", "<!-- afx evaluate: end -->"


@dataclass(frozen=True)
class Excerpt:
    """The first `seconds` of a track (or of the synthesised near-silent one): the whole track's samples,
    of which the first `seconds` are rendered and measured; `rms_db` is that opening's level."""

    label: str
    samples: np.ndarray
    rms_db: float
    seconds: float

    def frames(self, timeline: FeatureTimeline) -> int:
        """How many of the whole track's frames the excerpt covers."""
        return max(2, min(timeline.n_frames, int(round(self.seconds * timeline.fps))))


def load_excerpts(paths: Sequence[Path], *, seconds: float, sr: int = ANALYSIS_RATE) -> list[Excerpt]:
    """The tracks' first `seconds`, then the loudest one at SILENT_DB as `<name> at -90 dB`."""
    excerpts = []
    for path in paths:
        _, samples = decode_audio(path, sample_rate=sr)
        excerpts.append(Excerpt(Path(path).stem, samples, _rms_db(samples[: int(seconds * sr)]), seconds))
    if excerpts:
        loud = max(excerpts, key=lambda e: e.rms_db)
        faint = (loud.samples * 10 ** (SILENT_DB / 20)).astype(np.float32)
        excerpts.append(Excerpt(f"{loud.label} at {SILENT_DB:.0f} dB", faint,
                                _rms_db(faint[: int(seconds * sr)]), seconds))
    return excerpts


def _rms_db(samples: np.ndarray) -> float:
    return float(20 * np.log10(max(float(np.sqrt(np.mean(samples.astype(np.float64) ** 2))), 1e-12)))


def measure_span(style: Style, timeline: FeatureTimeline, *, start: int = 0, stop: int | None = None,
                 size: tuple[int, int], fps: float,
                 on_frame: Callable[[int, torch.Tensor], None] | None = None) -> dict[str, Any]:
    """The metrics of docs/ART.md (and palette match) on frames [start, stop) of the track's render, as they
    are in the render of the whole track, on the CPU at `size`; `render_s` is the seconds spent rendering
    alone (not the metrics). `on_frame(index, frame)` sees each frame (index from `start`). The one way the
    evaluation, the mood board and sweeps measure a style."""
    stop = timeline.n_frames if stop is None else min(stop, timeline.n_frames)
    n = stop - start
    metrics = TemporalMetrics(n, fps=fps)
    match = PaletteMatch(style.palette, n)
    settings = RenderSettings(width=size[0], height=size[1], fps=int(fps), device="cpu")
    rendering, index = 0.0, start
    started = time.perf_counter()
    for batch in render_frames(style, timeline, settings, device=torch.device("cpu"), start=start, stop=stop):
        rendering += time.perf_counter() - started
        metrics.update(batch)
        match.update(batch)
        if on_frame is not None:
            for frame in batch:
                on_frame(index, frame)
                index += 1
        started = time.perf_counter()
    return {**metrics.result(timeline.onset[start:stop], level=timeline.channel_values()[start:stop, 2]),
            "palette_match": match.result(), "render_s": rendering}


def measure(style: Style, timeline: FeatureTimeline, *, size: tuple[int, int], fps: int,
            frames: int | None = None) -> tuple[dict[str, Any], list[np.ndarray]]:
    """`measure_span` of the first `frames` frames (default: all) of the track's render, and SHEET_MOMENTS
    frames evenly spread over them (thumbnails)."""
    n = timeline.n_frames if frames is None else min(frames, timeline.n_frames)
    picks = set(np.linspace(0, n - 1, SHEET_MOMENTS).round().astype(int).tolist())
    thumbs: list[np.ndarray] = []

    def keep(index: int, frame: torch.Tensor) -> None:
        if index in picks:
            thumbs.append(np.asarray(Image.fromarray(frame.numpy()).resize(THUMB)))

    measured = measure_span(style, timeline, stop=n, size=size, fps=fps, on_frame=keep)
    return {**measured, "render_s": round(measured["render_s"], 3)}, thumbs


def check_targets(rows: list[dict[str, Any]]) -> None:
    """Add target verdicts to each row of one style: ssim+alignment, silence share, contrast."""
    loudest = max((r for r in rows if not r["silent"]), key=lambda r: r["rms_db"], default=None)
    for r in rows:
        m = r["metrics"]
        reactive = max(m["onset_alignment"] or 0.0, m["onset_correlation"] or 0.0)
        r["react_met"] = None if r["silent"] else bool((m["temporal_ssim_mean"] or 0) >= SSIM_GOAL
                                                      and reactive >= ALIGNMENT_GOAL)  # silence has no onsets
        r["contrast_met"] = None if m["loud_quiet_contrast"] is None else m["loud_quiet_contrast"] >= CONTRAST_GOAL
        palette = m.get("palette_match")  # rows of an earlier afx have none
        r["palette_met"] = None if palette is None else palette >= PALETTE_GOAL
        r["silence_share"] = None
        if r["silent"] and loudest is not None and loudest["metrics"]["motion_energy"]:
            r["silence_share"] = m["motion_energy"] / loudest["metrics"]["motion_energy"]
        r["silence_met"] = None if r["silence_share"] is None else r["silence_share"] <= SILENCE_SHARE


def contact_sheet(style_name: str, labels: Sequence[str], thumbs: Sequence[list[np.ndarray]], path: Path) -> Path:
    """Rows of thumbnails (one row per track), each labelled; saved as a small JPEG."""
    w, h = THUMB
    label_h = 14
    sheet = Image.new("RGB", (w * SHEET_MOMENTS, (h + label_h) * len(labels) + label_h), "black")
    draw = ImageDraw.Draw(sheet)
    draw.text((4, 1), f"{style_name}: {SHEET_MOMENTS} moments evenly over each excerpt", fill="white")
    for row, (label, frames) in enumerate(zip(labels, thumbs)):
        y = label_h + row * (h + label_h)
        draw.text((4, y + 1), label, fill="white")
        for col, frame in enumerate(frames[:SHEET_MOMENTS]):
            sheet.paste(Image.fromarray(frame), (col * w, y + label_h))
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path, quality=80)
    return path


def evaluate(styles: Sequence[Style], excerpts: Sequence[Excerpt], *, art_dir: Path, size: tuple[int, int] = (320, 180),
             fps: int = 30, on_row: Callable[[dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
    """Render every style on every excerpt; returns the rows (with targets) and writes one sheet per style."""
    rows: list[dict[str, Any]] = []
    timelines: dict[tuple[int, tuple[str, ...]], FeatureTimeline] = {}  # styles of the same sets share them
    for style in styles:
        style_rows, style_thumbs = [], []
        for index, excerpt in enumerate(excerpts):
            started = time.perf_counter()
            key = (index, tuple(style.features.sets))
            if key not in timelines:
                timelines[key] = extract_features(excerpt.samples, sr=ANALYSIS_RATE, fps=fps, sets=key[1])
            timeline = timelines[key]
            frames = excerpt.frames(timeline)
            metrics, thumbs = measure(style, timeline, size=size, fps=fps, frames=frames)
            row = {"style": style.name, "track": excerpt.label, "rms_db": round(excerpt.rms_db, 1),
                   "silent": excerpt.rms_db < -80, "frames": frames, "metrics": metrics,
                   "seconds": round(time.perf_counter() - started, 1)}
            style_rows.append(row)
            style_thumbs.append(thumbs)
            if on_row:
                on_row(row)
        check_targets(style_rows)
        sheet = contact_sheet(style.name, [e.label for e in excerpts], style_thumbs, art_dir / f"{style.name}.jpg")
        for row in style_rows:
            row["sheet"] = sheet.name
        rows.extend(style_rows)
    return rows


def _mark(value: bool | None) -> str:
    return "n/a" if value is None else ("yes" if value else "**no**")


def _num(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def table(rows: Sequence[dict[str, Any]]) -> str:
    """The markdown table of docs/ART.md."""
    lines = ["| style | track | palette match | SSIM | motion /s | onset align. | onset corr. | loud/quiet "
             "| SSIM≥0.9 & react≥0.5 | silent ≤10 % | contrast≥2 |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        m = r["metrics"]
        silence = _mark(r["silence_met"]) + (f" ({r['silence_share']:.0%})" if r["silence_share"] is not None else "")
        lines.append(f"| {r['style']} | {r['track']} | {_num(m.get('palette_match'))} "
                     f"| {_num(m['temporal_ssim_mean'], 3)} | {_num(m['motion_energy'], 1)} "
                     f"| {_num(m['onset_alignment'])} | {_num(m['onset_correlation'])} "
                     f"| {_num(m['loud_quiet_contrast'])} | {_mark(r['react_met'])} | {silence} "
                     f"| {_mark(r['contrast_met'])} |")
    return "\n".join(lines)


def summary(rows: Sequence[dict[str, Any]]) -> str:
    """How many (style, track) pairs meet each target."""
    def count(key: str) -> str:
        judged = [r[key] for r in rows if r[key] is not None]
        return f"{sum(judged)}/{len(judged)}"

    return (f"Targets met: SSIM ≥ {SSIM_GOAL} with onset alignment or correlation ≥ {ALIGNMENT_GOAL}: "
            f"{count('react_met')}; near-silent motion ≤ {SILENCE_SHARE:.0%} of the loudest track's: "
            f"{count('silence_met')}; loud/quiet contrast ≥ {CONTRAST_GOAL}: {count('contrast_met')}; "
            f"palette match ≥ {PALETTE_GOAL}: {count('palette_met')} "
            "(n/a: the excerpt's level hardly varies, or it is the silent one).")


def style_summary(rows: Sequence[dict[str, Any]], styles: Sequence[Style] = ()) -> list[dict[str, Any]]:
    """One row per style: means over its loud excerpts, how many meet SSIM ≥ 0.9 with onset alignment ≥ 0.5
    (alignment alone: issue 11's target), the palette target, training seconds and render speed."""
    by_name = {s.name: s for s in styles}
    summary = []
    for name in dict.fromkeys(r["style"] for r in rows):
        loud = [r for r in rows if r["style"] == name and not r["silent"]]
        mine = [r for r in rows if r["style"] == name]

        def mean(key: str, group: Sequence[dict[str, Any]] = loud) -> float | None:
            values = [r["metrics"].get(key) for r in group if r["metrics"].get(key) is not None]
            return float(np.mean(values)) if values else None

        aligned = [(r["metrics"]["temporal_ssim_mean"] or 0) >= SSIM_GOAL
                   and (r["metrics"]["onset_alignment"] or 0) >= ALIGNMENT_GOAL for r in loud]
        match = mean("palette_match", mine)
        frames = sum(r["frames"] for r in mine)
        render_s = sum(r["metrics"].get("render_s") or 0.0 for r in mine)
        style = by_name.get(name)
        summary.append({
            "style": name, "palette": list(getattr(getattr(style, "palette", None), "colors", None) or []),
            "palette_match": match, "palette_met": None if match is None else match >= PALETTE_GOAL,
            "ssim": mean("temporal_ssim_mean"), "onset_alignment": mean("onset_alignment"),
            "motion_energy": mean("motion_energy"), "loud_quiet_contrast": mean("loud_quiet_contrast"),
            "aligned": f"{sum(aligned)}/{len(aligned)}",
            "training_s": (style.training or {}).get("seconds") if style is not None else None,
            "render_fps": round(frames / render_s, 1) if render_s else None,
            "sheet": mine[0].get("sheet") if mine else None})
    return summary


def summary_table(summary: Sequence[dict[str, Any]]) -> str:
    """The per-style markdown table of docs/ART.md."""
    lines = [("| style | palette | palette match | SSIM | onset align. | motion /s | loud/quiet | SSIM≥0.9 & align≥0.5 "
              "| training s | render fps |"), "|---|---|---|---|---|---|---|---|---|---|"]
    for r in summary:
        match = "—" if r["palette_match"] is None else f"{r['palette_match']:.0%}" + (
            "" if r["palette_met"] else " (**< 70 %**)")
        colours = " ".join(f"`{c}`" for c in r["palette"]) or "—"
        lines.append(f"| {r['style']} | {colours} | {match} | {_num(r['ssim'], 3)} | {_num(r['onset_alignment'])} "
                     f"| {_num(r['motion_energy'], 1)} | {_num(r['loud_quiet_contrast'])} | {r['aligned']} "
                     f"| {_num(r['training_s'], 0)} | {_num(r['render_fps'], 1)} |")
    return "\n".join(lines)


def rejudge(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows of an earlier run (evaluate.json) with the targets judged again, style by style."""
    rows = [dict(r) for r in rows]
    for name in dict.fromkeys(r["style"] for r in rows):
        check_targets([r for r in rows if r["style"] == name])
    return rows


def write_results(rows: Sequence[dict[str, Any]], *, doc: Path, art_dir: Path, command: str,
                  styles: Sequence[Style] = ()) -> Path:
    """evaluate.json beside the sheets, and the tables between the markers of `doc` (appended if absent):
    one row per style, each style's contact sheet, then every (style, track) row."""
    per_style = style_summary(rows, styles)
    write_json_atomic(art_dir / "evaluate.json", {"command": command, "styles": per_style, "rows": list(rows)})
    rel = art_dir.relative_to(doc.parent) if art_dir.is_relative_to(doc.parent) else art_dir
    sheets = [f"![{r['style']}]({(rel / r['sheet']).as_posix()})" for r in per_style if r["sheet"]]
    block = "\n".join([BEGIN, "", f"Produced by `{command}`.", "", summary_table(per_style), "",
                       *[line for sheet in sheets for line in (sheet, "")],
                       "Every style on every excerpt:", "", table(rows), "", summary(rows), "", END])
    text = doc.read_text(encoding="utf-8") if doc.is_file() else "# Art\n\n"
    if BEGIN in text and END in text:
        text = text[:text.index(BEGIN)] + block + text[text.index(END) + len(END):]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    doc.write_text(text, encoding="utf-8")
    return doc
