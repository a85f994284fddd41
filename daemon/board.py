"""Pages people open in a browser without a server: the library's mood board and sweep comparisons.

Everything is static HTML with relative links to the PNGs beside it; text from specs is HTML-escaped.
"""

from __future__ import annotations

import html
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

from daemon.atomic import atomic_path, atomic_write_text
from daemon.library import Library
from daemon.ratings import read_rating, stars_text
from daemon.report import write_json_atomic
from daemon.spec import NO_CLIP

HEX_COLOUR = re.compile(r"#[0-9a-fA-F]{6}")  # the only colour form a swatch's style attribute gets

PAGE_CSS = """
body{font-family:system-ui,sans-serif;background:#111;color:#eee;margin:2rem}
h1{font-weight:600}.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(360px,1fr));gap:1.2rem}
.card{background:#1c1c1c;border-radius:10px;overflow:hidden;box-shadow:0 2px 8px #0008}
.card img{width:100%;display:block}.body{padding:.8rem 1rem}.name{font-size:1.1rem;font-weight:600}
.prompt{color:#cfc;margin:.3rem 0}.neg{color:#fbb}.meta{color:#aaa;font-size:.85rem}
.warn{display:inline-block;background:#a40;color:#fff;border-radius:4px;padding:0 .4rem;font-size:.8rem}
.swatches{display:flex;gap:3px;margin:.45rem 0}.swatch{flex:1;height:18px;border-radius:3px;border:1px solid #0006}
.match{font-size:.85rem}.good{color:#8e8}.poor{color:#fa6}
.metrics{display:grid;grid-template-columns:repeat(3,1fr);gap:.2rem .6rem;margin:.4rem 0;font-size:.85rem}
.metrics b{display:block;font-size:1rem;color:#fff}.metrics span{color:#aaa}
table{border-collapse:collapse}td,th{border-bottom:1px solid #333;padding:.4rem .7rem;text-align:left}
"""


def _page(title: str, body: str) -> str:
    return (f"<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{PAGE_CSS}</style></head><body><h1>{html.escape(title)}</h1>\n{body}\n</body></html>\n")


# the metrics of docs/ART.md, as the pages label them (onset correlation alone is easy to fool)
METRIC_LABELS = {"motion_energy": "motion /s", "onset_alignment": "onset alignment",
                 "loud_quiet_contrast": "loud/quiet", "onset_correlation": "onset corr."}


# the motion metrics a card shows large (docs/ART.md): what a user compares styles by
CARD_METRICS = {"motion_energy": ("motion energy", "gray levels /s", 0), "onset_alignment": ("onset alignment", "0–1", 2),
                "loud_quiet_contrast": ("loud/quiet", "motion ratio", 2)}
PALETTE_MATCH_GOAL = 0.70  # docs/ART.md: a palette style keeps ≥ 70 % of its pixels near a palette colour


def _metrics_line(metrics: dict[str, Any]) -> str:
    """A style's clip metrics for its card (empty for styles trained before they existed): the three
    motion metrics large, then one line of the rest."""
    if not metrics:
        return ""
    cells = "".join(f"<div><b>{_fmt(metrics.get(key), digits)}</b>{html.escape(label)} <span>{html.escape(unit)}"
                    f"</span></div>" for key, (label, unit, digits) in CARD_METRICS.items())
    parts = [f"SSIM {_fmt(metrics.get('temporal_ssim_mean'), 3)}", f"onset corr. {_fmt(metrics.get('onset_correlation'), 3)}"]
    return f"<div class=\"metrics\">{cells}</div><div class=\"meta\">{html.escape(' · '.join(parts))}</div>"


def palette_colours(meta: dict[str, Any]) -> list[str]:
    """The style's palette as "#rrggbb" strings (style.json's `palette`: a list, or a table with `colors`)."""
    palette = meta.get("palette")
    if isinstance(palette, dict):
        palette = palette.get("colors")
    if not isinstance(palette, list):
        return []
    return [c for c in palette if isinstance(c, str) and HEX_COLOUR.fullmatch(c)]


