"""A style is a folder that describes itself: rebuilt from `style.json` and `weights.safetensors` alone.

`style.json` holds the network config, the input encoder's config, the feature description (sets, column
names, normalisation) and, for trained styles, the guidance model and the resolved spec. Weights are
safetensors, never pickle. Saving writes a sibling scratch folder and renames it into place.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from daemon.audio.features import DEFAULT_EMBEDDING_DIMS, NORMALISATION, columns_for
from daemon.cppn import CPPN, Gradient, InputEncoder
from daemon.cppn_config import CPPNConfig, EncoderConfig
from daemon.errors import StyleError
from daemon.library import STYLE_FILE
from daemon.spec import RenderSpec
from daemon.atomic import atomic_replace_dir
from daemon.palette import Palette, palette_from_words

STYLE_SCHEMA = "afx.style/1"
WEIGHTS_FILE = "weights.safetensors"


@dataclass(frozen=True)
class FeatureDescription:
    """Which audio features a style reads, in which order, normalised how."""

    sets: tuple[str, ...] = ("fft",)
    columns: tuple[str, ...] = ()
    normalisation: str = NORMALISATION
    reduction: dict[str, Any] | None = None  # embedding set → daemon.audio.embeddings.Reduction, fitted at
    # training time; its arrays live in reduction.safetensors beside style.json

    @classmethod
    def for_sets(cls, sets: tuple[str, ...], *, embedding_dims: int = DEFAULT_EMBEDDING_DIMS,
                 reduction: dict[str, Any] | None = None) -> FeatureDescription:
        return cls(sets=tuple(sets), columns=columns_for(sets, embedding_dims=embedding_dims),
                   reduction=reduction or None)


@dataclass
class Style:
    """A CPPN with everything needed to feed it exactly as it was trained."""

    name: str
    style_id: str
    network: CPPNConfig
    encoder: EncoderConfig
    features: FeatureDescription
    model: CPPN
    trained: bool = False
    guidance: dict[str, Any] = field(default_factory=dict)  # clip_model, pretrained, trained_guidance
    spec: dict[str, Any] | None = None
    created: str = ""
    training: dict[str, Any] = field(default_factory=dict)  # summary: final similarity, seconds, steps
    folder: Path | None = None
    palette: Palette | None = None  # what palette_match measures and, in the palette colour mode, the
    # gradient the network's output is looked up in (None: no palette)

    @property
    def input_encoder(self) -> InputEncoder:
        return InputEncoder(self.encoder, len(self.features.columns))

    def render_settings(self) -> dict[str, int]:
        """The size and fps the style renders at by default: its spec's [render] table (or the spec defaults)."""
        own = dict((self.spec or {}).get("render") or {})
        return {k: int(own.get(k, v)) for k, v in RenderSpec().settings().items()}

    def save(self, folder: Path, *, extras: Callable[[Path], None] | None = None) -> Path:
        """Write the style to `folder` atomically (scratch sibling, then rename); returns the folder.

        `extras(scratch)` may add files (previews, history) that must appear together with the weights.
        """
        folder = Path(folder)
        with atomic_replace_dir(folder) as scratch:
            self.write_into(scratch)
            if extras is not None:
                extras(scratch)
        self.folder = folder
        return folder

    def write_into(self, folder: Path) -> None:
        """Write style.json and the weights into an existing folder (no atomicity)."""
        features = asdict(replace(self.features, reduction=None))
        if self.features.reduction:
            from daemon.audio.embeddings import REDUCTION_FILE, reduction_files
            from safetensors.numpy import save_file as save_arrays

            features["reduction"], arrays = reduction_files(self.features.reduction)
            save_arrays(arrays, str(folder / REDUCTION_FILE), metadata={"style_id": self.style_id})
        meta = {
            "schema": STYLE_SCHEMA, "name": self.name, "id": self.style_id, "trained": self.trained,
            "network": asdict(self.network), "encoder": asdict(self.encoder), "features": features,
            "guidance": self.guidance, "spec": self.spec, "created": self.created, "training": self.training,
            **({"palette": self.palette.describe()} if self.palette is not None else {}),
        }
        (folder / STYLE_FILE).write_text(json.dumps(meta, indent=2) + "\n")
        state = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in self.model.state_dict().items()}
        save_file(state, str(folder / WEIGHTS_FILE), metadata={"style_id": self.style_id})

    @classmethod
    def load(cls, folder: Path) -> Style:
        """Rebuild a style from its folder alone."""
        folder = Path(folder)
        meta_path, weights_path = folder / STYLE_FILE, folder / WEIGHTS_FILE
        if not meta_path.is_file() or not weights_path.is_file():
            raise StyleError("not a style folder (needs style.json and weights.safetensors)", path=folder,
                             hint="train it with `afx train`, or give a library style name or random:SEED")
        try:
            meta = json.loads(meta_path.read_text())
            if meta.get("schema") != STYLE_SCHEMA:
                raise StyleError(f"unsupported style schema {meta.get('schema')!r}", path=meta_path,
                                 hint=f"this afx reads {STYLE_SCHEMA}; retrain the style")
            net = meta["network"]
            network = CPPNConfig(**{**net, "activations": tuple(net["activations"])})
            encoder = EncoderConfig(**{"channels": False, **meta["encoder"]})  # saved before the channels:
            # its network has no inputs for them
            feats = meta["features"]
            features = FeatureDescription(sets=tuple(feats["sets"]), columns=tuple(feats["columns"]),
                                          normalisation=feats["normalisation"],
                                          reduction=_load_reduction(folder, feats.get("reduction")))
            palette = _palette(meta.get("palette")) or _prompt_palette(meta.get("spec"))
            model = build_model(network, InputEncoder(encoder, len(features.columns)), gradient=gradient_of(palette))
        except (KeyError, TypeError, ValueError) as e:
            raise StyleError(f"style.json is damaged ({e})", path=meta_path, hint="retrain the style") from e
        try:
            model.load_state_dict(load_file(str(weights_path)))
        except Exception as e:  # safetensors raises its own SafetensorError for damaged files
            raise StyleError(f"weights do not match style.json ({str(e).splitlines()[0]})", path=weights_path,
                             hint="retrain the style") from e
        model.eval()
        return cls(name=meta["name"], style_id=meta["id"], network=network, encoder=encoder, features=features,
                   model=model, trained=bool(meta.get("trained")), guidance=meta.get("guidance") or {},
                   spec=meta.get("spec"), created=meta.get("created", ""), training=meta.get("training") or {},
                   folder=folder, palette=palette)


