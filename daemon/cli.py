"""`afx` — the command line. The only module that parses arguments or prints for people.

Every command turns AfxError into one line on stderr (what, which file, what to do) and a non-zero exit;
the traceback goes to the log only with --verbose.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from daemon import __version__
from daemon.config import ServiceConfig, apply_environment, config_path, load_config
from daemon.errors import AfxError, RenderError
from daemon.library import Library, resolve_style
from daemon.logs import configure_logging, get_logger
from daemon.naming import settings_tag, track_video
from daemon.ratings import read_rating, stars_text
from daemon.service.status import retry_jobs, status_snapshot
from daemon.spec import StyleSpec, default_name, load_spec, load_specs
from daemon.tracks import inbox_references

if TYPE_CHECKING:  # torch and the like: each command imports them when it runs (docs/ARCHITECTURE.md, Imports)
    from daemon.pipeline import AudioContext
    from daemon.render import RenderSettings
    from daemon.train import StepRecord

log = get_logger("afx.cli")

EXIT_ERROR = 2


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = text.lower().split("x")
        return int(w), int(h)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT such as 1280x720, got {text!r}") from None


def _progress(desc: str, unit: str) -> tuple[Callable[[int, int], None], Callable[[], None]]:
    """A tqdm bar on a terminal (nothing otherwise): returns (update(done, total), close())."""
    from tqdm import tqdm

    bar: dict[str, Any] = {}

    def update(done: int, total: int) -> None:
        if "bar" not in bar:
            bar["bar"] = tqdm(total=total, desc=desc, unit=unit, disable=not sys.stderr.isatty(), leave=False)
        bar["bar"].update(done - bar["bar"].n)

    def close() -> None:
        if "bar" in bar:
            bar["bar"].close()

    return update, close


def audio_context(config: ServiceConfig) -> AudioContext:
    """AudioContext.for_config (the one rule), imported when a command needs it: the pipeline loads torch."""
    from daemon.pipeline import AudioContext

    return AudioContext.for_config(config)


# ── commands ─────────────────────────────────────────────────────────────────────────────────────────────

def cmd_render(args: argparse.Namespace, config: ServiceConfig) -> int:
    from daemon.pipeline import render_track
    from daemon.render import RenderSettings

    style = resolve_style(args.style, library=Library(config.path("library")))
    own = style.render_settings()
    width, height = args.size or (own["width"], own["height"])
    settings = RenderSettings(width=width, height=height, fps=own["fps"] if args.fps is None else args.fps,
                              device=args.device or config.device)
    _check_flags(settings)
    if args.highlight is not None and not 1 <= args.highlight <= 3600:
        raise AfxError(f"--highlight {args.highlight:g} is not a length in seconds", key="--highlight",
                       hint="e.g. --highlight 30 (1 to 3600 s)")
    tag = settings_tag({"width": settings.width, "height": settings.height, "fps": settings.fps}, own)
    if args.highlight:  # `@` never appears in a style's file name (daemon.naming)
        tag += f"@highlight-{args.highlight:g}s"
    out = Path(args.output) if args.output else track_video(
        Path(args.audio), style.name, renders=config.path("renders"), inbox=config.path("inbox"), tag=tag)
    update, close = _progress(f"render {Path(args.audio).name}", "frame")
    try:
        report = render_track(Path(args.audio), style, settings, out_path=out, ctx=audio_context(config),
                              on_progress=update, highlight_s=args.highlight)
    finally:
        close()
    if report.highlight is not None:
        h = report.highlight
        print(f"highlight: {h['duration_s']:g} s from {h['start_s']:g} s — {h['why']}")
    t, m = report.timing, report.metrics
    speed = f"{t.realtime_factor:.2f}x" if t.realtime_factor is not None else "—"
    print(f"rendered {report.video.frames} frames in {t.total_s:.1f} s "
          f"({speed} real time, {report.device}), temporal SSIM {m['temporal_ssim_mean']}, "
          f"motion {m['motion_energy']}/s, onset alignment {m['onset_alignment']}, loud/quiet "
          f"{m['loud_quiet_contrast']}, onset correlation {m['onset_correlation']} → {out}")
    return 0


def _check_flags(settings: RenderSettings) -> None:
    """RenderSettings' errors name spec keys ([render.width]); here the values came from --size and --fps."""
    try:
        settings.validate()
    except RenderError as e:
        flag = "--fps" if e.key == "render.fps" else "--size"
        raise RenderError(e.message, key=flag, hint="e.g. --size 1280x720 --fps 30") from e


