"""Palettes: colour names and words → a `Palette`, OKLab, the differentiable palette term, `palette_match`.

A palette is a short list of sRGB colours with weights (how much of the picture each should take). It comes
from a spec's `[palette]` table (`colors`, or `words`), else from the colour words of the prompts:

- names are matplotlib's XKCD survey names (949, "what people call this colour"), then the CSS4 names;
  the longest name wins ("ocean blue" before "ocean"), and a plural ("blues") gives three tones of the hue;
- MODIFIERS, a small table, change the colours that follow them in the same clause (up to a comma, a
  period or "with"): pastel, neon, muted, dark, deep, light, pale, soft, bright/vivid/vibrant, fiery,
  monochrome... A modifier with no colour after it stands for its own set (`MODIFIER_SETS`: "neon" alone is
  neon pink, green, blue, yellow on black; "earth tones" are umber, terracotta, ochre, olive, sand).

Word palettes are sorted dark → light (the order the palette colour mode's gradient runs through).
Distances are ΔE_OK: the Euclidean OKLab distance (Björn Ottosson's OKLab, as CSS Color 4's deltaEOK) × 100,
which is close to CIELAB ΔE units; `palette_match` counts pixels within MATCH_DELTA_E of a palette colour.
This module owns colour; it never trains or renders (torch is imported only by the tensor functions).
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

PALETTE_VERSION = 1  # bump when the word table or the term changes what a word palette trains to
MATCH_DELTA_E = 12.0  # ΔE_OK (× 100) within which a pixel counts as a palette colour (docs/ART.md)
MATCH_SAMPLES = 4096  # pixels sampled per frame for palette_match (a fixed grid: deterministic)
MAX_COLOURS = 8  # a palette keeps at most this many colours (the first ones, or the word palette's spread)
TONE_STEPS = (-0.2, 0.0, 0.14)  # a plural colour word ("blues"): its OKLab lightness moved by these
SAME_COLOUR = 4.0  # ΔE_OK below which two palette colours are one

#: modifier → (lightness: ("set", L) or ("scale", f) or ("lift", f toward white), chroma factor, chroma floor)
MODIFIERS: dict[str, tuple[tuple[str, float], float, float]] = {
    "pastel": (("set", 0.88), 0.45, 0.0),
    "neon": (("set", 0.82), 1.6, 0.2),
    "muted": (("scale", 0.95), 0.45, 0.0),
    "dark": (("scale", 0.62), 1.0, 0.0),
    "deep": (("scale", 0.7), 1.15, 0.0),
    "light": (("lift", 0.45), 0.75, 0.0),
    "pale": (("lift", 0.6), 0.45, 0.0),
    "soft": (("lift", 0.2), 0.7, 0.0),
    "bright": (("lift", 0.1), 1.3, 0.0),
    "vivid": (("lift", 0.0), 1.35, 0.0),
    "vibrant": (("lift", 0.0), 1.35, 0.0),
    "fiery": (("scale", 1.0), 1.2, 0.0),
    "monochrome": (("scale", 1.0), 0.0, 0.0),
    "earthy": (("scale", 0.95), 0.6, 0.0),
    "cool": (("scale", 1.0), 1.0, 0.0),
    "warm": (("scale", 1.0), 1.0, 0.0),
}
#: what a modifier stands for when no colour follows it (XKCD names)
MODIFIER_SETS: dict[str, tuple[str, ...]] = {
    "pastel": ("pastel pink", "peach", "butter", "mint", "baby blue", "lavender"),
    "neon": ("black", "neon purple", "neon pink", "neon blue", "neon green", "neon yellow"),
    "muted": ("slate", "dusty rose", "sage", "putty", "dusty blue"),
    "fiery": ("blood red", "red", "orangered", "orange", "amber"),
    "monochrome": ("black", "charcoal", "grey", "light grey", "white"),
    "earthy": ("burnt umber", "terracotta", "ochre", "olive", "sand"),
    "cool": ("navy", "cobalt", "teal", "lavender", "purple"),
    "warm": ("maroon", "brick red", "orange", "amber", "cream"),
    "dark": ("black", "navy", "aubergine", "forest green", "maroon"),
    "light": ("white", "pale blue", "pale pink", "cream", "light grey"),
    "rainbow": ("red", "orange", "yellow", "green", "blue", "violet"),
}
#: phrases read as one modifier
PHRASES = {"earth tones": "earthy", "earth tone": "earthy", "earth colors": "earthy", "earth colours": "earthy",
           "black and white": "monochrome", "grayscale": "monochrome", "greyscale": "monochrome",
           "fire": "fiery", "flames": "fiery", "rainbow": "rainbow", "pastels": "pastel"}
#: single XKCD names that mostly mean something else in a prompt (read as modifiers or ignored)
NOT_COLOURS = frozenset({"dark", "pale", "earth", "bland", "drab", "barney", "royal", "light", "deep", "neon",
                         "pastel", "cool", "warm", "soft", "bright", "vivid", "muted"})
CLAUSE_ENDS = frozenset({",", ".", ";", ":", "with", "without", "on", "over", "against", "but"})


@dataclass(frozen=True)
class Palette:
    """sRGB colours ("#rrggbb") with weights summing to 1, and where they came from."""

    colors: tuple[str, ...]
    weights: tuple[float, ...]
    source: str  # "colors", "words: <text>" or "prompts"

    def __post_init__(self) -> None:
        if not self.colors:
            raise ValueError("a palette needs at least one colour")
        if len(self.weights) != len(self.colors):
            raise ValueError("a palette needs one weight per colour")

    def srgb(self) -> np.ndarray:
        """[K, 3] float64 in [0, 1]."""
        return np.array([hex_to_rgb(c) for c in self.colors], dtype=np.float64)

    def oklab(self) -> np.ndarray:
        """[K, 3] float64 OKLab."""
        return srgb_to_oklab_np(self.srgb())

    def describe(self) -> dict[str, object]:
        return {"colors": list(self.colors), "weights": list(self.weights), "source": self.source}


# ── colour spaces ────────────────────────────────────────────────────────────────────────────────────────

_M1 = np.array([[0.4122214708, 0.5363325363, 0.0514459929],
                [0.2119034982, 0.6806995451, 0.1073969566],
                [0.0883024619, 0.2817188376, 0.6299787005]])
_M2 = np.array([[0.2104542553, 0.7936177850, -0.0040720468],
                [1.9779984951, -2.4285922050, 0.4505937099],
                [0.0259040371, 0.7827717662, -0.8086757660]])
_M2_INV = np.linalg.inv(_M2)
_M1_INV = np.linalg.inv(_M1)


def srgb_to_oklab_np(rgb: np.ndarray) -> np.ndarray:
    """sRGB [..., 3] in [0, 1] → OKLab [..., 3] (exact cube root; numpy float64)."""
    rgb = np.asarray(rgb, dtype=np.float64)
    linear = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    lab: np.ndarray = np.cbrt(linear @ _M1.T) @ _M2.T
    return lab


def oklab_to_srgb_np(lab: np.ndarray) -> np.ndarray:
    """OKLab [..., 3] → sRGB [..., 3], unclipped (out of gamut shows as values outside [0, 1])."""
    linear = (np.asarray(lab, dtype=np.float64) @ _M2_INV.T) ** 3 @ _M1_INV.T
    rgb: np.ndarray = np.where(linear <= 0.0031308, 12.92 * linear, 1.055 * np.abs(linear) ** (1 / 2.4) * np.sign(linear) - 0.055)
    return rgb


def srgb_to_oklab(rgb: torch.Tensor, *, floor: float = 1e-6) -> torch.Tensor:
    """sRGB [..., 3] in [0, 1] → OKLab [..., 3], differentiable (the cube root's input is floored at `floor`,
    so its gradient stays finite at black; use floor=0 for exact values)."""
    import torch

    m1 = torch.tensor(_M1.T, dtype=rgb.dtype, device=rgb.device)
    m2 = torch.tensor(_M2.T, dtype=rgb.dtype, device=rgb.device)
    linear = torch.where(rgb <= 0.04045, rgb / 12.92, ((rgb.clamp(min=0.0) + 0.055) / 1.055) ** 2.4)
    lms = (linear @ m1).clamp(min=floor)
    return lms.pow(1.0 / 3.0) @ m2


def delta_e(lab_a: np.ndarray, lab_b: np.ndarray) -> np.ndarray:
    """ΔE_OK × 100 between OKLab colours (broadcasting)."""
    distance: np.ndarray = np.linalg.norm(np.asarray(lab_a) - np.asarray(lab_b), axis=-1) * 100.0
    return distance


def lch(lab: np.ndarray) -> tuple[float, float, float]:
    """(L, chroma, hue in degrees 0..360) of one OKLab colour."""
    return float(lab[0]), float(math.hypot(lab[1], lab[2])), math.degrees(math.atan2(lab[2], lab[1])) % 360.0


def from_lch(lightness: float, chroma: float, hue_deg: float) -> np.ndarray:
    """The sRGB colour of OKLCh (L, C, h), chroma reduced until it is inside the sRGB gamut."""
    h = math.radians(hue_deg)
    lo, hi = 0.0, max(chroma, 0.0)
    lightness = min(max(lightness, 0.0), 1.0)

    def rgb(c: float) -> np.ndarray:
        return oklab_to_srgb_np(np.array([lightness, c * math.cos(h), c * math.sin(h)]))

    def inside(c: float) -> bool:
        return bool(np.all((rgb(c) >= -1e-4) & (rgb(c) <= 1 + 1e-4)))

    if not inside(hi):
        for _ in range(24):  # bisect the largest chroma in gamut
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if inside(mid) else (lo, mid)
        hi = lo
    clipped: np.ndarray = np.clip(rgb(hi), 0.0, 1.0)
    return clipped


def hex_to_rgb(text: str) -> tuple[float, float, float]:
    value = text.lstrip("#")
    return int(value[0:2], 16) / 255, int(value[2:4], 16) / 255, int(value[4:6], 16) / 255


def rgb_to_hex(rgb: Iterable[float]) -> str:
    return "#" + "".join(f"{round(min(max(v, 0.0), 1.0) * 255):02x}" for v in rgb)


# ── names and words ──────────────────────────────────────────────────────────────────────────────────────

@cache
def colour_names() -> dict[str, str]:
    """Lower-case name → "#rrggbb": the XKCD names, then CSS4 names they lack (matplotlib's tables)."""
    from matplotlib.colors import CSS4_COLORS, XKCD_COLORS

    names = {k.removeprefix("xkcd:").replace("/", " "): str(v).lower() for k, v in XKCD_COLORS.items()}
    for k, v in CSS4_COLORS.items():
        names.setdefault(k.lower(), str(v).lower())
    names["grey"], names["gray"] = names["grey"], names["grey"]
    return names


def parse_colour(text: str) -> str:
    """"#rgb", "#rrggbb" or a colour name → "#rrggbb"; ValueError naming the nearest names otherwise."""
    value = text.strip().lower()
    if re.fullmatch(r"#[0-9a-f]{6}", value):
        return value
    if re.fullmatch(r"#[0-9a-f]{3}", value):
        return "#" + "".join(c * 2 for c in value[1:])
    names = colour_names()
    key = value.removeprefix("xkcd:").replace("_", " ").replace("-", " ")
    if key in names:
        return names[key]
    close = difflib.get_close_matches(key, list(names), n=3, cutoff=0.6)
    raise ValueError(f"{text!r} is not a colour: write #rrggbb or a colour name"
                     + (f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""))


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z]+|[,.;:]", text.lower().replace("colour", "color"))


