"""Style specs: `specs/*.toml` → a validated, frozen `StyleSpec`, its style id, and sweep expansion.

A spec is one style per file (the name defaults to the file stem). Every error names the file, the dotted
key and the reason, and an unknown key suggests the nearest valid one. The style id hashes everything
that changes the trained weights — and nothing else — so an edited spec becomes a new library version and
an unchanged one is never retrained. This module reads files and validates; it never trains or renders.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import math
import re
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path, PurePosixPath
from typing import Any

from daemon.config import Limits
from daemon.cppn_config import CPPNConfig, EncoderConfig
from daemon.errors import AfxError, ConfigError, SpecError
from daemon.palette import PALETTE_VERSION, Palette, explicit_palette, palette_from_words
from daemon.tables import bounds, check_keys, from_table, nearest, to_table

STYLE_ID_FORM = 2  # the canonical form `weight_fields` hashes; form 1 hashed every field (`legacy_style_id`)
MAX_NAME_CHARS = 100  # style names become library folder names
MAX_SWEEP_VARIANTS = 64  # a sweep trains every variant: keep a typo from queueing days of work
MAX_TRACK_GLOBS = 256  # entries in `tracks` / `audio.reference_tracks`
STYLE_ID_CHARS = 16  # hex digits of the sha256 kept as the style id
NO_CLIP = "none"  # training.clip_model of a style trained on the weight-free terms alone

@dataclass(frozen=True)
class Prompt:
    """One text target for CLIP; weights are relative within the positive (or negative) prompts."""

    text: str  # what the frames should look like (stripped; 1..limits.max_prompt_chars characters)
    weight: float = field(default=1.0, metadata=bounds(lo=0.0, hi=100.0))  # > 0; averaged with the others


@dataclass(frozen=True)
class AudioSpec:
    """Which audio features drive the style, and which tracks training samples them from."""

    features: tuple[str, ...] = field(default=("fft",), metadata=bounds(max_len=8))  # feature sets, in order
    reference_tracks: tuple[str, ...] = field(default=(), metadata=bounds(max_len=MAX_TRACK_GLOBS))  # files
    # (relative to the spec's folder) or globs into the inbox whose features training samples
    embedding_dims: int = field(default=8, metadata=bounds(lo=1, hi=512))  # embedding sets: dims after reduction


@dataclass(frozen=True)
class TrainingSpec:
    """How CLIP guidance trains the CPPN; every field changes the weights except checkpoint_every."""

    clip_model: str = field(default="ViT-B-32", metadata=bounds(max_len=200))  # open_clip name, "afx-tiny",
    # or "none": no CLIP; the weight-free terms below (palette, reactivity, collapse, contrast, smoothness) alone
    pretrained: str = field(default="openai", metadata=bounds(max_len=4096))  # tag, checkpoint path, or "none"
    iterations: int = field(default=400, metadata=bounds(lo=1))  # optimiser steps (≤ limits.max_iterations)
    learning_rate: float = field(default=0.003, metadata=bounds(lo=0.0, hi=1.0))  # Adam's peak rate, > 0
    lr_warmup: int = field(default=20, metadata=bounds(lo=0, hi=1_000_000))  # linear warm-up steps, then
    # cosine decay to 10 %
    resolution: int = field(default=224, metadata=bounds(lo=32, hi=1024))  # training frames' shorter side
    cutouts: int = field(default=8, metadata=bounds(lo=1, hi=64))  # random crops per frame sent to CLIP
    augment: bool = True  # differentiable scale/rotation/colour jitter of cutouts
    time_points: int = field(default=4, metadata=bounds(lo=1, hi=32))  # audio time points rendered per step
    temporal_weight: float = field(default=1.0, metadata=bounds(lo=0.0, hi=1000.0))  # reactivity: penalise
    # frame-to-frame change the audio does not explain, reward change where the audio changes
    collapse_weight: float = field(default=1.0, metadata=bounds(lo=0.0, hi=1000.0))  # keep detail and
    # change at >= 70 % of the untrained network's (no collapse to a flat colour)
    smoothness_weight: float = field(default=0.1, metadata=bounds(lo=0.0, hi=1000.0))  # total variation
    perceptual_weight: float = field(default=0.0, metadata=bounds(lo=0.0, hi=1000.0))  # VGG16 feature
    # distance of each frame from its own low-pass version (daemon/perceptual.py); 0: VGG is never loaded
    contrast_weight: float = field(default=0.0, metadata=bounds(lo=0.0, hi=1000.0))  # reward the spread of
    # lightness in each frame (OKLab L, up to CONTRAST_CAP): crisp light/dark structure instead of a mid-tone haze
    negative_weight: float = field(default=0.5, metadata=bounds(lo=0.0, hi=1000.0))  # push from negatives
    seed: int = field(default=0, metadata=bounds(lo=0, hi=2**32 - 1))  # initial weights, cutouts, samples
    checkpoint_every: int = field(default=50, metadata=bounds(lo=1, hi=1_000_000))  # steps between
    # checkpoints (resume after a kill); not in the style id: a resumed run ends with the same weights


@dataclass(frozen=True)
class PaletteSpec:
    """The colours a style should use (daemon.palette): measured in every report as `palette_match`, and a
    training term where it is given here or the style trains without CLIP."""

    colors: tuple[str, ...] = field(default=(), metadata=bounds(max_len=16))  # "#rrggbb", "#rgb" or colour
    # names (XKCD/CSS4), in the order the palette colour mode's gradient runs; empty: from `words` or the prompts
    weights: tuple[float, ...] = field(default=(), metadata=bounds(lo=0.0, hi=1000.0, max_len=16))  # share of
    # the picture per colour (normalised; the gradient band widths); empty: equal
    weight: float = field(default=1.0, metadata=bounds(lo=0.0, hi=1000.0))  # the training term's weight (0: off)
    words: str = field(default="", metadata=bounds(max_len=500))  # colour words to read instead of the
    # prompts' ("muted earth tones"); a CLIP style is trained toward it, not only measured


@dataclass(frozen=True)
class RenderSpec:
    """The video a style renders by default; the aspect ratio also shapes the training frames."""

    width: int = field(default=1280, metadata=bounds(lo=16, hi=7680))  # pixels, even (H.264 4:2:0)
    height: int = field(default=720, metadata=bounds(lo=16, hi=7680))  # pixels, even
    fps: int = field(default=30, metadata=bounds(lo=1, hi=240))  # frames per second (one feature row each)

    def settings(self) -> dict[str, int]:
        """What of a render changes its pixels (its size and rate): the render key's and settings tag's input."""
        return {"width": self.width, "height": self.height, "fps": self.fps}


def check_video_size(width: int, height: int, fps: int, *, error: type[AfxError] = SpecError,
                     path: Path | None = None, limits: Limits | None = None) -> None:
    """The one rule for a video's size and rate, for specs, `afx render --size/--fps` and render jobs:
    RenderSpec's bounds, even sides (H.264 4:2:0), and `limits.max_render_pixels` when given."""
    bound = {f.name: f.metadata for f in fields(RenderSpec)}
    for key, value in (("width", width), ("height", height)):
        lo, hi = bound[key]["lo"], bound[key]["hi"]
        if not lo <= value <= hi:
            raise error(f"{key} must be an even number of pixels from {lo} to {hi}, got {value}", path=path,
                        key=f"render.{key}")
        if value % 2:
            raise error(f"{key} must be an even number of pixels: {value} is odd (H.264 4:2:0)", path=path,
                        key=f"render.{key}", hint=f"use {value - 1} or {value + 1}")
    if not bound["fps"]["lo"] <= fps <= bound["fps"]["hi"]:
        raise error(f"fps must be from {bound['fps']['lo']} to {bound['fps']['hi']}, got {fps}", path=path,
                    key="render.fps")
    if limits is not None and width * height > limits.max_render_pixels:
        raise error(f"{width}×{height} is {width * height} pixels, at most {limits.max_render_pixels}", path=path,
                    key="render", hint="render smaller, or raise limits.max_render_pixels in afx.toml")