def cmd_export(args: argparse.Namespace, config: ServiceConfig) -> int:

    if not args.glsl and not args.player:
        raise AfxError("say what to export", hint="afx export STYLE --glsl OUT.glsl, or --player TRACK OUT.html")
    style = resolve_style(args.style, library=Library(config.path("library")))
    if args.glsl:
        from daemon.export import write_glsl

        files = write_glsl(style, Path(args.glsl), variant=args.variant, weights=args.weights)
        print(f"exported {style.name} (id {style.style_id}) as a {args.variant} shader → "
              + ", ".join(str(f) for f in files))
    if args.player:
        from daemon.pipeline import export_player

        track, out = args.player
        result = export_player(Path(track), style, out_path=Path(out), fps=args.fps, ctx=audio_context(config))
        print(f"player for {Path(track).name} with {style.name}: {result['frames']} feature frames at "
              f"{result['fps']} fps → {result['html']} (+ {result['audio'].name} beside it)")
    return 0


def cmd_features(args: argparse.Namespace, config: ServiceConfig) -> int:
    from daemon.pipeline import track_features
    from daemon.plots import plot_features

    sets = tuple(args.set or ["fft"])
    plotting = bool(args.plot or not args.json)
    started = time.perf_counter()
    # one decode and one extraction: the plot's raw (unconditioned) values come with the same timeline
    track, timeline, _ = track_features(Path(args.audio), sets, fps=args.fps, ctx=audio_context(config),
                                        keep_raw=plotting)
    seconds = time.perf_counter() - started
    plot = Path(args.plot) if args.plot else Path(args.audio).with_suffix("").with_name(
        Path(args.audio).stem + ".features.png")
    if plotting:
        plot_features(timeline, plot, title=f"{track.path.name} — {', '.join(sets)}: raw (grey) and conditioned")
    summary = timeline.summary()
    if args.json:
        print(json.dumps({"track": track.to_dict(), "sets": sets, "frames": timeline.n_frames,
                          "fps": timeline.fps, "seconds": round(seconds, 3), "features": summary,
                          "embeddings": timeline.normalisation.get("embeddings", {})}, indent=2))
        return 0
    print(f"{track.path.name}: {track.duration_s:.2f} s, {timeline.n_frames} frames at {timeline.fps:g} fps, "
          f"sets {', '.join(sets)} ({seconds:.2f} s)")
    print(f"{'feature':<22}{'min':>9}{'mean':>9}{'max':>9}{'std':>9}")
    for row in summary:
        print(f"{row['name']:<22}{row['min']:>9.3f}{row['mean']:>9.3f}{row['max']:>9.3f}{row['std']:>9.3f}")
    for name, emb in dict(timeline.normalisation.get("embeddings", {})).items():  # type: ignore[call-overload]
        r = emb["reduction"]
        print(f"{name}: {r['input_dims']}-D from {emb['backend']} → {r['dims']} columns by {r['method']} "
              f"(seed {r.get('seed')}: what a style trained without reference tracks sees; docs/EMBEDDINGS.md)")
    print(f"plot → {plot}")
    return 0


def cmd_spec_check(args: argparse.Namespace, config: ServiceConfig) -> int:
    """Validate spec files (default: every specs/*.toml) without training; one line per file."""
    files = [Path(f) for f in args.files] or _relative(sorted(config.path("specs").glob("*.toml")))
    if not files:
        print(f"no specs in {config.path('specs')}")
        return 0
    failed = 0
    for path in files:
        try:
            spec = load_spec(path, limits=config.limits, override=config.spec_override)
            variants = load_specs(path, limits=config.limits, override=config.spec_override)
        except AfxError as e:
            failed += 1
            print(e.user_line())
            continue
        swept = [v for v in variants if v.variant]
        print(f"ok {path} → style {spec.name} id {spec.style_id}"
              + (f", sweep of {len(swept)} variants" if swept else ""))
        for variant in swept:
            print(f"   variant {variant.name} id {variant.style_id}")
    return EXIT_ERROR if failed else 0