def _singulars(word: str) -> list[str]:
    """What a plural colour word may be the plural of ("blues" → blue, "peaches" → peach)."""
    return [word[: -len(suffix)] for suffix in ("s", "es") if word.endswith(suffix) and len(word) > len(suffix) + 2]


def _match_name(words: Sequence[str], i: int) -> tuple[str, int, bool] | None:
    """The longest colour name starting at words[i]: (hex, words used, plural)."""
    names = colour_names()
    for n in range(min(4, len(words) - i), 0, -1):
        phrase = words[i:i + n]
        if any(w in CLAUSE_ENDS for w in phrase):
            continue
        text = " ".join(phrase)
        if n == 1 and text in NOT_COLOURS:
            return None
        if text in names:
            return names[text], n, False
        for single in _singulars(phrase[-1]):
            text = " ".join([*phrase[:-1], single])
            if text in names and not (n == 1 and text in NOT_COLOURS):
                return names[text], n, True
    return None


def _modifier_at(words: Sequence[str], i: int) -> tuple[str, int] | None:
    for n in (3, 2, 1):
        text = " ".join(words[i:i + n])
        if text in PHRASES:
            return PHRASES[text], n
    if words[i] in MODIFIERS or words[i] in MODIFIER_SETS:
        return words[i], 1
    return None