@dataclass(frozen=True)
class StyleSpec:
    """One style, as validated from its TOML file; `style_id` names the weights it trains to."""

    name: str  # library name (default: the file stem); sweep variants are "<name>--<label>"
    prompts: tuple[Prompt, ...]  # what the frames should look like (at least one)
    negative_prompts: tuple[Prompt, ...] = ()  # what they should not look like
    tracks: tuple[str, ...] = ()  # globs of inbox files this style renders (relative to the inbox)
    network: CPPNConfig = CPPNConfig()  # the CPPN's shape
    encoder: EncoderConfig = EncoderConfig()  # how coordinates, time and features are scaled
    audio: AudioSpec = AudioSpec()  # feature sets and reference tracks
    training: TrainingSpec = TrainingSpec()  # guidance model and optimisation
    render: RenderSpec = RenderSpec()  # default video size and frame rate
    palette: PaletteSpec = PaletteSpec()  # the colours to use (explicit, from words, else the prompts')
    source: Path | None = None  # the file it was read from (not part of the id)
    variant: str = ""  # sweep variant label, e.g. "training.clip_model=RN50,network.width=128"

    @property
    def style_id(self) -> str:
        """16 hex digits of the sha256 of the canonical JSON of `weight_fields()`."""
        return _digest(self.weight_fields())

    def resolved_palette(self) -> Palette | None:
        """[palette] colors, else its words, else the colour words of the prompts; None when none name a colour."""
        p = self.palette
        if p.colors:
            return explicit_palette(p.colors, p.weights)
        if p.words.strip():
            return palette_from_words(p.words, source=f"words: {p.words.strip()}")
        return palette_from_words(", ".join(q.text for q in self.prompts), source="prompts")

    @property
    def palette_trains(self) -> bool:
        """Whether training pulls toward the palette: given in [palette] (colors or words), or a style without
        CLIP, whose prompts only mean their colour words. A CLIP style whose prompts merely mention colours is
        measured against them but not pushed (what CLIP alone does with them stays visible)."""
        given = bool(self.palette.colors or self.palette.words.strip())
        return self.palette.weight > 0 and (given or self.training.clip_model == NO_CLIP)

    @property
    def uses_word_table(self) -> bool:
        """Whether the trained weights depend on the colour-word table (PALETTE_VERSION enters the id)."""
        return not self.palette.colors and (self.palette_trains or self.network.color_mode == "palette")

    def weight_fields(self, *, versions: dict[str, Any] | None = None) -> dict[str, Any]:
        """What the trained weights depend on, as plain data: the fields a user set to something other
        than their default, and the versions of the stages that turn them into weights.

        Only non-default values enter, so a new field with a default (a new training term, a palette)
        changes no existing id. The trainer's and each feature set's version constant enter, so a change
        of what those stages compute does. Left out, because they do not change the weights: the name,
        `tracks`, the source file, the sweep label, the render fps and `training.checkpoint_every`. The
        render size enters only as its reduced aspect ratio when that differs from the default's, which
        is all training sees of it (1280×720 and 1920×1080 train the same frames).

        `versions` replaces the current stage versions: for styles trained by an earlier afx (`upgraded_id`).
        """
        from daemon.audio.features import feature_set  # librosa: only loaded when an id is computed
        from daemon.train import TRAINER_VERSION

        chosen: dict[str, Any] = {}
        for f in fields(self):
            if f.name in _NOT_WEIGHTS:
                continue
            value = _non_default(getattr(self, f.name), f.default, skip=_SKIPPED.get(f.name, ()))
            if value is not _DEFAULT:
                chosen[f.name] = value
        aspect = _aspect(self.render)
        if aspect != _aspect(RenderSpec()):
            chosen["render_aspect"] = aspect
        if versions is None:
            versions = {"trainer": TRAINER_VERSION,
                        "features": {name: feature_set(name).version for name in self.audio.features}}
            if self.uses_word_table:
                versions["palette"] = PALETTE_VERSION
        return {"form": STYLE_ID_FORM, "versions": versions, **chosen}

    def to_dict(self) -> dict[str, Any]:
        """The resolved spec as plain data (style.json, the library, reports), with its style id."""
        data: dict[str, Any] = to_table(self)
        data["style_id"] = self.style_id
        return data


