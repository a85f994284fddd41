"""The style library: `library/<name>/<id>/` style folders; the newest version of a name is its default.

Listing, lookup and versions live here; building previews and the mood board page is `daemon.board`'s.
"""

from __future__ import annotations

import json
import re
import unicodedata
from urllib.parse import parse_qsl
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from daemon.atomic import atomic_write_text
from daemon.cppn_config import CPPNConfig, EncoderConfig
from daemon.errors import StyleError
from daemon.naming import MAX_STYLE_BYTES, component
from daemon.palette import Palette, explicit_palette, palette_from_words
from daemon.spec import upgraded_id
from daemon.tables import from_table, nearest

if TYPE_CHECKING:
    from daemon.style import Style

STYLE_FILE = "style.json"  # a folder holding one is a style version (daemon.style writes and reads it)


def safe_name(name: str) -> str:
    """A style or track name as a safe folder name: ASCII letters, digits, '-', '_', '.'; no leading dot."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", ascii_name).strip("-.")
    return cleaned[:100] or "unnamed"


@dataclass(frozen=True)
class StyleEntry:
    """One version of a style in the library, read from its style.json without loading weights."""

    name: str
    style_id: str
    folder: Path
    meta: dict[str, Any]

    @property
    def created(self) -> str:
        return str(self.meta.get("created", ""))


class Library:
    """A folder of styles, one subfolder per name, one sub-subfolder per version id."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def folder_for(self, name: str, style_id: str) -> Path:
        """library/<name>/<id>/, the name kept readable by daemon.naming's rule (Unicode too: safe_name
        folded every non-ASCII name into `unnamed/`); a version saved under the old folder is found there."""

        folder = self.root / component(name, max_bytes=MAX_STYLE_BYTES) / style_id
        legacy = self.root / safe_name(name) / style_id
        if legacy != folder and not (folder / STYLE_FILE).is_file() and _style_name(legacy) == name:
            return legacy
        return folder

    def entries(self) -> list[StyleEntry]:
        """Every version of every style, newest first within a name."""
        found: list[StyleEntry] = []
        if not self.root.is_dir():
            return found
        for meta_path in sorted(self.root.glob(f"*/*/{STYLE_FILE}")):
            try:
                meta = json.loads(meta_path.read_text())
            except (OSError, ValueError):
                continue
            found.append(StyleEntry(meta.get("name", meta_path.parent.parent.name), meta.get("id", ""),
                                    meta_path.parent, meta))
        found.sort(key=lambda e: e.created, reverse=True)
        found.sort(key=lambda e: e.name)  # stable: newest first within each name
        return found

    def versions(self, name: str) -> list[StyleEntry]:
        """Every version of the style `name` (or of every style in the library folder called `name`)."""
        return [e for e in self.entries() if e.name == name or e.folder.parent.name == name]

    def newest(self, name: str) -> StyleEntry | None:
        versions = self.versions(name)
        return versions[0] if versions else None

    def has(self, name: str, style_id: str) -> bool:
        return (self.folder_for(name, style_id) / STYLE_FILE).is_file()

    def upgrade_ids(self) -> dict[str, str]:
        """Move versions trained under style-id form 1 to their current id (same weights: only the way
        the id is computed changed); returns {old id: new id}. Safe to run again after a crash."""

        mapping: dict[str, str] = {}
        for entry in self.entries():
            spec = entry.meta.get("spec")
            if not isinstance(spec, dict) or spec.get("style_id") != entry.style_id:
                continue
            new = upgraded_id(spec)
            if new is None or new == entry.style_id:
                continue
            target = entry.folder.with_name(new)
            if entry.folder != target:
                if target.exists():
                    continue  # trained again under the new id meanwhile: keep that one
                entry.folder.rename(target)
            meta = {**entry.meta, "id": new, "spec": {**spec, "style_id": new}, "upgraded_from": entry.style_id}
            atomic_write_text(target / STYLE_FILE, json.dumps(meta, indent=2) + "\n")
            mapping[entry.style_id] = new
        return mapping

    def load(self, name: str, style_id: str | None = None) -> Style:
        from daemon.style import Style  # torch: listing the library (the planner, `afx status`) never loads it

        if style_id is not None:
            return Style.load(self.folder_for(name, style_id))
        entry = self.newest(name)
        if entry is None:
            known = sorted({e.name for e in self.entries()})
            raise StyleError(f"no style named '{name}' in the library", path=self.root,
                             hint=f"train it with `afx train specs/{name}.toml`"
                                  + (f"; known styles: {', '.join(known)}" if known else ""))
        return Style.load(entry.folder)


