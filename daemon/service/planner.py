"""Planning: which styles exist now, which tracks get which styles, and the jobs that follow.

`SpecCatalog` turns the specs folder into the current style versions. A spec that fails to parse gets an
error report (`renders/_specs/<spec>.error.json`) and its last good version keeps serving — kept in memory
and in the ledger's `styles` table, so it survives a restart. `Planner.plan` assigns each settled inbox
track its styles (the specs whose `tracks` globs match it, plus a sidecar `<track stem>.toml` with
`styles = [...]`, else the configured defaults; empty defaults mean every style) and returns one render job
per (track, style) and one training job per style that is not in the library yet. Keys come from the ledger.

Nothing here decodes audio or touches tensors; a track is its path and its content hash. A new track's
cheap checks (size, ffprobe's duration) and then its hash run in a background thread (`TrackChecks`), so
a 20 GB file never stalls the loop, its heartbeat or `afx status`; the track counts as pending until then.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import tomllib
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from daemon.audio.decode import check_track
from daemon.config import Limits
from daemon.errors import AfxError, AudioError, SpecError
from daemon.library import Library
from daemon.logs import get_logger
from daemon.naming import (INBOX_REPORTS, SPECS_REPORTS, STYLE_REPORTS, error_report_path,  # noqa: F401 — re-exported
                           problem_report_path, store_video, style_stem, track_folder, track_video, video_path)
from daemon.report import FailureReport, FailureSubject
from daemon.service.ledger import Ledger, NewJob, render_key, train_key
from daemon.service.watch import ScanResult, SeenFile, refusal_hint
from daemon.spec import StyleSpec, default_name, load_specs, parse_spec
from daemon.tables import check_keys, nearest
from daemon.tracks import glob_matches, is_track

log = get_logger("afx.planner")

def style_report_path(renders: Path, style_name: str) -> Path:
    return renders / STYLE_REPORTS / f"{style_stem(style_name)}.error.json"


@dataclass(frozen=True)
class PreviewSettings:
    """Quick previews (`[web] preview_*`): a short, small clip of the track's most energetic window."""

    seconds: float = 15.0  # 0: none
    width: int = 320  # at most this wide
    fps: int = 15  # at most this many frames a second

    def settings(self, spec: StyleSpec) -> dict[str, Any]:
        """A preview's render settings: the spec's, scaled down (even sizes, for yuv420p), plus its length."""
        width = min(spec.render.width, self.width)
        height = max(2, round(spec.render.height * width / spec.render.width / 2) * 2)
        return {"width": width - width % 2, "height": height, "fps": min(spec.render.fps, self.fps),
                "preview_s": self.seconds}


PREVIEW_TAG = "@preview"  # renders/<track>/<style>@preview.mp4 (`@` never appears in a style's file name)


def spec_from_dict(data: dict[str, Any], *, limits: Limits) -> StyleSpec:
    """Rebuild a StyleSpec from `StyleSpec.to_dict()` (the ledger's copy); its id must come out the same."""
    table = {k: v for k, v in data.items() if k not in ("style_id", "source", "variant")}
    spec = parse_spec(table, path=None, name=str(data["name"]), limits=limits)
    source = Path(data["source"]) if data.get("source") else None
    spec = dataclasses.replace(spec, source=source, variant=str(data.get("variant") or ""))
    if data.get("style_id") and spec.style_id != data["style_id"]:
        raise SpecError(f"the stored spec rebuilds to style {spec.style_id}, not {data['style_id']}",
                        path=source, hint="this afx computes style ids differently; the spec file will be re-read")
    return spec


# ── problems: errors that belong to a file rather than a job ─────────────────────────────────────────────