_NOT_WEIGHTS = frozenset({"name", "tracks", "render", "source", "variant"})  # see weight_fields
_SKIPPED = {"training": ("checkpoint_every",)}
_DEFAULT = object()  # "equal to the default": left out of the id


def _non_default(value: Any, default: Any, *, skip: tuple[str, ...] = ()) -> Any:
    """`value` as plain data without what equals its default (a table: its non-default keys), or _DEFAULT."""
    if dataclasses.is_dataclass(value):
        table = {}
        for f in fields(value):
            if f.name in skip:
                continue
            own_default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            kept = _non_default(getattr(value, f.name), own_default)
            if kept is not _DEFAULT:
                table[f.name] = kept
        return table or _DEFAULT
    if isinstance(value, tuple) and value and dataclasses.is_dataclass(value[0]):  # prompts
        if default is not dataclasses.MISSING and value == default:
            return _DEFAULT
        return [_non_default(v, dataclasses.MISSING) for v in value]
    if default is not dataclasses.MISSING and to_table(value) == to_table(default):
        return _DEFAULT
    return to_table(value)


def _aspect(render: RenderSpec) -> list[int]:
    divisor = math.gcd(render.width, render.height)
    return [render.width // divisor, render.height // divisor]


def _digest(data: dict[str, Any]) -> str:
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:STYLE_ID_CHARS]