def _apply(modifier: str, lab: np.ndarray) -> np.ndarray:
    if modifier not in MODIFIERS:
        return lab
    (how, amount), chroma_factor, chroma_floor = MODIFIERS[modifier]
    lightness, chroma, hue = lch(lab)
    if how == "set":
        lightness = amount
    elif how == "scale":
        lightness *= amount
    else:
        lightness += (1.0 - lightness) * amount
    chroma = max(chroma * chroma_factor, chroma_floor if chroma > 0.02 else 0.0)
    return srgb_to_oklab_np(from_lch(lightness, chroma, hue))


def _tones(lab: np.ndarray) -> list[np.ndarray]:
    lightness, chroma, hue = lch(lab)
    return [srgb_to_oklab_np(from_lch(min(max(lightness + d, 0.12), 0.97), chroma, hue)) for d in TONE_STEPS]


def words_palette(text: str) -> list[np.ndarray]:
    """The OKLab colours the words of `text` name, modifiers applied (see the module docstring)."""
    words = _words(text)
    found: list[np.ndarray] = []
    clause: list[str] = []  # modifiers in force in this clause
    clause_colours = 0
    i = 0

    def close_clause() -> None:
        """A clause that named no colour stands for its last modifier's set ("muted earth tones": the earth
        set), the other modifiers applied to it."""
        nonlocal clause_colours
        heads = [m for m in clause if m in MODIFIER_SETS]
        if clause_colours == 0 and heads:
            labs = [srgb_to_oklab_np(np.array(hex_to_rgb(colour_names()[n]))) for n in MODIFIER_SETS[heads[-1]]]
            for other in (m for m in clause if m != heads[-1]):
                labs = [_apply(other, lab) for lab in labs]
            found.extend(labs)
        clause.clear()
        clause_colours = 0

    while i < len(words):
        if words[i] in CLAUSE_ENDS:
            close_clause()
            i += 1
            continue
        name = _match_name(words, i)
        if name is not None:
            colour, used, plural = name
            labs = [srgb_to_oklab_np(np.array(hex_to_rgb(colour)))]
            if plural:
                labs = _tones(labs[0])
            for modifier in clause:
                labs = [_apply(modifier, lab) for lab in labs]
            found += labs
            clause_colours += len(labs)
            i += used
            continue
        found_modifier = _modifier_at(words, i)
        if found_modifier is not None:
            clause.append(found_modifier[0])
            i += found_modifier[1]
            continue
        i += 1
    close_clause()
    return found