def _relative(paths: list[Path]) -> list[Path]:
    """Paths as the user would type them: relative to the working directory where they are inside it."""
    cwd = Path.cwd()
    return [p.relative_to(cwd) if p.is_relative_to(cwd) else p for p in paths]


def cmd_train(args: argparse.Namespace, config: ServiceConfig) -> int:
    library = Library(config.path("library"))
    library.upgrade_ids()  # versions trained before style ids hashed only non-default fields
    paths = [Path(p) for p in args.specs] or sorted(config.path("specs").glob("*.toml"))
    if not paths:
        print(f"no specs to train in {config.path('specs')}")
        return 0
    for path in paths:
        variants = load_specs(path, limits=config.limits, override=config.spec_override)
        inbox = inbox_references(variants[0], config.path("inbox"))  # as the service chooses them
        trained = []
        for spec in variants:
            if library.has(spec.name, spec.style_id) and not args.force:
                print(f"up to date: {spec.name} (id {spec.style_id}) — use --force to retrain")
            else:
                _train_one(spec, config, library=library, inbox=inbox, device=args.device or config.device,
                           allow_download=config.download_models and not args.offline)
            trained.append(spec)
        if len(variants) > 1:
            _sweep_report(path, trained, library, config, inbox)
    return 0


def _train_one(spec: StyleSpec, config: ServiceConfig, *, library: Library, inbox: list[Path], device: str,
               allow_download: bool) -> None:
    from daemon.pipeline import train_style

    bar_update, bar_close = _progress(f"train {spec.name}", "step")

    def on_step(record: StepRecord, total: int) -> None:
        bar_update(record.step, total)

    try:
        style = train_style(spec, library=library, ctx=audio_context(config), reference_tracks=inbox,
                            device=device, checkpoint_dir=config.path("state") / "checkpoints" / spec.style_id,
                            models_dir=config.path("models"), allow_download=allow_download, on_step=on_step)
    finally:
        bar_close()
    t = style.training
    no_clip = style.guidance.get("clip_model") == "none"
    warn = "" if style.guidance.get("trained_guidance") or no_clip else \
        " [UNTRAINED guidance model: similarity is meaningless]"
    score = "no CLIP" if no_clip else f"similarity {t['mean_similarity']}"
    match = (t.get("metrics") or {}).get("palette_match")
    score += "" if match is None else f", palette match {match:.0%}"
    print(f"trained {style.name} (id {style.style_id}) with {style.guidance['clip_model']}: {score}, "
          f"{t['seconds']} s, {t['audio_source']} → {style.folder}{warn}")
    for warning in t.get("warnings", []):
        print(f"afx: warning: {warning}", file=sys.stderr)


def _sweep_report(path: Path, variants: list[Any], library: Any, config: ServiceConfig, inbox: list[Path]) -> None:
    from daemon.pipeline import sweep_comparison  # torch

    pages = sweep_comparison(default_name(path), variants, library=library, ctx=audio_context(config), fallback=inbox)
    print(f"sweep comparison → {pages['html']} (+ {pages['json'].name}, {pages['sheet'].name})")


def cmd_library(args: argparse.Namespace, config: ServiceConfig) -> int:

    entries = Library(config.path("library")).entries()
    ratings = {e.folder: read_rating(e.folder) for e in entries}
    if args.json:
        print(json.dumps([{"name": e.name, "id": e.style_id, "folder": str(e.folder), **{
            k: e.meta.get(k) for k in ("created", "guidance", "training")},
            "rating": dataclasses.asdict(r) if (r := ratings[e.folder]) else None} for e in entries], indent=2))
        return 0
    if not entries:
        print(f"the library {config.path('library')} is empty: train a style with `afx train specs/NAME.toml`")
        return 0
    print(f"{'':2}{'name':<28}{'id':<18}{'CLIP model':<26}{'similarity':>11}{'train s':>9}  {'created':<17} rating")
    previous = None
    for e in entries:
        g, t = e.meta.get("guidance") or {}, e.meta.get("training") or {}
        model = f"{g.get('clip_model')}/{g.get('pretrained')}" + ("" if g.get("trained_guidance") else "*")
        sim = t.get("mean_similarity")
        newest = "▸ " if e.name != previous else "  "
        previous = e.name
        print(f"{newest}{e.name[:27]:<28}{e.style_id:<18}{model[:25]:<26}{'—' if sim is None else f'{sim:.4f}':>11}"
              f"{t.get('seconds', '—'):>9}  {e.created[:16]:<17} {stars_text(rating := ratings[e.folder])}"
              + (f" {rating.note[:40]}" if rating and rating.note else ""))
    print("▸ newest version of a name (its default); * untrained guidance model")
    return 0