#: settings added after random styles were first named: left out of their digest while at their defaults
_LATER_SETTINGS = ("color_mode", "fold", "mirror")


def _digested(config: CPPNConfig | EncoderConfig, default: CPPNConfig | EncoderConfig) -> dict[str, Any]:
    """`config` as the random style's digest reads it: a setting added later enters only when it is set."""
    own, base = asdict(config), asdict(default)
    return {k: v for k, v in own.items() if not (k in _LATER_SETTINGS and v == base[k])}


def _palette(meta: dict[str, Any] | None) -> Palette | None:
    """The palette style.json describes (styles saved before palettes have none)."""
    if not meta:
        return None
    return Palette(colors=tuple(str(c) for c in meta["colors"]), weights=tuple(float(w) for w in meta["weights"]),
                   source=str(meta.get("source", "")))


def _prompt_palette(spec: dict[str, Any] | None) -> Palette | None:
    """For styles saved before palettes: the colour words of their prompts, what palette_match measures."""
    prompts = [p.get("text", "") for p in (spec or {}).get("prompts", []) if isinstance(p, dict)]
    return palette_from_words(", ".join(prompts), source="prompts") if prompts else None


def gradient_of(palette: Palette | None) -> Gradient | None:
    """The palette colour mode's gradient: the palette's colours in order, each band as wide as its weight."""
    if palette is None:
        return None
    edges, at = [], 0.0
    for weight in palette.weights[:-1]:
        at += weight
        edges.append(at)
    colors = tuple((float(r), float(g), float(b)) for r, g, b in palette.srgb())
    return Gradient(colors=colors, edges=tuple(edges))