def _distinct(labs: Sequence[np.ndarray]) -> list[np.ndarray]:
    kept: list[np.ndarray] = []
    for lab in labs:
        if all(float(delta_e(lab, k)) >= SAME_COLOUR for k in kept):
            kept.append(lab)
    if len(kept) > MAX_COLOURS:  # keep the spread: evenly by lightness
        kept.sort(key=lambda c: float(c[0]))
        kept = [kept[round(j * (len(kept) - 1) / (MAX_COLOURS - 1))] for j in range(MAX_COLOURS)]
    return kept


def palette_from_words(text: str, *, source: str) -> Palette | None:
    """A palette of the colour words in `text`, dark → light, equal weights; None when it names no colour."""
    labs = sorted(_distinct(words_palette(text)), key=lambda c: float(c[0]))
    if not labs:
        return None
    colours = tuple(rgb_to_hex(np.clip(oklab_to_srgb_np(lab), 0, 1)) for lab in labs)
    return Palette(colors=colours, weights=tuple(1.0 / len(colours) for _ in colours), source=source)


def explicit_palette(colors: Sequence[str], weights: Sequence[float] = ()) -> Palette:
    """A palette of given colours (names or hex, in order), weights normalised (equal when none)."""
    hexes = tuple(parse_colour(c) for c in colors)
    w = list(weights) or [1.0] * len(hexes)
    total = float(sum(w))
    return Palette(colors=hexes, weights=tuple(float(v) / total for v in w), source="colors")


