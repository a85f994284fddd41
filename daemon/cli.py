"""`afx` — the command line. The only module that parses arguments or prints for people.

Every command turns AfxError into one line on stderr (what, which file, what to do) and a non-zero exit;
the traceback goes to the log only with --verbose.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from daemon import __version__
from daemon.config import ServiceConfig, load_config
from daemon.errors import AfxError
from daemon.logs import configure_logging, get_logger

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


def audio_context(config: ServiceConfig, *, cache: bool = True) -> Any:
    from daemon.audio.cache import FeatureCache
    from daemon.pipeline import AudioContext

    return AudioContext(limits=config.limits.audio(), cache=FeatureCache(config.path("cache") if cache else None))


# ── commands ─────────────────────────────────────────────────────────────────────────────────────────────

def cmd_render(args: argparse.Namespace, config: ServiceConfig) -> int:
    from daemon.library import Library, resolve_style
    from daemon.pipeline import default_output, render_track
    from daemon.render import RenderSettings

    style = resolve_style(args.style, library=Library(config.path("library")))
    width, height = args.size
    settings = RenderSettings(width=width, height=height, fps=args.fps, device=args.device or config.device)
    out = Path(args.output) if args.output else default_output(Path(args.audio), style, config.path("renders"))
    update, close = _progress(f"render {Path(args.audio).name}", "frame")
    try:
        report = render_track(Path(args.audio), style, settings, out_path=out, ctx=audio_context(config),
                              on_progress=update)
    finally:
        close()
    t, m = report["timing"], report["metrics"]
    print(f"rendered {report['video']['frames']} frames in {t['total_s']:.1f} s "
          f"({t['realtime_factor']:.2f}x real time, {report['device']}), temporal SSIM {m['temporal_ssim_mean']}, "
          f"audio reactivity {m['audio_reactivity']} → {out}")
    return 0


def cmd_features(args: argparse.Namespace, config: ServiceConfig) -> int:
    from daemon.pipeline import track_features
    from daemon.plots import plot_features

    sets = tuple(args.set or ["fft"])
    started = time.perf_counter()
    track, timeline, _ = track_features(Path(args.audio), sets, fps=args.fps, ctx=audio_context(config))
    seconds = time.perf_counter() - started
    plot = Path(args.plot) if args.plot else Path(args.audio).with_suffix("").with_name(
        Path(args.audio).stem + ".features.png")
    if args.plot or not args.json:
        plot_features(timeline, plot, title=f"{track.path.name} — {', '.join(sets)}")
    summary = timeline.summary()
    if args.json:
        print(json.dumps({"track": track.to_dict(), "sets": sets, "frames": timeline.n_frames,
                          "fps": timeline.fps, "seconds": round(seconds, 3), "features": summary}, indent=2))
        return 0
    print(f"{track.path.name}: {track.duration_s:.2f} s, {timeline.n_frames} frames at {timeline.fps:g} fps, "
          f"sets {', '.join(sets)} ({seconds:.2f} s)")
    print(f"{'feature':<22}{'min':>9}{'mean':>9}{'max':>9}{'std':>9}")
    for row in summary:
        print(f"{row['name']:<22}{row['min']:>9.3f}{row['mean']:>9.3f}{row['max']:>9.3f}{row['std']:>9.3f}")
    print(f"plot → {plot}")
    return 0


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
    p.add_argument("-o", "--output", help="output .mp4 (default renders/<track>/<style>.mp4)")
    p.add_argument("--size", type=_size, default=(1280, 720), help="WIDTHxHEIGHT (default 1280x720)")
    p.add_argument("--fps", type=int, default=30, help="frames per second (default 30)")
    p.add_argument("--device", help="auto | cpu | cuda (default from config: auto)")
    p.set_defaults(func=cmd_render)

    p = sub.add_parser("features", help="summarise and plot a track's audio features")
    p.add_argument("audio")
    p.add_argument("--set", action="append", help="feature set (repeatable; default fft)")
    p.add_argument("--fps", type=int, default=30)
    p.add_argument("--plot", help="PNG path (default <audio stem>.features.png beside the audio)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=cmd_features)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(level="debug" if args.verbose else "warning")
    try:
        config = load_config(args.config)
        return int(args.func(args, config) or 0)
    except AfxError as e:
        if args.verbose:
            log.exception("command.failed", command=args.command)
        print(f"afx: error: {e.user_line()}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("afx: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
