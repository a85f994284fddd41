"""Ratings: a person's 1-5 verdict on a style version and a note, kept in the library beside the style.

`library/<name>/<id>/rating.json` — beside the weights it judges, so it moves with the folder (an id
upgrade renames the folder), survives restarts and needs no database. The dashboard writes it; the mood
board (`library/index.html`) and `afx library` show it. Nothing here reads a style's weights.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from daemon.atomic import atomic_write_text
from daemon.errors import StyleError
from daemon.report import now_iso

RATING_FILE = "rating.json"
STARS = range(1, 6)  # the scale: 1 (poor) … 5 (excellent)
MAX_NOTE_CHARS = 2000


@dataclass(frozen=True)
class Rating:
    """One person's verdict on one style version."""

    stars: int  # 1…5
    note: str  # free text, at most MAX_NOTE_CHARS
    updated: str  # ISO time of the last change


def read_rating(folder: Path) -> Rating | None:
    """The rating stored in a style folder; None when there is none (or it is unreadable)."""
    try:
        data = json.loads((Path(folder) / RATING_FILE).read_text(encoding="utf-8"))
        stars = int(data["stars"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if stars not in STARS:
        return None
    return Rating(stars=stars, note=str(data.get("note") or ""), updated=str(data.get("updated") or ""))


def write_rating(folder: Path, *, stars: int, note: str = "") -> Rating:
    """Store a rating beside the style in `folder` (atomically); the folder must be a style version."""
    folder = Path(folder)
    if not (folder / "style.json").is_file():
        raise StyleError("not a style folder (no style.json)", path=folder, hint="rate a style in the library")
    if stars not in STARS:
        raise StyleError(f"a rating is 1 to 5 stars, not {stars!r}", path=folder, hint="choose 1, 2, 3, 4 or 5")
    if len(note) > MAX_NOTE_CHARS:
        raise StyleError(f"the note is {len(note)} characters; at most {MAX_NOTE_CHARS}", path=folder,
                         hint="shorten it")
    rating = Rating(stars=stars, note=note, updated=now_iso())
    atomic_write_text(folder / RATING_FILE, json.dumps(asdict(rating), indent=2, ensure_ascii=False) + "\n")
    return rating


def stars_text(rating: Rating | None) -> str:
    """★★★☆☆ for three stars; '—' unrated."""
    return "—" if rating is None else "★" * rating.stars + "☆" * (5 - rating.stars)