# ── in training and in reports ───────────────────────────────────────────────────────────────────────────

COVER_SHARE = 0.25  # the palette term wants each colour on at least this share of its weight's pixels
COVER_TEMPERATURE = 0.05  # softness (OKLab units) of the pixel → colour assignment the coverage counts


def palette_loss(frames: torch.Tensor, palette: Palette, *, temperature: float = 0.02) -> torch.Tensor:
    """The palette term of frames [B, 3, H, W] in [0, 1], differentiable, in OKLab:

    the soft-min distance of every pixel to the palette (pulls colours onto it), plus, for each colour, how
    far its soft share of the pixels falls short of COVER_SHARE of its weight (so the picture uses the
    palette rather than collapsing onto one colour of it; a stronger demand slows the pull onto the palette).
    """
    import torch

    lab = srgb_to_oklab(frames.permute(0, 2, 3, 1).reshape(-1, 3).float())
    target = torch.tensor(palette.oklab(), dtype=lab.dtype, device=lab.device)
    weights = torch.tensor(palette.weights, dtype=lab.dtype, device=lab.device)
    distance = ((lab[:, None, :] - target[None]) ** 2).sum(dim=-1).add(1e-8).sqrt()  # [N, K] (cdist's backward
    # is 100x slower here)
    near = -temperature * torch.logsumexp(-distance / temperature, dim=1)
    share = torch.softmax(-distance / COVER_TEMPERATURE, dim=1).mean(dim=0)
    return near.mean() + torch.relu(COVER_SHARE * weights - share).sum()


def sample_pixels(frames: torch.Tensor, samples: int = MATCH_SAMPLES) -> torch.Tensor:
    """uint8 or float frames [B, H, W, 3] → float sRGB [B·n, 3] on a fixed grid of ≤ `samples` pixels a frame."""
    _, h, w, _ = frames.shape
    step = max(1, math.ceil(math.sqrt(h * w / samples)))
    picked = frames[:, step // 2::step, step // 2::step].reshape(-1, 3).float()
    return picked / 255.0 if not frames.is_floating_point() else picked


def palette_match(frames: torch.Tensor, palette: Palette, *, delta_e: float = MATCH_DELTA_E) -> float:
    """Share of sampled pixels of frames [B, H, W, 3] (uint8, or floats in [0, 1]) within `delta_e` (ΔE_OK
    × 100) of some palette colour, in [0, 1]."""
    import torch

    rgb = sample_pixels(frames).cpu().double()
    lab = srgb_to_oklab(rgb, floor=0.0)
    target = torch.tensor(palette.oklab(), dtype=lab.dtype)
    nearest = torch.cdist(lab, target).min(dim=1).values * 100.0
    return float((nearest <= delta_e).double().mean()) if nearest.numel() else 0.0


class PaletteMatch:
    """Feed every frame batch of a render in order; `result()` is palette_match over up to `max_frames`
    frames spread evenly (None without a palette)."""

    def __init__(self, palette: Palette | None, n_frames: int, *, max_frames: int = 120) -> None:
        self.palette = palette
        self.stride = max(1, math.ceil(n_frames / max_frames))
        self.index = 0
        self.matched = 0.0
        self.frames = 0

    def update(self, frames: torch.Tensor) -> None:
        if self.palette is not None:
            pick = [i for i in range(frames.shape[0]) if (self.index + i) % self.stride == 0]
            if pick:
                self.matched += palette_match(frames[pick], self.palette) * len(pick)
                self.frames += len(pick)
        self.index += frames.shape[0]

    def result(self) -> float | None:
        if self.palette is None or self.frames == 0:
            return None
        return round(self.matched / self.frames, 5)
