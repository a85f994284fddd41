"""Reports: the JSON written beside every video (`Report`) or in place of one (`FailureReport`), atomically.

The dataclasses are the schema: `to_dict()` writes the JSON (keys in the order they are declared, optional
sections only when present) and `from_dict()`/`load()` read it back, refusing any other schema or an unknown
key, so a reader never guesses. A new report field is a dataclass field with a default (None when it may be
absent), documented in docs/SERVICE.md; changing what an existing field means bumps the schema string.
This module builds reports from the stages' results; it never runs a stage.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import types
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypedDict, TypeVar, Unpack, get_args, get_type_hints

from daemon import __version__
from daemon.atomic import atomic_write_text, umask_mode  # noqa: F401 — umask_mode: re-exported
from daemon.errors import AfxError

if TYPE_CHECKING:
    from daemon.audio.decode import Track
    from daemon.audio.features import FeatureTimeline
    from daemon.render import RenderSettings
    from daemon.style import Style

REPORT_SCHEMA = "afx.report/1"
FAILURE_SCHEMA = "afx.failure/1"

JSONScalar = str | int | float | bool | None
Metrics = dict[str, JSONScalar]  # daemon.metrics.TemporalMetrics.result(): name → value (docs/ART.md)


def write_json_atomic(path: Path, data: Any) -> Path:
    """Write JSON through `daemon.atomic`: readers never see half a file."""
    return atomic_write_text(Path(path), json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@lru_cache(maxsize=1)
def versions() -> dict[str, str]:
    """Versions of afx and of the libraries and tools that shape its output."""
    import librosa
    import numpy
    import open_clip
    import torch

    found = {"afx": __version__, "torch": torch.__version__, "open_clip": open_clip.__version__,
             "librosa": librosa.__version__,  # type: ignore[attr-defined]  # (set at run time; not in its stubs)
             "numpy": numpy.__version__}
    try:
        out = subprocess.run(["ffmpeg", "-version"], capture_output=True, text=True, timeout=10).stdout
        found["ffmpeg"] = out.split("\n", 1)[0].removeprefix("ffmpeg version ").split(" ")[0]
    except (OSError, subprocess.SubprocessError):
        found["ffmpeg"] = "unavailable"
    return found


# ── the mechanism: dataclass ⇄ JSON object ──────────────────────────────────────────────────────────────

Section = TypeVar("Section", bound="ReportSection")


class ReportSection:
    """A part of a report (a keyword-only frozen dataclass): its fields are its JSON keys, in order. Fields
    named in `OPTIONAL` are left out of the JSON when None (an embedding-free render has no
    `features.embeddings`; a CLI render has no `job`). A field typed as a section is read back as one."""

    OPTIONAL: ClassVar[frozenset[str]] = frozenset()

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if value is None and f.name in self.OPTIONAL:
                continue
            out[f.name] = value.to_dict() if isinstance(value, ReportSection) else value
        return out

    @classmethod
    def from_dict(cls: type[Section], data: Any, *, where: str = "report") -> Section:
        """The section written by `to_dict`; ValueError naming the key when `data` is not one."""
        if not isinstance(data, dict):
            raise ValueError(f"{where}: expected an object, got {type(data).__name__}")
        known = {f.name: f for f in fields(cls)}  # type: ignore[arg-type]
        if unknown := sorted(set(data) - set(known)):
            raise ValueError(f"{where}: unknown key {unknown[0]!r}")
        values: dict[str, Any] = {}
        for name, f in known.items():
            if name not in data:
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                    raise ValueError(f"{where}: missing key {name!r}")
                continue
            hint = _hints(cls)[name]
            section = _section_type(hint)
            if section is not None and (data[name] is not None or name not in cls.OPTIONAL):
                values[name] = section.from_dict(data[name], where=f"{where}.{name}")
            else:
                _check_scalar(hint, data[name], where=f"{where}.{name}")
                values[name] = data[name]
        return cls(**values)


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    """A section's field types, resolved once per class."""
    if cls not in _HINTS:
        _HINTS[cls] = get_type_hints(cls)
    return _HINTS[cls]