def legacy_style_id(spec: dict[str, Any]) -> str:
    """The id form 1 gave the spec `spec` (a stored `StyleSpec.to_dict()`): every field hashed, defaults
    included, with trainer version 1. Only for upgrading libraries and ledgers made before form 2."""
    training = dict(spec["training"])
    training.pop("checkpoint_every", None)
    width, height = int(spec["render"]["width"]), int(spec["render"]["height"])
    divisor = math.gcd(width, height)
    return _digest({"trainer_version": 1, "prompts": spec["prompts"], "negative_prompts": spec["negative_prompts"],
                    "network": spec["network"], "encoder": spec["encoder"], "audio": spec["audio"],
                    "training": training, "render_aspect": [width // divisor, height // divisor]})


def upgraded_id(spec: dict[str, Any]) -> str | None:
    """The form-2 id of a style stored under a form-1 id (its `to_dict()` in style.json or the ledger),
    or None when the stored dict is not a form-1 spec (already current, damaged, or not valid any more)."""
    try:
        if spec.get("style_id") != legacy_style_id(spec):
            return None
        table = {k: v for k, v in spec.items() if k not in ("style_id", "source", "variant")}
        limits = Limits(max_iterations=2**31, max_prompts=2**16, max_prompt_chars=2**20, max_render_pixels=2**40)
        parsed = parse_spec(table, path=None, name=str(spec["name"]), limits=limits)
    except (SpecError, KeyError, TypeError, ValueError):
        return None
    # the versions it was trained with (form 1: trainer 1, every feature set 1), not today's: a style trained
    # by an older trainer keeps its weights under its own id and is never taken for a current one
    return _digest(parsed.weight_fields(versions={"trainer": 1,
                                                  "features": {name: 1 for name in parsed.audio.features}}))


_TABLES: dict[str, type] = {"network": CPPNConfig, "encoder": EncoderConfig, "audio": AudioSpec,
                            "training": TrainingSpec, "render": RenderSpec, "palette": PaletteSpec}
_TOP_KEYS = ("name", "prompts", "negative_prompts", "tracks", *_TABLES, "sweep")


# ── reading files ────────────────────────────────────────────────────────────────────────────────────────

def load_spec(path: Path, *, limits: Limits = Limits(), override: dict[str, Any] | None = None) -> StyleSpec:
    """Read and validate one spec file; a [sweep] table is allowed and ignored here."""
    path = Path(path)
    return parse_spec(with_override(_read_toml(path), override or {}), path=path, name=default_name(path),
                      limits=limits)


def load_specs(path: Path, *, limits: Limits = Limits(), override: dict[str, Any] | None = None) -> list[StyleSpec]:
    """The spec in `path`, or every variant of its [sweep] table when it has one; `override` (afx.toml's
    [spec_override]) replaces keys of the spec's tables first (a sweep's own values still win)."""
    path = Path(path)
    table = with_override(_read_toml(path), override or {})
    if "sweep" in table:
        return expand_sweep(table, path=path, name=default_name(path), limits=limits)
    return [parse_spec(table, path=path, name=default_name(path), limits=limits)]


def default_name(path: Path) -> str:
    """The style name of a file without `name`: its stem, `.toml.example` counted as one suffix."""
    return Path(path).name.removesuffix(".example").removesuffix(".toml")


def _read_toml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise SpecError("spec file not found", path=path, hint="check the path, or list specs/ for its files")
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise SpecError(f"not valid TOML: {e}", path=path, hint="fix the syntax at that line") from e
    except (OSError, UnicodeDecodeError) as e:
        raise SpecError(f"cannot read the file ({e})", path=path) from e


def with_override(table: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """`table` with the keys of each of `override`'s tables (network, training, render, ...) replaced."""
    merged = dict(table)
    for name, values in override.items():
        current = merged.get(name, {})
        merged[name] = {**current, **values} if isinstance(current, dict) else current  # a bad table stays bad
    return merged


def check_override(override: Any, *, path: Path | None) -> None:
    """Validate afx.toml's [spec_override] as a spec's tables would be, so a typo fails at start-up
    (naming afx.toml) instead of in every spec's error report."""
    if not isinstance(override, dict):
        raise ConfigError("expected a table", path=path, key="spec_override", hint='[spec_override.render]')
    check_keys(override, _TABLES, error=ConfigError, path=path, prefix="spec_override")
    for name, values in override.items():
        if not isinstance(values, dict):
            raise ConfigError("expected a table", path=path, key=f"spec_override.{name}",
                              hint=f"[spec_override.{name}] with the keys of a spec's [{name}]")
    try:
        parse_spec(with_override({"prompts": ["override check"]}, override), path=None, name="override-check")
    except SpecError as e:
        raise ConfigError(e.message, path=path, key=f"spec_override.{e.key}" if e.key else "spec_override",
                          hint=e.hint) from e


# ── validation ───────────────────────────────────────────────────────────────────────────────────────────

def parse_spec(table: dict[str, Any], *, path: Path | None, name: str, limits: Limits = Limits()) -> StyleSpec:
    """Build a StyleSpec from a parsed TOML table; `name` is used when the table has no `name` key."""
    check_keys(table, _TOP_KEYS, error=SpecError, path=path, prefix="")
    style_name = _name(table.get("name", name), path=path)
    prompts = _prompts(table.get("prompts"), key="prompts", path=path, limits=limits, required=True)
    negatives = _prompts(table.get("negative_prompts", []), key="negative_prompts", path=path, limits=limits,
                         required=False)
    _check_prompt_count(len(prompts) + len(negatives), path=path, limits=limits)
    spec = StyleSpec(
        name=style_name,
        prompts=prompts,
        negative_prompts=negatives,
        tracks=_tracks(table.get("tracks", []), path=path),
        network=from_table(CPPNConfig, table.get("network", {}), error=SpecError, path=path, prefix="network"),
        encoder=from_table(EncoderConfig, table.get("encoder", {}), error=SpecError, path=path, prefix="encoder"),
        audio=from_table(AudioSpec, table.get("audio", {}), error=SpecError, path=path, prefix="audio"),
        training=from_table(TrainingSpec, table.get("training", {}), error=SpecError, path=path,
                            prefix="training"),
        render=from_table(RenderSpec, table.get("render", {}), error=SpecError, path=path, prefix="render"),
        palette=from_table(PaletteSpec, table.get("palette", {}), error=SpecError, path=path, prefix="palette"),
        source=Path(path).absolute() if path is not None else None,
    )
    _check_palette(spec, path=path)
    _check_network(spec.network, path=path)
    _check_audio(spec.audio, path=path)
    _check_training(spec.training, path=path, limits=limits)
    _check_render(spec.render, path=path, limits=limits)
    return spec


def _name(raw: Any, *, path: Path | None) -> str:
    if not isinstance(raw, str):
        raise SpecError(f"expected a string, got {type(raw).__name__} {raw!r}", path=path, key="name")
    name = raw.strip()
    if not name:
        raise SpecError("the style name is empty", path=path, key="name", hint="remove `name` to use the file stem")
    if len(name) > MAX_NAME_CHARS:
        raise SpecError(f"the style name has {len(name)} characters, at most {MAX_NAME_CHARS}", path=path,
                        key="name")
    if any(ord(c) < 32 for c in name):
        raise SpecError("the style name contains control characters", path=path, key="name")
    return name


def _prompts(raw: Any, *, key: str, path: Path | None, limits: Limits, required: bool) -> tuple[Prompt, ...]:
    """Prompts as strings or {text, weight} tables."""
    if raw is None:
        raise SpecError("a spec needs at least one prompt", path=path, key=key,
                        hint='add prompts = ["what the frames should look like"]')
    if not isinstance(raw, list):
        raise SpecError(f"expected a list of prompts, got {type(raw).__name__} {raw!r}", path=path, key=key,
                        hint=f'write {key} = ["..."] or [{{ text = "...", weight = 1.0 }}]')
    if required and not raw:
        raise SpecError("a spec needs at least one prompt", path=path, key=key)
    return tuple(_prompt(item, key=f"{key}[{i}]", path=path, limits=limits) for i, item in enumerate(raw))


def _prompt(item: Any, *, key: str, path: Path | None, limits: Limits) -> Prompt:
    if isinstance(item, str):
        prompt = Prompt(text=item)
    elif isinstance(item, dict):
        if "text" not in item:
            raise SpecError("a prompt table needs `text`", path=path, key=key, hint='{ text = "...", weight = 1.0 }')
        prompt = from_table(Prompt, item, error=SpecError, path=path, prefix=key)
    else:
        raise SpecError(f"expected a string or a {{text, weight}} table, got {type(item).__name__} {item!r}",
                        path=path, key=key)
    text = prompt.text.strip()
    if not text:
        raise SpecError("the prompt is empty", path=path, key=key, hint="describe what the frames should look like")
    if len(text) > limits.max_prompt_chars:
        raise SpecError(f"the prompt has {len(text)} characters, at most {limits.max_prompt_chars}", path=path,
                        key=key, hint="shorten it, or raise limits.max_prompt_chars in afx.toml")
    _positive(prompt.weight, path=path, key=f"{key}.weight")
    return Prompt(text=text, weight=prompt.weight)


def _check_prompt_count(count: int, *, path: Path | None, limits: Limits) -> None:
    if count > limits.max_prompts:
        raise SpecError(f"{count} prompts (with negative_prompts), at most {limits.max_prompts}", path=path,
                        key="prompts", hint="remove some, or raise limits.max_prompts in afx.toml")


@dataclass(frozen=True)
class _Tracks:
    """`tracks` alone, so from_table checks its type and length."""

    tracks: tuple[str, ...] = field(default=(), metadata=bounds(max_len=MAX_TRACK_GLOBS))


def _tracks(raw: Any, *, path: Path | None) -> tuple[str, ...]:
    """Globs into the inbox: relative, and never climbing out of it."""
    tracks = from_table(_Tracks, {"tracks": raw}, error=SpecError, path=path).tracks
    for i, pattern in enumerate(tracks):
        parts = PurePosixPath(pattern.replace("\\", "/"))
        if not pattern.strip():
            raise SpecError("the pattern is empty", path=path, key=f"tracks[{i}]")
        if parts.is_absolute() or ".." in parts.parts:
            raise SpecError(f"{pattern!r} is not inside the inbox", path=path, key=f"tracks[{i}]",
                            hint='tracks are globs relative to the inbox, e.g. "albums/**/*.flac"')
    return tracks


def _check_palette(spec: StyleSpec, *, path: Path | None) -> None:
    """Colours that parse, one weight per colour, words that name a colour, and a palette for the palette mode."""
    p = spec.palette
    for i, colour in enumerate(p.colors):
        try:
            explicit_palette([colour])
        except ValueError as e:
            raise SpecError(str(e), path=path, key=f"palette.colors[{i}]",
                            hint='e.g. "#0b1d51", "teal" or "xkcd:ocean blue"') from e
    if p.weights and len(p.weights) != len(p.colors):
        raise SpecError(f"{len(p.weights)} weights for {len(p.colors)} colors", path=path, key="palette.weights",
                        hint="give one weight per colour, or none for equal shares")
    if p.weights and not sum(p.weights) > 0:
        raise SpecError("the weights add up to 0", path=path, key="palette.weights")
    if p.words.strip() and not p.colors and palette_from_words(p.words, source="") is None:
        raise SpecError(f"{p.words!r} names no colour", path=path, key="palette.words",
                        hint='use colour names or modifiers: "cool blues and purples", "neon", "muted earth tones"')
    if spec.network.color_mode == "palette" and spec.resolved_palette() is None:
        raise SpecError("the palette colour mode needs a palette, and the prompts name no colour", path=path,
                        key="network.color_mode", hint='add [palette] colors = ["#0b1d51", ...], or colour words')


def _check_network(network: CPPNConfig, *, path: Path | None) -> None:
    if not network.activations:
        raise SpecError("needs at least one activation", path=path, key="network.activations",
                        hint=f"e.g. {list(CPPNConfig().activations)}")


def _check_audio(audio: AudioSpec, *, path: Path | None) -> None:
    from daemon.audio.features import available_sets  # librosa: only loaded when a spec is read

    if not audio.features:
        raise SpecError("needs at least one feature set", path=path, key="audio.features", hint='e.g. ["fft"]')
    known = available_sets()
    for i, name in enumerate(audio.features):
        if name not in known:
            guess = nearest(name, known)
            hint = f"did you mean '{guess}'?" if guess else f"known sets: {', '.join(known)}"
            raise SpecError(f"unknown feature set '{name}'", path=path, key=f"audio.features[{i}]", hint=hint)
        if name in audio.features[:i]:
            raise SpecError(f"feature set '{name}' is listed twice", path=path, key=f"audio.features[{i}]")
        _check_embedding_backend(name, audio.embedding_dims, path=path, key=f"audio.features[{i}]")
    for i, ref in enumerate(audio.reference_tracks):
        if not ref.strip():
            raise SpecError("the reference track is empty", path=path, key=f"audio.reference_tracks[{i}]")


def _check_embedding_backend(name: str, dims: int, *, path: Path | None, key: str) -> None:
    """An embedding set needs its package installed (it runs in a child process) and dims it can reduce to."""
    from daemon.audio.embeddings import backend, is_embedding, missing_packages

    if not is_embedding(name):
        return
    b = backend(name)
    missing = missing_packages(name)
    if missing:
        raise SpecError(f"feature set '{name}' needs {' and '.join(missing)}, which is not installed", path=path,
                        key=key, hint=f"run: {b.install_hint()}")
    if dims > b.input_dims:
        raise SpecError(f"{dims} is more than {name}'s {b.input_dims} dimensions", path=path,
                        key="audio.embedding_dims", hint=f"use 1 to {b.input_dims}")


def _check_training(training: TrainingSpec, *, path: Path | None, limits: Limits) -> None:
    # clip_model = "none" is checked like a name: the trainer reads it as "no CLIP" (NO_CLIP)
    for key in ("clip_model", "pretrained"):
        if not getattr(training, key).strip():
            raise SpecError("is empty", path=path, key=f"training.{key}",
                            hint=f"remove it to use the default {getattr(TrainingSpec(), key)!r}")
    if training.iterations > limits.max_iterations:
        raise SpecError(f"{training.iterations} is above the maximum {limits.max_iterations}", path=path,
                        key="training.iterations", hint="raise limits.max_iterations in afx.toml")
    _positive(training.learning_rate, path=path, key="training.learning_rate")


def _check_render(render: RenderSpec, *, path: Path | None, limits: Limits) -> None:
    check_video_size(render.width, render.height, render.fps, path=path, limits=limits)


def _positive(value: float, *, path: Path | None, key: str) -> None:
    if not value > 0:
        raise SpecError(f"{value} must be above 0", path=path, key=key)


# ── sweeps ───────────────────────────────────────────────────────────────────────────────────────────────

def sweep_keys() -> list[str]:
    """Every dotted key a [sweep] table may vary."""
    keys = ["prompts", "negative_prompts"]
    for table, cls in _TABLES.items():
        keys += [f"{table}.{f.name}" for f in fields(cls)]
    return keys


def expand_sweep(table: dict[str, Any], *, path: Path | None, name: str, limits: Limits = Limits()) -> list[StyleSpec]:
    """One StyleSpec per point of the cartesian product of the [sweep] table's value lists."""
    table = dict(table)
    sweep = _sweep_axes(table.pop("sweep", {}), path=path)
    base = parse_spec(table, path=path, name=name, limits=limits)  # errors outside the sweep come first
    count = math.prod(len(values) for values in sweep.values())
    if count > MAX_SWEEP_VARIANTS:
        raise SpecError(f"{count} variants, at most {MAX_SWEEP_VARIANTS}", path=path, key="sweep",
                        hint="sweep fewer keys or values")
    if not sweep:
        return [base]
    variants = []
    names: set[str] = set()
    for point in itertools.product(*(list(enumerate(v)) for v in sweep.values())):
        chosen = {key: value for key, (_, value) in zip(sweep, point)}
        variants.append(_variant(table, chosen, base=base, path=path, limits=limits, taken=names))
    return variants


def _sweep_axes(raw: Any, *, path: Path | None) -> dict[str, list[Any]]:
    """The [sweep] table as {dotted key: values}; nested tables (`training.x = [...]` unquoted) flattened."""
    if not isinstance(raw, dict):
        raise SpecError("expected a table", path=path, key="sweep",
                        hint='[sweep] then "training.clip_model" = ["RN50", "ViT-B-32"]')
    axes: dict[str, list[Any]] = {}
    valid = sweep_keys()
    for key, values in _flatten(raw):
        if key not in valid:
            guess = nearest(key, valid)
            hint = f"did you mean 'sweep.{guess}'?" if guess else f"valid keys: {', '.join(valid)}"
            raise SpecError(f"unknown sweep key '{key}'", path=path, key=f"sweep.{key}", hint=hint)
        if not isinstance(values, list) or not values:
            raise SpecError(f"expected a non-empty list of values, got {values!r}", path=path, key=f"sweep.{key}",
                            hint=f'e.g. "{key}" = [a, b]')
        for i, value in enumerate(values):
            if value in values[:i]:
                raise SpecError(f"{value!r} is listed twice", path=path, key=f"sweep.{key}[{i}]")
        axes[key] = values
    return axes


def _flatten(table: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    items: list[tuple[str, Any]] = []
    for key, value in table.items():
        dotted = f"{prefix}.{key}" if prefix else key
        items += _flatten(value, dotted) if isinstance(value, dict) else [(dotted, value)]
    return items


def _variant(table: dict[str, Any], chosen: dict[str, Any], *, base: StyleSpec, path: Path | None,
             limits: Limits, taken: set[str]) -> StyleSpec:
    """The spec with the chosen sweep values put in; its errors name `sweep.<key>`."""
    variant_table = _with_values(table, chosen)
    variant_table["name"] = _variant_name(base.name, chosen, taken)
    taken.add(variant_table["name"])
    label = ",".join(f"{key}={_label_value(value, join='+')}" for key, value in chosen.items())
    try:
        spec = parse_spec(variant_table, path=path, name=base.name, limits=limits)
    except SpecError as e:
        raise SpecError(f"{e.message} (sweep variant {label})", path=path, key=f"sweep.{e.key}" if e.key else "sweep",
                        hint=e.hint) from e
    return dataclasses.replace(spec, variant=label)


def _with_values(table: dict[str, Any], chosen: dict[str, Any]) -> dict[str, Any]:
    result = {k: dict(v) if isinstance(v, dict) else v for k, v in table.items()}
    for key, value in chosen.items():
        head, _, tail = key.partition(".")
        if head in ("prompts", "negative_prompts") and isinstance(value, (str, dict)):
            value = [value]  # `prompts = ["a", "b"]` in a sweep: one prompt per variant
        if tail:
            result.setdefault(head, {})[tail] = value
        else:
            result[head] = value
    return result


def _variant_name(base: str, chosen: dict[str, Any], taken: set[str]) -> str:
    """`<name>--<key>-<value>--…`, short keys where unambiguous, safe folder characters only."""
    last = [key.rsplit(".", 1)[-1] for key in chosen]
    parts = []
    for key, short in zip(chosen, last):
        label_key = short if last.count(short) == 1 else key.replace(".", "_")
        parts.append(f"{label_key}-{_safe(_label_value(chosen[key], join='.'))}")
    name = f"{base}--{'--'.join(parts)}"
    if len(name) <= MAX_NAME_CHARS and name not in taken:
        return name
    digest = hashlib.sha256(json.dumps(chosen, sort_keys=True).encode()).hexdigest()[:8]
    return f"{name[:MAX_NAME_CHARS - 9].rstrip('-.')}-{digest}"


def _label_value(value: Any, *, join: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return join.join(_label_value(v, join=join) for v in value)
    if isinstance(value, dict):
        return _label_value(value.get("text", ""), join=join)
    return str(value)


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.") or "x"