def _load_reduction(folder: Path, meta: dict[str, Any] | None) -> dict[str, Any] | None:
    """The embedding reductions described in style.json, with their arrays from reduction.safetensors."""
    if not meta:
        return None
    from daemon.audio.embeddings import REDUCTION_FILE, reductions_from_files
    from safetensors.numpy import load_file as load_arrays

    path = folder / REDUCTION_FILE
    if not path.is_file():
        raise StyleError(f"{REDUCTION_FILE} is missing (style.json names embedding reductions)", path=folder,
                         hint="retrain the style")
    try:
        return reductions_from_files(meta, load_arrays(str(path)))
    except Exception as e:  # safetensors' own error type, KeyError for a missing array, a digest mismatch
        raise StyleError(f"{REDUCTION_FILE} is damaged ({str(e).splitlines()[0] if str(e) else e!r})", path=path,
                         hint="retrain the style") from e


def build_model(network: CPPNConfig, encoder: InputEncoder, *, seed: int | None = None,
                gradient: Gradient | None = None) -> CPPN:
    """A CPPN sized for `encoder`; initialised from `seed` when given; `gradient` for the palette colour mode."""
    if network.color_mode == "palette" and gradient is None:
        raise StyleError("network.color_mode = \"palette\" needs a palette", key="network.color_mode",
                         hint="give [palette] colors, or colour words in the prompts, or another color_mode")
    model = CPPN(network, n_spatial=encoder.n_spatial, n_temporal=encoder.n_temporal, gradient=gradient)
    if seed is not None:
        model.reset_parameters(torch.Generator().manual_seed(seed))
        if gradient is not None:
            centre_gradient_position(model, encoder)
    return model


GRADIENT_SPREAD = 1.6  # std of the palette mode's first logit over the probe frame after centring: its sigmoid
# then spreads over the whole gradient (about uniform on 0.1..0.9), so every colour gets its share


def centre_gradient_position(model: CPPN, encoder: InputEncoder) -> None:
    """Palette colour mode at initialisation: shift and scale the first output so that, over a probe frame
    (64×36, zero audio), its mean is 0 and its spread GRADIENT_SPREAD. Untouched, an offset of the hidden
    activations puts most pixels at one end of the gradient: one colour with the others as thin outlines."""
    with torch.no_grad():
        temporal = torch.zeros(1, encoder.n_temporal)
        temporal[:, 0] = -encoder.config.time_scale  # t at the start of a track
        logits = model.rgb.weight[0] @ _hidden(model, encoder.spatial(64, 36), temporal).T
        scale = GRADIENT_SPREAD / max(float(logits.std()), 1e-6)
        model.rgb.weight[0].mul_(scale)
        model.rgb.bias[0] = -float(logits.mean()) * scale


def _hidden(model: CPPN, spatial: torch.Tensor, temporal: torch.Tensor) -> torch.Tensor:
    """The last hidden layer's activations [P, width] for one frame."""
    h = model._acts[0](model.spatial_pre(spatial) + model.temporal_pre(temporal))
    for i, layer in enumerate(model.hidden_layers, start=1):
        h = model._acts[i](layer(h))
    return h


def random_style(seed: int, *, network: CPPNConfig = CPPNConfig(), encoder: EncoderConfig = EncoderConfig(),
                 sets: tuple[str, ...] = ("fft",), palette: Palette | None = None, name: str | None = None) -> Style:
    """An untrained style with seeded random weights (`random:SEED`)."""
    features = FeatureDescription.for_sets(sets)
    model = build_model(network, InputEncoder(encoder, len(features.columns)), seed=seed,
                        gradient=gradient_of(palette))
    material = [seed, _digested(network, CPPNConfig()), _digested(encoder, EncoderConfig()), asdict(features)]
    if palette is not None:  # without one, the digest of the random styles made before palettes
        material.append(palette.describe())
    digest = hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()[:12]
    return Style(name=name or f"random-{seed}", style_id=f"random-{seed}-{digest}", network=network,
                 encoder=encoder, features=features, model=model.eval(), trained=False, palette=palette)