def _section_type(hint: Any) -> type[ReportSection] | None:
    """The section class of a field typed `X` or `X | None` where X is a ReportSection, else None."""
    for candidate in (hint, *get_args(hint)):
        if isinstance(candidate, type) and issubclass(candidate, ReportSection):
            return candidate
    return None


SCALARS = (str, int, float, bool, type(None))


def _check_scalar(hint: Any, value: Any, *, where: str) -> None:
    """A field typed with JSON scalars only (`int`, `str | None` …) must hold one of them (an int for a
    float); containers and `Any` are not checked here."""
    options = get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    if not all(option in SCALARS for option in options):
        return
    if isinstance(value, bool):
        fits = bool in options
    else:
        fits = any(isinstance(value, o) for o in options if o is not bool) or (
            float in options and isinstance(value, int))
    if not fits:
        raise ValueError(f"{where}: expected {' or '.join(o.__name__ for o in options)}, got {value!r}")


# ── a render's report ────────────────────────────────────────────────────────────────────────────────────

@dataclass(frozen=True, kw_only=True)
class TrackSection(ReportSection):
    path: str  # where the track was when it was rendered (the service: where it is when published)
    sha256: str  # the track's identity: its content
    duration_s: float
    sample_rate: int  # the analysis rate

    @classmethod
    def of(cls, track: Track) -> TrackSection:
        return cls(path=str(track.path), sha256=track.sha256, duration_s=round(track.duration_s, 6),
                   sample_rate=track.sample_rate)


@dataclass(frozen=True, kw_only=True)
class StyleSection(ReportSection):
    name: str
    id: str
    trained: bool  # False for random:SEED styles
    clip_model: str | None
    pretrained: str | None
    trained_guidance: bool  # False: the guidance model was untrained (afx-tiny), its similarity meaningless
    feature_sets: list[str]
    folder: str | None  # None for styles that live in no folder (random:SEED)

    @classmethod
    def of(cls, style: Style) -> StyleSection:
        return cls(name=style.name, id=style.style_id, trained=style.trained,
                   clip_model=style.guidance.get("clip_model"), pretrained=style.guidance.get("pretrained"),
                   trained_guidance=bool(style.guidance.get("trained_guidance", False)),
                   feature_sets=list(style.features.sets), folder=str(style.folder) if style.folder else None)


@dataclass(frozen=True, kw_only=True)
class FeaturesSection(ReportSection):
    OPTIONAL = frozenset({"embeddings"})

    sets: list[str]
    columns: int
    embeddings: dict[str, Any] | None = None  # per embedding set: backend, model, reduction (docs/EMBEDDINGS.md)
    normalisation: str  # the conditioning method and its version

    @classmethod
    def of(cls, timeline: FeatureTimeline) -> FeaturesSection:
        embeddings = timeline.normalisation.get("embeddings")
        return cls(sets=list(timeline.sets), columns=len(timeline.names),
                   embeddings=dict(embeddings) if isinstance(embeddings, dict) else None,
                   normalisation=str(timeline.normalisation["method"]))


@dataclass(frozen=True, kw_only=True)
class VideoSection(ReportSection):
    path: str
    width: int
    height: int
    fps: int
    frames: int
    duration_s: float  # as ffprobe measured it
    bytes: int
    video_codec: str
    audio_codec: str


@dataclass(frozen=True, kw_only=True)
class TimingSection(ReportSection):
    features_s: float  # decoding and features (or the cache)
    render_s: float  # frames, encoding and verification
    total_s: float
    realtime_factor: float | None  # track seconds per wall-clock second

    @classmethod
    def of(cls, *, features_s: float, render_s: float, total_s: float, track_s: float) -> TimingSection:
        return cls(features_s=round(features_s, 3), render_s=round(render_s, 3), total_s=round(total_s, 3),
                   realtime_factor=round(track_s / total_s, 4) if total_s > 0 else None)