class ProblemBook:
    """Spec, sidecar and inbox errors: a failure report on disk and a row in the ledger, each written once."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.known: dict[str, tuple[str, str, str | None]] = {
            row["source"]: (row["kind"], row["error_json"], row["report"]) for row in ledger.problems()}

    def sync(self, kind: str, current: dict[str, tuple[BaseException, Path, FailureSubject]]) -> None:
        """Make `kind`'s problems exactly `current` ({source: (error, report path, report fields)})."""
        for source, (error, report_path, fields) in current.items():
            report = FailureReport.of(error, stage=kind, **fields)
            signature = json.dumps(report.error.to_dict())  # as the ledger stores it: unchanged problems survive restarts
            old = self.known.get(source)
            if old is not None and old[1] == signature:
                continue
            report.write(report_path)
            self.ledger.set_problem(source, kind=kind, error=report.error.to_dict(), report=str(report_path))
            self.known[source] = (kind, signature, str(report_path))
            log.error(f"{kind}.invalid", source=source, error=report.error.summary,
                      report=str(report_path))
        for source in [s for s, (k, _, _) in self.known.items() if k == kind and s not in current]:
            self.resolve(source)

    def resolve(self, source: str) -> None:
        _, _, report = self.known.pop(source, ("", "", None))
        if report:
            Path(report).unlink(missing_ok=True)
        if self.ledger.clear_problem(source):
            log.info("problem.resolved", source=source)


# ── the specs folder ─────────────────────────────────────────────────────────────────────────────────────