def cmd_models_fetch(args: argparse.Namespace, config: ServiceConfig) -> int:
    from daemon.guidance import fetch_weights

    if args.model.lower() == "vgg16":  # the perceptual term's weights (training.perceptual_weight)
        from daemon.perceptual import fetch_vgg

        print(f"vgg16 (torchvision IMAGENET1K_V1) is in the models cache: {fetch_vgg(config.path('models'))}")
        return 0
    if args.tag is None:
        raise AfxError(f"say which pretrained weights of {args.model} to fetch",
                       hint=f"e.g. afx models fetch {args.model} openai (the tags are open_clip's)")
    folder = fetch_weights(args.model, args.tag, cache_dir=config.path("models"))
    print(f"{args.model} ({args.tag}) is in the models cache {folder}")
    return 0


def cmd_run(args: argparse.Namespace, config: ServiceConfig) -> int:
    from daemon.service.service import Service

    configure_logging(json_lines=config.log_json, level="debug" if args.verbose else "info")
    path = config_path(args.config)
    return Service(config, config_file=path.resolve() if path else None).run()


def cmd_web(args: argparse.Namespace, config: ServiceConfig) -> int:
    """The dashboard, read-only, from the ledger and the folders: no service needed (nor disturbed)."""
    from daemon.web.security import web_access

    if args.listen:
        config = dataclasses.replace(config, web=dataclasses.replace(config.web, listen=args.listen))
    access = web_access(config)  # refused at once, before the imports below
    import uvicorn

    from daemon.web.app import create_app
    from daemon.web.server import server_config

    host = f"[{access.host}]" if ":" in access.host else access.host
    print(f"afx web: read-only dashboard on http://{host}:{access.port}/ (Ctrl-C stops it)"
          + (" — token required" if access.token else ""), flush=True)
    uvicorn.Server(server_config(create_app(config, access, read_only=True), access)).run()
    return 0


def cmd_status(args: argparse.Namespace, config: ServiceConfig) -> int:
    snap = status_snapshot(config)
    if args.json:
        print(json.dumps(snap, indent=2, ensure_ascii=False))
        return 0
    svc, t, w = snap["service"], snap["totals"], snap["waiting"]
    state = svc["state"] + (f" (pid {svc['pid']}, up {svc['uptime_s']:.0f} s)" if svc.get("uptime_s") is not None else "")
    print(f"service: {state} — ledger {snap['ledger']}")
    if svc.get("web") and svc.get("uptime_s") is not None:
        print(f"web:     {svc['web']} (the dashboard)")
    cluster = svc.get("executor") or {}
    if cluster.get("kind") == "ray" and svc.get("uptime_s") is not None:
        nodes = cluster.get("nodes", [])
        print(f"cluster: Ray at {cluster.get('address')}, storage {cluster.get('storage')}: "
              f"{sum(1 for n in nodes if n['fit'])} of {len(nodes)} nodes ready, "
              f"{sum(n['busy'] for n in nodes)}/{sum(n['units'] for n in nodes if n['fit'])} slots busy")
        for n in nodes:
            if n["problem"]:
                print(f"  ✗ {n['node']}: {n['problem']}")
    print(f"queue:   {t['queued']} queued ({w['backoff']} backing off, {w['blocked_by_training']} blocked by a failed"
          f" training), {t['running']} running")
    for r in snap["running"]:
        progress = f"{r['done']}/{r['total']} ({r['percent']}%)" if r["percent"] is not None else "starting"
        eta = f", ETA {r['eta_s']:.0f} s" if r["eta_s"] is not None else ""
        print(f"  ▸ {r['job']} on {r['device']}: {progress}{eta}")
    c = snap["counts"]
    print(f"done:    {t['done']} ({c['train']['done']} trainings, {c['render']['done']} renders)   "
          f"failed: {t['failed']}   bad input: {t['bad_input']}   superseded: {t['superseded']}")
    for p in snap["problems"]:
        print(f"problem: {p['error']} → {p['report']}")
    for h in snap["held_out"]:
        print(f"held out: {h['style']} — {h['reason']}")
    if snap["errors"]:
        print("last errors:")
        for e in snap["errors"]:
            print(f"  {e['time'] or ''} {e['job']} [{e['state']}]: {e['error']}")
    return 0


