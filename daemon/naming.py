"""Where outputs go: the one naming rule `afx render` and the service share.

`renders/<track>/<style>[@<W>x<H>-<fps>fps].mp4`, its report `….json`, or `….error.json` when it failed:

- `<track>` is the track's path relative to the inbox, folders kept as folders and the file name kept
  whole, extension included (`inbox/live/set 1.flac` → `renders/live/set 1.flac/`), so two tracks never
  share a folder. A file outside the inbox (`afx render ~/x.flac`) gets `<file name>~<hash of its path>`.
- `<style>` is the style's name; the `@…` settings tag is added only when a render's size or fps differ
  from the style's own `[render]` settings, so a test render never replaces the real one.
- Names are kept readable: Unicode is kept (NFC-normalised); only characters that are unsafe in a file
  name on Linux, macOS, Windows or a Samba share (`/ \\ : * ? " < > |`, control characters, a leading dot)
  are replaced by `_`. A name that had to be changed, or is too long for the file system, or could be
  mistaken for one of afx's own names (a top-level `_…` folder such as `_specs`, a style ending in
  `.error`, a style with `@`, or a name ending in the hash mark itself) gets `~` and 8 hex digits of the
  sha256 of the original name: kept names and hashed names can never be equal, and two different
  originals share a hashed name only if their hashes collide.

Nothing here touches the file system.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from pathlib import Path, PurePosixPath
from typing import Any

SPECS_REPORTS = "_specs"  # renders/_specs/<spec>.error.json
INBOX_REPORTS = "_inbox"  # renders/_inbox/<file>.error.json (refused files, bad sidecars)
STYLE_REPORTS = "_styles"  # renders/_styles/<style>.error.json (failed trainings)
STORE = ".store"  # renders/.store/<render key>.mp4 + .json: every finished render, published by hard links

MAX_FOLDER_BYTES = 240  # NAME_MAX is 255 bytes on every common file system
MAX_STYLE_BYTES = 180  # leaves room for the settings tag and `.error.json`
HASH_CHARS = 8
UNSAFE = re.compile(r'[/\\:*?"<>|]')
HASHED = re.compile(rf"~[0-9a-f]{{{HASH_CHARS}}}$")


def short_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:HASH_CHARS]


def _clean(name: str) -> str:
    text = unicodedata.normalize("NFC", name)
    text = "".join("_" if unicodedata.category(c)[0] == "C" else c for c in text)
    text = UNSAFE.sub("_", text)
    if text.startswith("."):
        text = "_" + text[1:]
    return text or "_"


def _fit(text: str, max_bytes: int) -> str:
    data = text.encode("utf-8", "surrogatepass")
    return data[:max_bytes].decode("utf-8", "ignore")


def component(name: str, *, max_bytes: int, reserved: bool = False) -> str:
    """One safe path component for `name`: kept when it is safe as it is, else changed and hashed."""
    clean = _clean(name)
    fits = len(clean.encode("utf-8", "surrogatepass")) <= max_bytes
    if clean == name and fits and not reserved and not HASHED.search(clean):  # a decomposed name is changed too
        return clean
    return f"{_fit(clean, max_bytes - HASH_CHARS - 1)}~{short_hash(name)}"


def track_folder(rel: PurePosixPath) -> PurePosixPath:
    """renders/<this>/ for a track at `rel` in the inbox: its path, each component made safe."""
    parts = [component(p, max_bytes=MAX_FOLDER_BYTES, reserved=(i == 0 and p.startswith("_")))
             for i, p in enumerate(PurePosixPath(rel).parts)]
    return PurePosixPath(*parts)


def outside_track_folder(path: Path) -> PurePosixPath:
    """renders/<this>/ for a file outside the inbox: its name and a hash of its absolute path."""
    path = Path(path).absolute()
    name = _fit(_clean(path.name), MAX_FOLDER_BYTES - HASH_CHARS - 1)
    return PurePosixPath(f"{name}~{short_hash(str(path))}")


def settings_tag(settings: dict[str, Any], own: dict[str, Any]) -> str:
    """`@WxH-FPSfps` when the render settings differ from the style's own, else ''."""
    keys = ("width", "height", "fps")
    if all(int(settings[k]) == int(own[k]) for k in keys):
        return ""
    return f"@{int(settings['width'])}x{int(settings['height'])}-{int(settings['fps'])}fps"


def style_stem(style_name: str, tag: str = "") -> str:
    """The file name of a style's video, without `.mp4`."""
    lower = unicodedata.normalize("NFC", style_name).lower()
    reserved = lower.endswith(".error") or "@" in style_name
    return component(style_name, max_bytes=MAX_STYLE_BYTES, reserved=reserved) + tag


def video_path(renders: Path, folder: PurePosixPath, style_name: str, tag: str = "") -> Path:
    return Path(renders) / folder / f"{style_stem(style_name, tag)}.mp4"


def track_video(audio_path: Path, style_name: str, *, renders: Path, inbox: Path, tag: str = "") -> Path:
    """The video of the track at `audio_path` with a style: the service's published video and `afx render`'s
    default output, so the two never disagree. `tag`: `settings_tag`, empty at the style's own settings."""
    path = Path(audio_path).absolute()
    try:
        folder = track_folder(PurePosixPath(path.relative_to(Path(inbox).absolute()).as_posix()))
    except ValueError:
        folder = outside_track_folder(path)
    return video_path(renders, folder, style_name, tag)


def report_path(video: Path) -> Path:
    return video.with_suffix(".json")


def error_report_path(video: Path) -> Path:
    """A failed render's report lies where its video would be: `<style>.error.json`."""
    return video.with_name(f"{video.stem}.error.json")


def problem_report_path(renders: Path, folder: str, name: str) -> Path:
    """renders/_specs|_inbox|_styles/<name>.error.json; `name` may be a relative path (kept as folders)."""
    rel = track_folder(PurePosixPath(name)) if name else PurePosixPath("_")
    return Path(renders) / folder / rel.parent / f"{rel.name}.error.json"


def store_video(renders: Path, key: str) -> Path:
    """Where the finished render of job `key` is kept (published elsewhere by hard links)."""
    return Path(renders) / STORE / key[:2] / f"{key}.mp4"