@dataclass
class SpecCatalog:
    """The style versions the specs folder defines now (the last good one for a broken file)."""

    ledger: Ledger
    limits: Limits
    renders: Path
    problems: ProblemBook
    override: dict[str, Any] = field(default_factory=dict)  # afx.toml's [spec_override]
    by_file: dict[str, list[StyleSpec]] = field(default_factory=dict)  # spec path → its styles
    parsed: dict[str, tuple[int, int]] = field(default_factory=dict)  # spec path → (size, mtime) last read
    errors: dict[str, tuple[BaseException, Path, FailureSubject]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Start from the ledger's current versions, so a spec broken while we were down still serves —
        except a newcomer held back from a taken name, even before the specs folder can be read."""
        owners = self.ledger.recorded_name_owners()
        for row in self.ledger.current_styles():
            if owners.get(row["name"], row["spec_path"]) != row["spec_path"]:
                continue
            try:
                spec = spec_from_dict(json.loads(row["spec_json"]), limits=self.limits)
            except Exception as e:  # noqa: BLE001 — a stored version this afx cannot rebuild is skipped, never fatal
                log.warning("spec.stale", spec=row["spec_path"], style=row["name"], error=str(e))
                continue
            self.by_file.setdefault(row["spec_path"], []).append(spec)

    def refresh(self, scan: ScanResult) -> bool:
        """Read new and changed spec files; returns whether the set of styles changed."""
        if not scan.available or scan.empty:
            if self.by_file:
                log.warning("specs.unavailable", folder=str(scan.root), keeping=len(self.styles()))
            return False
        before = {s.style_id for s in self.styles()}
        present = {str(f.path) for f in scan.settled} | {str(p) for p in scan.pending} | {
            str(p) for p, _ in scan.refused}
        for seen in scan.settled:
            self._read(seen, scan.root)
        for path, reason in scan.refused:  # an empty spec, a FIFO, a dangling link: reported, never silent
            rel = PurePosixPath(path.relative_to(scan.root).as_posix())
            self.errors[str(path)] = (
                SpecError(f"refused: {reason}", path=path, hint=refusal_hint(reason) or None),
                problem_report_path(self.renders, SPECS_REPORTS, rel.as_posix()),
                {"style": default_name(path), "spec": str(path),
                 "still_serving": [s.style_id for s in self.by_file.get(str(path), [])]})
            self.parsed.pop(str(path), None)
        for source in [p for p in self.by_file if p not in present]:
            log.info("spec.removed", spec=source, styles=[s.name for s in self.by_file[source]])
            del self.by_file[source]
            self.ledger.remove_spec(source)
        for source in [p for p in set(self.errors) | set(self.parsed) if p not in present]:
            self.errors.pop(source, None)
            self.parsed.pop(source, None)
        self._check_names(scan.root)
        self.problems.sync("spec", self.errors)
        return {s.style_id for s in self.styles()} != before

    def _read(self, seen: SeenFile, root: Path) -> None:
        key = str(seen.path)
        if self.parsed.get(key) == (seen.size, seen.mtime_ns):
            return
        self.parsed[key] = (seen.size, seen.mtime_ns)
        report = problem_report_path(self.renders, SPECS_REPORTS, seen.rel.as_posix())
        try:
            specs = load_specs(seen.path, limits=self.limits, override=self.override)
        except Exception as e:  # noqa: BLE001 — any failure of one spec must not stop the others
            serving = [s.style_id for s in self.by_file.get(key, [])]
            self.errors[key] = (e, report, {"style": default_name(seen.path), "spec": key,
                                            "still_serving": serving})
            return
        self.errors.pop(key, None)
        old = {s.style_id for s in self.by_file.get(key, [])}
        self.by_file[key] = specs
        self.ledger.set_spec_styles(key, [(s.style_id, s.name, s.to_dict()) for s in specs])
        if {s.style_id for s in specs} != old:
            log.info("spec.loaded", spec=key, styles={s.name: s.style_id for s in specs})

    def _check_names(self, root: Path) -> None:
        """Two files defining the same style name would overwrite each other's videos. The file the ledger
        saw claim the name first keeps it (not the first by path); the newcomer's styles are held back
        with an error report until it is renamed or the owner gives the name up."""
        claims = [(spec.name, path) for path, specs in self.by_file.items() for spec in specs]
        owners = self.ledger.name_owners(claims)
        for path in sorted(self.by_file):
            for spec in list(self.by_file[path]):
                owner = owners.get(spec.name, path)
                if owner != path:
                    error = SpecError(f"style name '{spec.name}' already belongs to {owner}", path=path,
                                      key="name", hint="give this spec another `name` (or file name); its "
                                      "styles are not trained or rendered until then")
                    report = problem_report_path(self.renders, SPECS_REPORTS, _relative(path, root))
                    self.errors[path] = (error, report, {"style": spec.name, "spec": path, "owner": owner})
                    self.by_file[path].remove(spec)
                    self.parsed.pop(path, None)  # read it again next scan: the owner may be gone by then

    def styles(self) -> list[StyleSpec]:
        return [spec for path in sorted(self.by_file) for spec in self.by_file[path]]

    def named(self, name: str) -> list[StyleSpec]:
        """The styles called `name`, or every variant of the spec file called `name` (a sweep)."""
        exact = [s for s in self.styles() if s.name == name]
        return exact or [s for s in self.styles() if s.source is not None and default_name(s.source) == name]

    def spec(self, style_id: str) -> StyleSpec | None:
        return next((s for s in self.styles() if s.style_id == style_id), None)

    def sweep_of(self, style_id: str) -> list[StyleSpec]:
        """Every variant of the sweep spec file that defines `style_id`; [] when that file is no sweep."""
        for specs in self.by_file.values():
            if any(s.style_id == style_id for s in specs) and any(s.variant for s in specs):
                return list(specs)
        return []


def _relative(path: str, root: Path) -> str:
    try:
        return Path(path).relative_to(root).as_posix()
    except ValueError:
        return Path(path).name


def held_out_reason(spec: StyleSpec) -> str:
    """Why a style is not in the default set, and what brings it in (for the log and `afx status`)."""
    t = spec.training
    return (f"CLIP {t.clip_model} ({t.pretrained}) weights are not in the models cache: `afx models fetch "
            f"{t.clip_model} {t.pretrained}` adds this style to the default set (or name it in a sidecar or "
            "default_styles to train it anyway)")


# ── assignment and jobs ──────────────────────────────────────────────────────────────────────────────────

def read_sidecar(path: Path) -> list[str]:
    """`styles = ["name", ...]` from a track's sidecar TOML."""
    try:
        table = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise SpecError(f"not valid TOML: {e}", path=path, hint="fix the syntax at that line") from e
    except (OSError, UnicodeDecodeError) as e:
        raise SpecError(f"cannot read the sidecar ({e})", path=path) from e
    check_keys(table, ["styles"], error=SpecError, path=path, prefix="")
    styles = table.get("styles", [])
    if not isinstance(styles, list) or not all(isinstance(s, str) for s in styles):
        raise SpecError("expected a list of style names", path=path, key="styles", hint='styles = ["neon"]')
    return styles


class TrackChecks:
    """A new track's cheap checks (stat, size, stated duration), then its hash, in one background thread."""

    def __init__(self, *, limits: Limits, hash_file: Callable[[Path], str], on_done: Callable[[], None]) -> None:
        self.limits = limits
        self.hash_file = hash_file
        self.on_done = on_done  # called from the thread: ask the loop for a rescan
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="afx-checks")
        self._lock = threading.Lock()
        self._work: dict[Path, tuple[tuple[int, int], Future[str | AfxError]]] = {}

    def result(self, seen: SeenFile) -> str | AfxError | None:
        """The hash or the refusal of `seen` as it is now; None while the work runs (it is started here)."""
        state = (seen.size, seen.mtime_ns)
        with self._lock:
            found = self._work.get(seen.path)
            if found is None or found[0] != state:
                future = self._pool.submit(self._check, seen.path)
                future.add_done_callback(lambda _: self.on_done())
                self._work[seen.path] = (state, future)
                return None
            if not found[1].done():
                return None
            del self._work[seen.path]
        return found[1].result()

    def _check(self, path: Path) -> str | AfxError:
        try:
            check_track(path, self.limits)
            return self.hash_file(path)
        except AudioError as e:
            log.warning("track.refused", track=str(path), error=e.user_line())
            return e
        except OSError as e:  # unreadable (or vanished: then no scan asks again)
            log.warning("track.unreadable", track=str(path), error=str(e))
            return AudioError(f"cannot read the file ({e.strerror or e})", path=path,
                              hint="check its permissions (the service's user must read it)")
        except Exception as e:  # noqa: BLE001 — the thread must always answer, or the track waits forever
            log.error("track.check_failed", track=str(path), exc_info=e)
            return AfxError(f"checking the file failed ({type(e).__name__}: {e})", path=path,
                            hint="this is a bug in afx; touch the file to try again")

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