def cmd_retry(args: argparse.Namespace, config: ServiceConfig) -> int:
    if not args.all and not args.target:
        raise AfxError("say what to retry", hint="afx retry --all, afx retry TRACK, or afx retry STYLE")
    jobs = retry_jobs(config, target=None if args.all else args.target, include_done=args.done)
    if not jobs:
        print("nothing to retry" + (f" for {args.target!r}" if args.target else ""))
        return 1
    for job in jobs:
        print(f"requeued {job.label()} (was {job.state})")
    return 0


def cmd_bench(args: argparse.Namespace, config: ServiceConfig) -> int:
    """Measure render, end-to-end, training, features and encoder speed; JSON to --out, a line per figure."""
    from daemon.bench import FULL, QUICK, bench_devices, describe_row, run_bench

    out = Path(args.out)
    print(f"afx bench ({'quick' if args.quick else 'full'}) → {out}")
    result = run_bench(QUICK if args.quick else FULL, devices=bench_devices(args.device), out=out,
                       e2e_size=args.e2e_size, on_row=lambda section, row: print(describe_row(section, row),
                                                                                  flush=True))
    for target in result["targets"]:
        print(f"target      {'met ' if target['met'] else 'MISS'} {target['target']}: {target['value']} "
              f"(goal {target['goal']})")
    return 0


def cmd_evaluate(args: argparse.Namespace, config: ServiceConfig) -> int:
    """Render styles on corpus tracks, score them against docs/ART.md's targets, write the table and sheets."""
    from daemon.evaluate import evaluate, load_excerpts, write_results

    library = Library(config.path("library"))
    if args.style:
        styles = [resolve_style(ref, library=library) for ref in args.style]
    else:
        styles = _shipped_styles(config, library, device=args.device or config.device)
    folder = Path(args.corpus)
    tracks = [Path(t) for t in args.tracks] if args.tracks else sorted(
        p for p in folder.iterdir() if p.is_file() and p.suffix.lower() not in (".md", ".txt"))
    if not styles:  # nothing to measure: never replace the doc's tables with empty ones
        raise AfxError(f"no styles to evaluate: the specs folder {config.path('specs')} has no default style",
                       path=str(config.path("specs")), hint="name styles with --style, or set [folders] specs in afx.toml")
    if not tracks:
        raise AfxError(f"no tracks to evaluate in {folder}", path=str(folder), hint="--corpus FOLDER or --tracks FILE ...")
    excerpts = load_excerpts(tracks, seconds=args.seconds)
    width, height = args.size
    print(f"afx evaluate: {len(styles)} styles × {len(excerpts)} excerpts (first {args.seconds:g} s of each track's render) at "
          f"{width}x{height}, {args.fps} fps")

    def show(row: dict[str, Any]) -> None:
        m = row["metrics"]
        print(f"{row['style']:<22}{row['track'][:34]:<36}SSIM {m['temporal_ssim_mean']}  motion {m['motion_energy']}"
              f"  align {m['onset_alignment']}  contrast {m['loud_quiet_contrast']}  ({row['seconds']} s)", flush=True)

    rows = evaluate(styles, excerpts, art_dir=Path(args.art), size=(width, height), fps=args.fps, on_row=show)
    command = args.command_line or "afx " + " ".join(sys.argv[1:])
    doc = write_results(rows, doc=Path(args.doc), art_dir=Path(args.art), command=command, styles=styles)
    print(f"table → {doc}, contact sheets and evaluate.json → {args.art}")
    return 0