def _style_name(folder: Path) -> str | None:
    try:
        return str(json.loads((folder / STYLE_FILE).read_text())["name"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


#: random:SEED?KEY=VALUE&... settings → (config, field); `palette` is read by `random_palette`
RANDOM_SETTINGS = {"zoom": ("encoder", "coord_scale"), "detail": ("network", "spatial_gain"),
                   "fold": ("encoder", "fold"), "mirror": ("encoder", "mirror"), "mode": ("network", "color_mode"),
                   "motion": ("encoder", "motion"), "pulse": ("encoder", "pulse"),
                   "contrast": ("network", "output_gain"), "width": ("network", "width"),
                   "depth": ("network", "depth")}


def random_from_ref(ref: str) -> Style:
    """`random:SEED` or `random:SEED?zoom=3&detail=6&fold=6&mirror=x&palette=neon&mode=palette` (docs/ART.md):
    an untrained style of that seed with those settings; its name carries them (random-7_zoom-3_fold-6)."""
    from daemon.style import random_style  # torch, as in Library.load

    seed_text, _, query = ref.removeprefix("random:").partition("?")
    if not seed_text.lstrip("-").isdigit():
        raise StyleError(f"'{ref}' is not random:SEED with an integer seed", hint="e.g. --style random:7")
    tables: dict[str, dict[str, object]] = {"network": {}, "encoder": {}}
    palette, name = None, f"random-{int(seed_text)}"
    for key, value in parse_qsl(query, keep_blank_values=True):
        name += f"_{key}-{re.sub(r'[^A-Za-z0-9.]+', '.', value).strip('.') or 'x'}"
        if key == "palette":
            palette = random_palette(value, ref=ref)
            continue
        if key not in RANDOM_SETTINGS:
            guess = nearest(key, [*RANDOM_SETTINGS, "palette"])
            raise StyleError(f"'{ref}': unknown setting '{key}'", hint=f"did you mean '{guess}'?" if guess else
                             f"settings: {', '.join([*RANDOM_SETTINGS, 'palette'])}")
        table, field_name = RANDOM_SETTINGS[key]
        tables[table][field_name] = _number(value)
    network = from_table(CPPNConfig, tables["network"], error=StyleError, path=None, prefix=f"{ref}: network")
    encoder = from_table(EncoderConfig, tables["encoder"], error=StyleError, path=None, prefix=f"{ref}: encoder")
    if network.color_mode == "palette" and palette is None:
        raise StyleError(f"'{ref}': mode=palette needs a palette", hint="add &palette=neon or &palette=navy,teal,gold")
    return random_style(int(seed_text), network=network, encoder=encoder, palette=palette, name=name)


def random_palette(value: str, *, ref: str) -> Palette:
    """`palette=`: colour words ("neon", "muted earth tones") or colours separated by commas (names or hex)."""
    try:
        if "," in value:
            return explicit_palette([c if not re.fullmatch(r"[0-9a-fA-F]{6}", c) else f"#{c}"
                                     for c in value.split(",") if c.strip()])
        found = palette_from_words(value, source=f"words: {value}")
        return found if found is not None else explicit_palette([value])
    except ValueError as e:
        raise StyleError(f"'{ref}': palette '{value}' names no colour ({e})",
                         hint="use colour words (neon, pastel, cool blues) or colours: navy,teal,#f4d35e") from e


def _number(value: str) -> object:
    """A query value as the int or float it spells, else the string."""
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value


def resolve_style(ref: str, *, library: Library) -> Style:
    """`random:SEED`, a style folder (or a library name folder), or a library style name."""
    from daemon.style import Style  # torch, as in Library.load

    if ref.startswith("random:"):
        return random_from_ref(ref)
    path = Path(ref)
    if path.is_dir():
        if (path / STYLE_FILE).is_file():
            return Style.load(path)
        versions = Library(path.parent).versions(path.name)
        if versions:
            return Style.load(versions[0].folder)
        raise StyleError("folder is not a style (no style.json)", path=path,
                         hint="give a folder written by `afx train`, a library style name or random:SEED")
    return library.load(ref)
