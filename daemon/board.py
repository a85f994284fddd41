"""Pages people open in a browser without a server: the library's mood board and sweep comparisons.

Everything is static HTML with relative links to the PNGs beside it; text from specs is HTML-escaped.
"""

from __future__ import annotations

import html
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

from daemon.atomic import atomic_path, atomic_write_text
from daemon.library import Library
from daemon.report import write_json_atomic

PAGE_CSS = """
body{font-family:system-ui,sans-serif;background:#111;color:#eee;margin:2rem}
h1{font-weight:600}.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(360px,1fr));gap:1.2rem}
.card{background:#1c1c1c;border-radius:10px;overflow:hidden;box-shadow:0 2px 8px #0008}
.card img{width:100%;display:block}.body{padding:.8rem 1rem}.name{font-size:1.1rem;font-weight:600}
.prompt{color:#cfc;margin:.3rem 0}.neg{color:#fbb}.meta{color:#aaa;font-size:.85rem}
.warn{display:inline-block;background:#a40;color:#fff;border-radius:4px;padding:0 .4rem;font-size:.8rem}
table{border-collapse:collapse}td,th{border-bottom:1px solid #333;padding:.4rem .7rem;text-align:left}
"""


def _page(title: str, body: str) -> str:
    return (f"<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{PAGE_CSS}</style></head><body><h1>{html.escape(title)}</h1>\n{body}\n</body></html>\n")


# the metrics of docs/ART.md, as the pages label them (onset correlation alone is easy to fool)
METRIC_LABELS = {"motion_energy": "motion /s", "onset_alignment": "onset alignment",
                 "loud_quiet_contrast": "loud/quiet", "onset_correlation": "onset corr."}


def _metrics_line(metrics: dict[str, Any]) -> str:
    """One line of a style's clip metrics for its card (empty for styles trained before they existed)."""
    if not metrics:
        return ""
    parts = [f"SSIM {_fmt(metrics.get('temporal_ssim_mean'), 3)}"]
    parts += [f"{label} {_fmt(metrics.get(key), 3)}" for key, label in METRIC_LABELS.items()]
    return f"<div class=\"meta\">{html.escape(' · '.join(parts))}</div>"


def _card(meta: dict[str, Any], folder: Path, root: Path) -> str:
    spec = meta.get("spec") or {}
    guidance = meta.get("guidance") or {}
    training = meta.get("training") or {}
    prompts = "".join(f"<div class=\"prompt\">“{html.escape(p['text'])}”</div>" for p in spec.get("prompts", []))
    negatives = "".join(f"<div class=\"prompt neg\">not “{html.escape(p['text'])}”</div>"
                        for p in spec.get("negative_prompts", []))
    warn = "" if guidance.get("trained_guidance") else " <span class=\"warn\">untrained guidance model</span>"
    sim = training.get("mean_similarity")
    preview = (folder / "preview.png").relative_to(root).as_posix()
    return (f"<div class=\"card\"><img src=\"{html.escape(preview)}\" alt=\"preview of {html.escape(meta['name'])}\">"
            f"<div class=\"body\"><div class=\"name\">{html.escape(meta['name'])}{warn}</div>{prompts}{negatives}"
            f"<div class=\"meta\">{html.escape(str(guidance.get('clip_model')))} / "
            f"{html.escape(str(guidance.get('pretrained')))} · similarity "
            f"{'—' if sim is None else f'{sim:.4f}'} · {training.get('seconds', '—')} s · "
            f"{html.escape(str(meta.get('created', ''))[:16])} · id {html.escape(meta['id'])}</div>"
            f"{_metrics_line(training.get('metrics') or {})}{_rating_line(folder)}</div></div>")


def _rating_line(folder: Path) -> str:
    """The style's rating from the dashboard (daemon.ratings), when it has one."""
    from daemon.ratings import read_rating, stars_text

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


def write_sweep_report(rows: Sequence[dict[str, Any]], out_dir: Path, *, title: str) -> dict[str, Path]:
    """comparison.json, comparison.html and contact_sheet.png for the variants of one sweep.

    Each row: name, variant, folder (style folder with preview.png), similarity, seconds, temporal_ssim_mean,
    clip_model, trained_guidance.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = write_json_atomic(out_dir / "comparison.json", {"title": title, "variants": list(rows)})
    head = "".join(f"<th>{h}</th>" for h in ("preview", "variant", "CLIP", "similarity", "training s", "temporal SSIM",
                                            *METRIC_LABELS.values()))
    lines = []
    for row in rows:
        preview = os.path.relpath(Path(row["folder"]) / "preview.png", out_dir)
        warn = "" if row.get("trained_guidance") else " <span class=\"warn\">untrained guidance</span>"
        lines.append(f"<tr><td><img src=\"{html.escape(preview)}\" width=\"360\"></td>"
                     f"<td>{html.escape(row['variant'] or row['name'])}{warn}</td><td>{html.escape(str(row['clip_model']))}</td>"
                     f"<td>{_fmt(row.get('similarity'))}</td><td>{_fmt(row.get('seconds'), 1)}</td>"
                     f"<td>{_fmt(row.get('temporal_ssim_mean'))}</td>"
                     + "".join(f"<td>{_fmt(row.get(k), 3)}</td>" for k in METRIC_LABELS) + "</tr>")
    html_path = atomic_write_text(out_dir / "comparison.html",
                                   _page(title, f"<table><tr>{head}</tr>{''.join(lines)}</table>"))
    sheet_path = contact_sheet([(Path(r["folder"]) / "preview.png", r["variant"] or r["name"]) for r in rows],
                               out_dir / "contact_sheet.png")
    return {"json": json_path, "html": html_path, "sheet": sheet_path}


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
    return "—" if value is None else f"{value:.{digits}f}"