def _shipped_styles(config: ServiceConfig, library: Any, *, device: str) -> list[Any]:
    """The default set of the specs folder (every spec but CLIP ones still waiting for their weights), each
    trained first when the library lacks it, as the service would train it."""
    from daemon.guidance import guide_ready
    from daemon.style import Style

    styles = []
    for path in sorted(config.path("specs").rglob("*.toml")):
        for spec in load_specs(path, limits=config.limits, override=config.spec_override):
            if not guide_ready(spec.training.clip_model, spec.training.pretrained, cache_dir=config.path("models")):
                print(f"held out: {spec.name} (CLIP {spec.training.clip_model} weights are not in the models cache)")
                continue
            if not library.has(spec.name, spec.style_id):
                _train_one(spec, config, library=library, inbox=inbox_references(spec, config.path("inbox")),
                           device=device, allow_download=False)
            styles.append(Style.load(library.folder_for(spec.name, spec.style_id)))
    return styles


# ── parser and entry point ───────────────────────────────────────────────────────────────────────────────

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="afx", description="Music in, CLIP-styled audio-reactive videos out.")
    parser.add_argument("--config", help="afx.toml to use (default: $AFX_CONFIG, else ./afx.toml if present)")
    parser.add_argument("--verbose", "-v", action="store_true", help="debug logging, tracebacks on errors")
    parser.add_argument("--version", action="version", version=f"afx {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("render", help="render a track with a style to an MP4 and a JSON report")
    p.add_argument("audio", help="any audio file ffmpeg can decode")
    p.add_argument("--style", required=True, help="library style name, style folder, or random:SEED")
    p.add_argument("-o", "--output", help="output .mp4 (default renders/<track>/<style>.mp4, with "
                   "@WxH-FPSfps before .mp4 when the size or fps differ from the style's own)")
    p.add_argument("--size", type=_size, help="WIDTHxHEIGHT (default: the style's [render] size, else 1280x720)")
    p.add_argument("--fps", type=int, help="frames per second (default: the style's, else 30)")
    p.add_argument("--device", help="auto | cpu | cuda (default from config: auto)")
    p.add_argument("--highlight", type=float, metavar="SECONDS",
                   help="render only the track's most energetic SECONDS (a demo clip; default name "
                        "<style>@highlight-SECONDSs.mp4); its report says where it starts and why")
    p.set_defaults(func=cmd_render)

    p = sub.add_parser("export", help="a style as a GLSL shader, or as an HTML player of a track (WebGL2)")
    p.add_argument("style", help="library style name, style folder, or random:SEED")
    p.add_argument("--glsl", metavar="OUT", help="write the style's fragment shader to OUT")
    p.add_argument("--variant", choices=("webgl", "shadertoy", "touchdesigner"), default="webgl",
                   help="--glsl flavour: webgl (GLSL ES 3.00, default), shadertoy (audio from iChannel0), "
                        "touchdesigner (GLSL TOP)")
    p.add_argument("--weights", choices=("inline", "texture"), default="inline",
                   help="--glsl weights written into the code (self-contained, default) or a float texture written "
                        "beside the shader (webgl only; compiles in a second at any width)")
    p.add_argument("--player", nargs=2, metavar=("TRACK", "OUT.html"),
                   help="write an HTML player of TRACK with the style (the track is copied beside it)")
    p.add_argument("--fps", type=int, default=30, help="feature frames per second of the player (default 30)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("features", help="summarise and plot a track's audio features")
    p.add_argument("audio")
    p.add_argument("--set", action="append", help="feature set (repeatable; default fft)")
    p.add_argument("--fps", type=int, default=30)
    p.add_argument("--plot", help="PNG path (default <audio stem>.features.png beside the audio)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=cmd_features)

    p = sub.add_parser("spec", help="style specs (specs/*.toml)")
    spec_sub = p.add_subparsers(dest="spec_command", required=True, metavar="SPEC_COMMAND")
    p = spec_sub.add_parser("check", help="validate specs without training; prints each style's id")
    p.add_argument("files", nargs="*", help="spec files (default: every specs/*.toml)")
    p.set_defaults(func=cmd_spec_check)
    p = sub.add_parser("train", help="train the styles of specs into the library (skips unchanged ones)")
    p.add_argument("specs", nargs="*", help="spec files (default: every specs/*.toml)")
    p.add_argument("--force", action="store_true", help="retrain even when the library has this version")
    p.add_argument("--device", help="auto | cpu | cuda (default from config: auto)")
    p.add_argument("--offline", action="store_true",
                   help="never try to download CLIP weights (also: download_models = false in afx.toml)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("library", help="list trained styles")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_library)

    p = sub.add_parser("models", help="CLIP and VGG16 weights in the models cache")
    models_sub = p.add_subparsers(dest="models_command", required=True, metavar="ACTION")
    p = models_sub.add_parser("fetch", help="download open_clip weights, or VGG16's for training.perceptual_weight, "
                                            "into the models cache (needs network)")
    p.add_argument("model", help="open_clip model name, e.g. ViT-B-32; or vgg16")
    p.add_argument("tag", nargs="?", help="open_clip pretrained tag, e.g. openai (not for vgg16)")
    p.set_defaults(func=cmd_models_fetch)

    p = sub.add_parser("run", help="the service: watch inbox/ and specs/, train and render everything assigned")
    p.set_defaults(func=cmd_run)
    p = sub.add_parser("web", help="serve the dashboard read-only from the ledger and folders (no service needed)")
    p.add_argument("--listen", help="HOST:PORT (default [web] listen: 127.0.0.1:8750); not loopback needs a token")
    p.set_defaults(func=cmd_web)
    p = sub.add_parser("status", help="the service's queue, running job, counts and last errors (from its ledger)")
    p.add_argument("--json", action="store_true", help="print the status as JSON")
    p.set_defaults(func=cmd_status)
    p = sub.add_parser("retry", help="requeue failed and bad-input jobs")
    p.add_argument("target", nargs="?", help="a track (path, file name or stem) or a style name")
    p.add_argument("--all", action="store_true", help="every failed and bad-input job")
    p.add_argument("--done", action="store_true", help="also redo finished jobs that match")
    p.set_defaults(func=cmd_retry)

    p = sub.add_parser("bench", help="measure render/training/feature/encoder speed (JSON + a table)")
    p.add_argument("--quick", action="store_true", help="tiny sizes, few frames: under a minute on 2 CPU cores")
    p.add_argument("--out", default="bench.json", help="JSON results file (default bench.json)")
    p.add_argument("--device", choices=("cpu", "cuda", "all"), default="all",
                   help="devices to measure (default all: CPU, plus CUDA when present)")
    p.add_argument("--e2e-size", type=_size, help="frame size of the end-to-end renders (default: 320x180 on CPU, "
                                                  "1280x720 on CUDA; --quick 64x36)")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("evaluate", help="render styles on corpus tracks and score reactivity (docs/ART.md)")
    p.add_argument("--style", action="append", help="style to evaluate (repeatable; default: every style of the "
                   "specs folder's default set, trained first when the library lacks it)")
    p.add_argument("--device", help="device for trainings the evaluation needs (default from config)")
    p.add_argument("--corpus", default="../shared/corpus", help="folder of tracks (default ../shared/corpus)")
    p.add_argument("--tracks", nargs="*", help="these tracks instead of the corpus folder's")
    p.add_argument("--seconds", type=float, default=30.0, help="measure the first seconds of each track's render "
                   "(features and time input follow the whole track, as in the service's render; default 30)")
    p.add_argument("--size", type=_size, default=(320, 180), help="WIDTHxHEIGHT (default 320x180)")
    p.add_argument("--fps", type=int, default=30, help="frames per second (default 30)")
    p.add_argument("--doc", default="docs/ART.md", help="markdown file whose evaluate block is replaced")
    p.add_argument("--art", default="docs/art", help="folder for contact sheets and evaluate.json")
    p.add_argument("--command-line", help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_evaluate)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(level="debug" if args.verbose else "info")
    if threading.current_thread() is threading.main_thread():
        # SIGTERM unwinds like Ctrl-C, so a command's cleanup (a render's scratch file) runs; `afx run`
        # installs its own handlers
        signal.signal(signal.SIGTERM, _terminated)
    try:
        config = load_config(args.config)
        apply_environment(config)
        return int(args.func(args, config) or 0)
    except AfxError as e:
        if args.verbose:
            log.exception("command.failed", command=args.command)
        print(f"afx: error: {e.user_line()}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("afx: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `afx status | head`: the reader left; nothing more to say
        sys.stderr.close()
        return 0


def _terminated(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
