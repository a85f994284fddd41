"""Which files are tracks, and which tracks a style trains on: the one rule the watcher, the planner,
`afx train` and the service share.

A file in the inbox is a track unless its name is ignored (hidden, temporary or partial, at any depth:
`is_ignored`) or it is a companion file that travels with music (a sidecar, artwork, a cue sheet:
`COMPANION_SUFFIXES`). Anything else is decoded — a file ffmpeg cannot read gets a failure report, never
silence. A style renders the tracks its `tracks` globs match (`glob_matches`), and trains on its
`audio.reference_tracks` or else on the inbox tracks it renders (`reference_paths`, `inbox_references`).
Nothing here decodes a file or imports torch.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from fnmatch import fnmatchcase
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from daemon.spec import StyleSpec

#: suffixes of files being written by browsers, editors and copy tools
TEMP_SUFFIXES = (".part", ".partial", ".tmp", ".temp", ".swp", ".swx", ".crdownload", ".download", "~")
#: the probe file vim writes to test a folder
TEMP_NAMES = frozenset({"4913"})
#: files in the inbox that travel with music but are not tracks (sidecars, artwork, cue sheets, notes)
COMPANION_SUFFIXES = frozenset({
    ".toml", ".json", ".txt", ".md", ".nfo", ".cue", ".log", ".m3u", ".m3u8", ".pls", ".lrc", ".sfv",
    ".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".pdf", ".ini", ".db", ".url", ".html",
})
MAX_REFERENCE_TRACKS = 8  # features of more tracks add little variety and cost start-up time


def is_ignored(rel: PurePosixPath | str) -> bool:
    """Hidden, temporary and partial names, at any depth (`.git/…`, `.x.mp3`, `x.part`, `~x`, `4913`)."""
    parts = PurePosixPath(rel).parts
    if any(part.startswith(".") for part in parts):
        return True  # hidden files and folders, .git included
    name = parts[-1] if parts else ""
    return name.startswith("~") or name in TEMP_NAMES or name.lower().endswith(TEMP_SUFFIXES)


def is_track(rel: PurePosixPath) -> bool:
    """Whether the inbox file at `rel` is a track (to be rendered), rather than ignored or a companion."""
    return not is_ignored(rel) and rel.suffix.lower() not in COMPANION_SUFFIXES


def glob_matches(rel: PurePosixPath, patterns: Iterable[str]) -> bool:
    """A `tracks` glob matches the path relative to the inbox or the bare file name; `**/` may match nothing."""
    text = rel.as_posix()
    for pattern in patterns:
        pattern = pattern.replace("\\", "/").removeprefix("./")
        candidates = {pattern, pattern.replace("**/", "")}
        if any(fnmatchcase(text, p) or fnmatchcase(rel.name, p) for p in candidates):
            return True
    return False


def reference_paths(spec: StyleSpec, fallback: Sequence[Path]) -> list[Path]:
    """The spec's reference tracks (globs relative to its file), else `fallback` (`inbox_references`)."""
    if spec.audio.reference_tracks:
        found: list[Path] = []
        for pattern in spec.audio.reference_tracks:
            found.extend(_reference_matches(spec, pattern))
        return found[:MAX_REFERENCE_TRACKS]
    return [Path(p) for p in fallback][:MAX_REFERENCE_TRACKS]


def inbox_references(spec: StyleSpec, inbox: Path) -> list[Path]:
    """The inbox tracks a style without `audio.reference_tracks` samples, chosen the same way by `afx train`
    and the service: tracks (`is_track`) at any depth that its `tracks` globs match (every one when it has
    none), by relative path, the first MAX_REFERENCE_TRACKS."""
    inbox = Path(inbox)
    if not inbox.is_dir():
        return []
    found = []
    for path in sorted(inbox.rglob("*")):
        rel = PurePosixPath(path.relative_to(inbox).as_posix())
        if not is_track(rel):
            continue
        if path.is_file() and (not spec.tracks or glob_matches(rel, spec.tracks)):
            found.append(path)
        if len(found) == MAX_REFERENCE_TRACKS:
            break
    return found


def missing_references(spec: StyleSpec) -> list[str]:
    """The spec's `audio.reference_tracks` entries that name no file (a typo, a moved file)."""
    return [p for p in spec.audio.reference_tracks if not _reference_matches(spec, p)]


def _reference_matches(spec: StyleSpec, pattern: str) -> list[Path]:
    base = Path(spec.source).parent if spec.source else Path.cwd()
    matches = sorted(base.glob(pattern)) if any(c in pattern for c in "*?[") else [base / pattern]
    return [m for m in matches if m.is_file()]