@dataclass(frozen=True, kw_only=True)
class RenderJob(ReportSection):
    """Which service job rendered the video."""

    key: str
    attempt: int
    by: str = "afx run"


def palette_colours(style: Style) -> list[str] | None:
    """A report's `palette` (render reports and sweep rows alike): the style's colours as "#rrggbb", or None."""
    return list(style.palette.colors) if style.palette is not None else None


@dataclass(frozen=True, kw_only=True)
class Report(ReportSection):
    """A finished render: beside every video as VIDEO.json (docs/SERVICE.md, *Reports*)."""

    OPTIONAL = frozenset({"job", "published", "palette_match", "palette", "highlight"})

    schema: str = REPORT_SCHEMA
    ok: bool = True
    created: str = field(default_factory=now_iso)
    track: TrackSection
    style: StyleSection
    features: FeaturesSection
    video: VideoSection
    timing: TimingSection
    metrics: Metrics  # daemon.metrics: one key per metric, so a new metric needs no change here
    # share of sampled pixels within ΔE_OK 12 of the style's palette (daemon.palette, docs/ART.md); absent when
    # the style has no palette, as in reports of an afx before palettes
    palette_match: float | None = None
    palette: list[str] | None = None  # the style's palette, "#rrggbb" each; absent without one
    device: str  # "cpu" or "cuda (NAME)"
    versions: dict[str, str]
    job: RenderJob | None = None  # the service's job (absent for `afx render`)
    published: str | None = None  # when the service linked the video into place
    # a clip of the track's most energetic window (`afx render --highlight`, quick previews):
    # daemon.highlight.Window.to_report() — where it starts and why
    highlight: dict[str, Any] | None = None

    @classmethod
    def for_render(cls, *, track: Track, style: Style, timeline: FeatureTimeline, settings: RenderSettings,
                   out_path: Path, probe: dict[str, Any], timing: TimingSection, metrics: Metrics, device: str,
                   job: RenderJob | None = None, palette_match: float | None = None, frames: int | None = None,
                   highlight: dict[str, Any] | None = None) -> Report:
        """The report of a render of `track` with `style` into `out_path` (`probe`: `verify_video`'s);
        `frames` and `highlight` when it is a clip of a window of the track (daemon.highlight)."""
        video = VideoSection(path=str(out_path), width=settings.width, height=settings.height, fps=settings.fps,
                             frames=timeline.n_frames if frames is None else frames,
                             duration_s=round(float(probe["duration_s"]), 4),
                             bytes=int(probe["bytes"]), video_codec=str(probe["video_codec"]),
                             audio_codec=str(probe["audio_codec"]))
        return cls(track=TrackSection.of(track), style=StyleSection.of(style), features=FeaturesSection.of(timeline),
                   video=video, timing=timing, metrics=metrics, device=device, versions=versions(), job=job,
                   palette_match=palette_match,
                   palette=palette_colours(style),
                   highlight=highlight)

    @classmethod
    def from_dict(cls, data: Any, *, where: str = "report") -> Report:
        if isinstance(data, dict) and data.get("schema") != REPORT_SCHEMA:
            raise ValueError(f"{where}: schema {data.get('schema')!r} is not {REPORT_SCHEMA!r}")
        return super().from_dict(data, where=where)

    @classmethod
    def load(cls, path: Path) -> Report:
        """The report at `path`; OSError when it cannot be read, ValueError when it is not a report."""
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")), where=str(path))

    def write(self, path: Path) -> Path:
        return write_json_atomic(path, self.to_dict())

    def published_as(self, *, track_path: str, video_path: Path) -> Report:
        """This report as the service publishes it: the track where it is now, the video where it is shown."""
        return dataclasses.replace(self, track=dataclasses.replace(self.track, path=track_path),
                                   video=dataclasses.replace(self.video, path=str(video_path)), published=now_iso())


