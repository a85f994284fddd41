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
from daemon.cppn import CPPN, InputEncoder
from daemon.cppn_config import CPPNConfig, EncoderConfig
from daemon.errors import StyleError
from daemon.library import STYLE_FILE
from daemon.spec import RenderSpec
from daemon.atomic import atomic_replace_dir

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
        except (KeyError, TypeError, ValueError) as e:
            raise StyleError(f"style.json is damaged ({e})", path=meta_path, hint="retrain the style") from e
        model = build_model(network, InputEncoder(encoder, len(features.columns)))
        try:
            model.load_state_dict(load_file(str(weights_path)))
        except Exception as e:  # safetensors raises its own SafetensorError for damaged files
            raise StyleError(f"weights do not match style.json ({str(e).splitlines()[0]})", path=weights_path,
                             hint="retrain the style") from e
        model.eval()
        return cls(name=meta["name"], style_id=meta["id"], network=network, encoder=encoder, features=features,
                   model=model, trained=bool(meta.get("trained")), guidance=meta.get("guidance") or {},
                   spec=meta.get("spec"), created=meta.get("created", ""), training=meta.get("training") or {},
                   folder=folder)


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


def build_model(network: CPPNConfig, encoder: InputEncoder, *, seed: int | None = None) -> CPPN:
    """A CPPN sized for `encoder`; initialised from `seed` when given."""
    model = CPPN(network, n_spatial=encoder.n_spatial, n_temporal=encoder.n_temporal)
    if seed is not None:
        model.reset_parameters(torch.Generator().manual_seed(seed))
    return model


def random_style(seed: int, *, network: CPPNConfig = CPPNConfig(), encoder: EncoderConfig = EncoderConfig(),
                 sets: tuple[str, ...] = ("fft",)) -> Style:
    """An untrained style with seeded random weights (`random:SEED`)."""
    features = FeatureDescription.for_sets(sets)
    model = build_model(network, InputEncoder(encoder, len(features.columns)), seed=seed)
    material = json.dumps([seed, asdict(network), asdict(encoder), asdict(features)], sort_keys=True)
    digest = hashlib.sha256(material.encode()).hexdigest()[:12]
    return Style(name=f"random-{seed}", style_id=f"random-{seed}-{digest}", network=network, encoder=encoder,
                 features=features, model=model.eval(), trained=False)