def _palette_row(meta: dict[str, Any], metrics: dict[str, Any]) -> str:
    """Swatches of the style's palette and its palette match (nothing for a style without a palette)."""
    colours = palette_colours(meta)
    if not colours:
        return ""
    swatches = "".join(f"<div class=\"swatch\" style=\"background:{c}\" title=\"{c}\"></div>" for c in colours)
    match = metrics.get("palette_match")
    verdict = "" if match is None else ("good" if match >= PALETTE_MATCH_GOAL else "poor")
    shown = "palette match —" if match is None else f"palette match {match:.0%}"
    return (f"<div class=\"swatches\">{swatches}</div>"
            f"<div class=\"meta\"><span class=\"match {verdict}\">{shown}</span></div>")


def _card(meta: dict[str, Any], folder: Path, root: Path) -> str:
    spec = meta.get("spec") or {}
    guidance = meta.get("guidance") or {}
    training = meta.get("training") or {}
    prompts = "".join(f"<div class=\"prompt\">“{html.escape(p['text'])}”</div>" for p in spec.get("prompts", []))
    negatives = "".join(f"<div class=\"prompt neg\">not “{html.escape(p['text'])}”</div>"
                        for p in spec.get("negative_prompts", []))
    weight_free = guidance.get("clip_model") == NO_CLIP  # no guide, so nothing untrained
    warn = "" if _guided_or_weight_free(guidance) else " <span class=\"warn\">untrained guidance model</span>"
    sim = training.get("mean_similarity")
    preview = (folder / "preview.png").relative_to(root).as_posix()
    # what training warned about (a reference track missing, a collapse to a flat or still picture)
    warnings = "".join(f"<div class=\"meta warn\">{html.escape(w)}</div>" for w in training.get("warnings", []))
    guide = ("no CLIP (weight-free terms)" if weight_free else
             f"{guidance.get('clip_model')} / {guidance.get('pretrained')} · similarity "
             f"{'—' if sim is None else f'{sim:.4f}'}")
    return (f"<div class=\"card\"><img src=\"{html.escape(preview)}\" alt=\"preview of {html.escape(meta['name'])}\">"
            f"<div class=\"body\"><div class=\"name\">{html.escape(meta['name'])}{warn}</div>{prompts}{negatives}"
            f"<div class=\"meta\">{html.escape(guide)} · {training.get('seconds', '—')} s · "
            f"{html.escape(str(meta.get('created', ''))[:16])} · id {html.escape(meta['id'])}</div>"
            f"{_palette_row(meta, training.get('metrics') or {})}{_metrics_line(training.get('metrics') or {})}"
            f"{warnings}"
            f"{_rating_line(folder)}</div></div>")


def _guided_or_weight_free(guidance: dict[str, Any]) -> bool:
    """False only for a style whose CLIP guidance model was untrained (afx-tiny, pretrained = "none")."""
    return bool(guidance.get("trained_guidance")) or guidance.get("clip_model") == NO_CLIP


def _rating_line(folder: Path) -> str:
    """The style's rating from the dashboard (daemon.ratings), when it has one."""
    rating = read_rating(folder)
    if rating is None:
        return ""
    return (f"<div class=\"meta\">rating <span style=\"color:#fc4\">{stars_text(rating)}</span> "
            f"{html.escape(rating.note)}</div>")


def write_mood_board(library: Library) -> Path:
    """library/index.html: one card per style version, newest first within a name."""
    root = Path(library.root)
    root.mkdir(parents=True, exist_ok=True)
    cards = [_card(e.meta, e.folder, root) for e in library.entries() if (e.folder / "preview.png").is_file()]
    body = f"<div class=\"grid\">{''.join(cards)}</div>" if cards else "<p>No trained styles yet: run afx train.</p>"
    return atomic_write_text(root / "index.html", _page("afx style library", body))


#: a sweep row's columns after the preview and the variant: (row key, heading, digits); "—" where a value is
#: absent (palette_match before palettes, CLIP similarity without trained guidance, an untrained variant)
SWEEP_COLUMNS = (
    ("clip_similarity", "CLIP similarity", 4), ("palette_match", "palette match", 3),
    ("temporal_ssim_mean", "temporal SSIM", 3), ("onset_alignment", "onset alignment", 3),
    ("motion_energy", "motion /s", 1), ("detail", "detail", 2), ("loud_quiet_contrast", "loud/quiet", 2),
    ("onset_correlation", "onset corr.", 3), ("seconds", "training s", 1), ("render_fps", "render fps", 1),
)