def published_report(path: Path, *, track_path: str, video_path: Path) -> dict[str, Any] | None:
    """The kept render's report at `path` as the service publishes it (`Report.published_as`), or None when
    it is missing or damaged. A report an earlier afx wrote under the same schema with fewer keys (the
    metrics grew) is published as it is, with only its paths and `published` changed: an upgrade must not
    render a video again for its report's sake."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    try:
        return Report.from_dict(data, where=str(path)).published_as(track_path=track_path,
                                                                    video_path=video_path).to_dict()
    except ValueError:
        if not (isinstance(data, dict) and isinstance(data.get("track"), dict) and isinstance(data.get("video"), dict)):
            return None
        return {**data, "track": {**data["track"], "path": track_path},
                "video": {**data["video"], "path": str(video_path)}, "published": now_iso()}


# ── a failure's report ───────────────────────────────────────────────────────────────────────────────────

@dataclass(frozen=True, kw_only=True)
class ErrorDetail(ReportSection):
    """An error as failure reports and the ledger keep it (`AfxError.to_dict()` plus its one-line summary)."""

    type: str  # the exception's class
    message: str
    path: str | None = None  # the file at fault
    key: str | None = None  # the spec/config key or command-line flag at fault
    hint: str | None = None  # what to do
    stderr_tail: str | None = None  # the end of a tool's stderr (ffmpeg)
    transient: bool  # whether retrying the same job unchanged may succeed
    summary: str  # the line a user sees: what, which file, what to do

    @classmethod
    def of(cls, error: BaseException) -> ErrorDetail:
        if isinstance(error, AfxError):
            return cls(type=type(error).__name__, message=error.message, path=error.path, key=error.key,
                       hint=error.hint, stderr_tail=error.stderr_tail, transient=error.transient,
                       summary=error.user_line())
        return cls(type=type(error).__name__, message=str(error), path=None, key=None,
                   hint="this is a bug in afx; the log has the traceback", stderr_tail=None, transient=True,
                   summary=f"internal error: {error}")


@dataclass(frozen=True, kw_only=True)
class FailedJob(ReportSection):
    """The service's job that failed, and what happens to it next."""

    key: str
    kind: str  # render | train
    attempts: int
    state: str  # queued (retried at retry_at) | failed | bad_input
    retry_at: str | None
    style_id: str
    output: str | None


class FailureSubject(TypedDict, total=False):
    """What a failure is about, beyond its stage (the keyword arguments of `FailureReport.of`)."""

    track: str | None
    style: str | None
    spec: str | None
    still_serving: list[str] | None
    owner: str | None


@dataclass(frozen=True, kw_only=True)
class FailureReport(ReportSection):
    """A failure: in place of the video (VIDEO.error.json) or beside the spec or inbox file at fault."""

    OPTIONAL = frozenset({"job", "spec", "still_serving", "owner"})

    schema: str = FAILURE_SCHEMA
    ok: bool = False
    stage: str  # render | train | spec | inbox | sidecar …
    track: str | None = None
    style: str | None = None
    error: ErrorDetail
    time: str = field(default_factory=now_iso)
    versions: dict[str, str] = field(default_factory=lambda: versions())
    job: FailedJob | None = None  # a job's failure (the service)
    spec: str | None = None  # the spec file at fault
    still_serving: list[str] | None = None  # a broken spec: the style ids of its last good version, still used
    owner: str | None = None  # a spec whose style name another spec file already claimed: that file

    @classmethod
    def of(cls, error: BaseException, *, stage: str, job: FailedJob | None = None,
           **subject: Unpack[FailureSubject]) -> FailureReport:
        """What failed, on which file, why, and what to do."""
        return cls(stage=stage, error=ErrorDetail.of(error), job=job, **subject)

    @classmethod
    def from_dict(cls, data: Any, *, where: str = "failure report") -> FailureReport:
        if isinstance(data, dict) and data.get("schema") != FAILURE_SCHEMA:
            raise ValueError(f"{where}: schema {data.get('schema')!r} is not {FAILURE_SCHEMA!r}")
        return super().from_dict(data, where=where)

    @classmethod
    def load(cls, path: Path) -> FailureReport:
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")), where=str(path))

    def write(self, path: Path) -> Path:
        return write_json_atomic(path, self.to_dict())