@dataclass(frozen=True)
class PlannedTrack:
    """A settled track and its identity."""

    file: SeenFile  # where it is
    sha256: str  # what it is


@dataclass(frozen=True)
class Publication:
    """A (track, style) pair and the render its published video must show now."""

    video: Path  # renders/<track>/<style>.mp4 (daemon.naming)
    key: str  # the render job for the track's current content and the style's current version
    track_path: str  # where the track is
    style_name: str


@dataclass
class Plan:
    """What one scan asks for."""

    jobs: list[NewJob] = field(default_factory=list)  # every job the current files call for
    outputs: list[Publication] = field(default_factory=list)  # every video that should be published
    tracks: list[PlannedTrack] = field(default_factory=list)  # the settled tracks
    hashing: list[Path] = field(default_factory=list)  # settled tracks still being checked and hashed
    problems: dict[str, tuple[BaseException, Path, FailureSubject]] = field(default_factory=dict)


class Planner:
    """Settled inbox files × current styles → jobs."""

    def __init__(self, *, ledger: Ledger, catalog: SpecCatalog, library: Library, renders: Path,
                 default_styles: tuple[str, ...], hash_file: Callable[[Path], str],
                 limits: Limits = Limits(), on_checked: Callable[[], None] = lambda: None,
                 previews: PreviewSettings = PreviewSettings(seconds=0.0),
                 weights_ready: Callable[[StyleSpec], bool] = lambda spec: True) -> None:
        self.ledger = ledger
        self.catalog = catalog
        self.library = library
        self.renders = renders
        self.default_styles = default_styles
        self.weights_ready = weights_ready  # False: a guide whose pretrained weights are not on this machine
        self.held_out: dict[str, StyleSpec] = {}  # style id → a style kept out of the default set (weights)
        self.checks = TrackChecks(limits=limits, hash_file=hash_file, on_done=on_checked)
        self.previews = previews
        self._done: set[str] = set()  # finished renders, read once per plan
        self._hashes: dict[Path, tuple[int, int, str | AfxError]] = {}

    def plan(self, inbox: ScanResult, *, tick: Callable[[], None] = lambda: None) -> Plan:
        plan = Plan()
        self._done = self.ledger.done_renders() if self.previews.seconds > 0 else set()
        self._hold_out_missing_weights()
        for path, reason in inbox.refused:
            rel = PurePosixPath(path.relative_to(inbox.root).as_posix())
            error = AfxError(f"refused: {reason}", path=path, hint=refusal_hint(reason) or None)
            plan.problems[str(path)] = (error, self.inbox_report(rel), {"track": str(path)})
        settled = {f.rel: f for f in inbox.settled}
        for seen in inbox.settled:
            if not is_track(seen.rel):
                continue
            sha = self._sha(seen)
            tick()
            if isinstance(sha, AfxError):
                plan.problems[str(seen.path)] = (sha, self.inbox_report(seen.rel), {"track": str(seen.path)})
                continue
            if sha is None:
                plan.hashing.append(seen.path)
                continue
            track = PlannedTrack(file=seen, sha256=sha)
            plan.tracks.append(track)
            styles = self._assign(track, settled, inbox.pending, plan)
            for spec in styles:
                jobs = self._jobs_for(track, spec)
                plan.jobs.extend(jobs)
                for job in (j for j in jobs if j.kind == "render"):  # the video, and its preview while it is new
                    # no settings tag: the service renders a style at its own settings
                    tag = PREVIEW_TAG if "preview_s" in job.settings else ""
                    video = track_video(track.file.path, spec.name, renders=self.renders, inbox=inbox.root, tag=tag)
                    plan.outputs.append(Publication(video=video, key=job.key, track_path=str(track.file.path),
                                                    style_name=spec.name))
        return plan

    def inbox_report(self, rel: PurePosixPath) -> Path:
        return problem_report_path(self.renders, INBOX_REPORTS, rel.as_posix())

    def _sha(self, seen: SeenFile) -> str | AfxError | None:
        """Content hash, reused while size and mtime are unchanged (in memory, then from the ledger); else
        the cheap checks and the hash are started in the background: None until they are done, or the
        AfxError that refuses the file."""
        cached = self._hashes.get(seen.path)
        if cached and cached[:2] == (seen.size, seen.mtime_ns):
            return cached[2]
        sha: str | AfxError | None = self.ledger.known_hash(seen.path, size=seen.size, mtime_ns=seen.mtime_ns)
        if sha is None:
            sha = self.checks.result(seen)
            if sha is None:
                return None
            if isinstance(sha, str):
                self.ledger.record_track(seen.path, sha256=sha, size=seen.size, mtime_ns=seen.mtime_ns)
                log.info("track.seen", track=str(seen.path), sha256=sha[:12], bytes=seen.size)
        self._hashes[seen.path] = (seen.size, seen.mtime_ns, sha)
        return sha

    def _assign(self, track: PlannedTrack, settled: dict[PurePosixPath, SeenFile], pending: tuple[Path, ...],
                plan: Plan) -> list[StyleSpec]:
        """Glob matches + sidecar styles, else the defaults (empty defaults: every style)."""
        rel = track.file.rel
        styles = [s for s in self.catalog.styles() if s.tracks and glob_matches(rel, s.tracks)]
        sidecar_rel = rel.with_suffix(".toml")
        sidecar_path = track.file.path.with_suffix(".toml")
        if sidecar_path in pending:
            return []  # the sidecar is still being written: decide once it settled
        if sidecar_rel in settled:
            try:
                styles += self._named(read_sidecar(settled[sidecar_rel].path), path=settled[sidecar_rel].path)
            except SpecError as e:
                report = problem_report_path(self.renders, INBOX_REPORTS, sidecar_rel.as_posix())
                plan.problems[str(sidecar_path)] = (e, report, {"track": str(track.file.path)})
                return []
        if not styles:
            styles = self._named(self.default_styles, path=None) if self.default_styles else self.default_set()
        unique: dict[str, StyleSpec] = {}
        for spec in styles:
            unique.setdefault(spec.style_id, spec)
        return list(unique.values())

    def default_set(self) -> list[StyleSpec]:
        """Every style, except untrained ones whose guide's pretrained weights are not on this machine yet: the
        seed's CLIP examples must not hold a fresh, offline install's tracks behind trainings that cannot start.
        A style named by a sidecar, a `tracks` glob or `default_styles` is trained anyway (and fails with
        the fix when its weights are missing)."""
        return [s for s in self.catalog.styles() if s.style_id not in self.held_out]

    def _hold_out_missing_weights(self) -> None:
        """Re-check which styles wait for their weights; one log line when a style starts or stops waiting."""
        held: dict[str, StyleSpec] = {}
        for spec in self.catalog.styles():
            if self.library.has(spec.name, spec.style_id) or self.weights_ready(spec):  # trained: nothing to fetch
                if spec.style_id in self.held_out:
                    log.info("style.weights_found", style=spec.name, clip_model=spec.training.clip_model,
                             pretrained=spec.training.pretrained)
                continue
            held[spec.style_id] = spec
            if spec.style_id not in self.held_out:
                log.info("style.held_out", style=spec.name, spec=str(spec.source), reason=held_out_reason(spec))
        self.held_out = held

    def _named(self, names: Iterable[str], *, path: Path | None) -> list[StyleSpec]:
        found: list[StyleSpec] = []
        for name in names:
            specs = self.catalog.named(name)
            if not specs:
                known = sorted({s.name for s in self.catalog.styles()})
                guess = nearest(name, known)
                hint = f"did you mean '{guess}'?" if guess else f"known styles: {', '.join(known) or 'none'}"
                if path is None:
                    log.warning("defaults.unknown_style", style=name, hint=hint)
                    continue
                raise SpecError(f"no style named '{name}' in specs/", path=path, key="styles", hint=hint)
            found += specs
        return found

    def _jobs_for(self, track: PlannedTrack, spec: StyleSpec) -> list[NewJob]:
        jobs = []
        if not self.library.has(spec.name, spec.style_id):
            jobs.append(NewJob(key=train_key(spec.style_id), kind="train", style_id=spec.style_id,
                               style_name=spec.name, settings={},
                               output=str(self.library.folder_for(spec.name, spec.style_id))))
        full = render_key(track.sha256, spec.style_id, spec.render.settings())
        wanted: list[dict[str, Any]] = [dict(spec.render.settings())]
        if self.previews.seconds > 0 and full not in self._done:  # a new pair: its preview comes first
            wanted.insert(0, self.previews.settings(spec))
        for settings in wanted:
            key = render_key(track.sha256, spec.style_id, settings)
            jobs.append(NewJob(key=key, kind="render", style_id=spec.style_id, style_name=spec.name,
                               settings=settings, output=str(store_video(self.renders, key)),
                               track_sha=track.sha256, track_path=str(track.file.path)))
        return jobs  # the full render last