def write_sweep_report(rows: Sequence[dict[str, Any]], out_dir: Path, *, title: str, clip: str = "") -> dict[str, Path]:
    """comparison.json, comparison.html and contact_sheet.png for the variants of one sweep.

    Each row: name, variant, id, folder (style folder with preview.png), trained, and for a trained variant
    clip_model, trained_guidance, audio (what the clip was rendered on) and SWEEP_COLUMNS' keys. `clip` says
    how the clips were rendered (shown under the title).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = write_json_atomic(out_dir / "comparison.json", {"title": title, "clip": clip, "variants": list(rows)})
    head = "".join(f"<th>{html.escape(h)}</th>" for h in ("preview", "variant", "guidance",
                                                          *(label for _, label, _ in SWEEP_COLUMNS)))
    lines = [_sweep_row(row, out_dir) for row in rows]
    audio = sorted({str(r["audio"]) for r in rows if r.get("audio")})
    note = (f"<p class=\"meta\">Each variant's clip: {html.escape(clip)}, on {html.escape(', '.join(audio))}. "
            "Metrics as in docs/ART.md; detail = mean neighbouring-pixel difference in gray levels; render fps "
            "= frames per second of rendering alone at that size; CLIP similarity only where the guidance model "
            "was trained.</p>") if audio else ""
    html_path = atomic_write_text(out_dir / "comparison.html",
                                  _page(title, f"{note}<table><tr>{head}</tr>{''.join(lines)}</table>"))
    trained = [r for r in rows if r.get("trained") and (Path(r["folder"]) / "preview.png").is_file()]
    sheet_path = contact_sheet([(Path(r["folder"]) / "preview.png", r["variant"] or r["name"]) for r in trained],
                               out_dir / "contact_sheet.png")
    return {"json": json_path, "html": html_path, "sheet": sheet_path}


def _sweep_row(row: dict[str, Any], out_dir: Path) -> str:
    label = html.escape(row["variant"] or row["name"])
    if not row.get("trained"):
        return (f"<tr><td class=\"meta\">not trained yet</td><td>{label}</td>"
                + "<td>—</td>" * (1 + len(SWEEP_COLUMNS)) + "</tr>")
    preview = os.path.relpath(Path(row["folder"]) / "preview.png", out_dir)
    warn = "" if _guided_or_weight_free(row) else " <span class=\"warn\">untrained guidance</span>"
    guide = "none (weight-free)" if row.get("clip_model") == NO_CLIP else str(row.get("clip_model"))
    return (f"<tr><td><img src=\"{html.escape(preview)}\" width=\"360\"></td><td>{label}{warn}</td>"
            f"<td>{html.escape(guide)}</td>"
            + "".join(f"<td>{_fmt(row.get(key), digits)}</td>" for key, _, digits in SWEEP_COLUMNS) + "</tr>")


def contact_sheet(items: Sequence[tuple[Path, str]], path: Path, *, width: int = 576) -> Path:
    """The previews stacked vertically, each labelled."""
    tiles = []
    for image_path, label in items:
        image = Image.open(image_path).convert("RGB")
        image = image.resize((width, max(1, round(image.height * width / image.width))))
        tile = Image.new("RGB", (width, image.height + 20), "black")
        tile.paste(image, (0, 20))
        ImageDraw.Draw(tile).text((4, 4), label[:90], fill="white")
        tiles.append(tile)
    sheet = Image.new("RGB", (width, max(1, sum(t.height for t in tiles))), "black")
    y = 0
    for tile in tiles:
        sheet.paste(tile, (0, y))
        y += tile.height
    with atomic_path(path) as tmp:
        sheet.save(tmp)
    return path


def _fmt(value: Any, digits: int = 4) -> str:
    return "—" if not isinstance(value, (int, float)) or isinstance(value, bool) else f"{value:.{digits}f}"
