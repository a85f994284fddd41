"""Rules with one home (issue 12): each is defined once, and every caller reaches the same definition."""

from __future__ import annotations

import ast
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from daemon.config import Embeddings, Limits, ServiceConfig
from daemon.errors import AudioError, RenderError, SpecError
from daemon.spec import parse_spec

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("width, height, fps", [(64, 36, 10), (65, 36, 10), (14, 36, 10), (7682, 36, 10),
                                                (64, 36, 0), (64, 36, 241), (7680, 4320, 240)])
def test_a_spec_and_a_render_accept_the_same_sizes(width: int, height: int, fps: int) -> None:
    from daemon.render import RenderSettings

    table = {"prompts": ["x"], "render": {"width": width, "height": height, "fps": fps}}
    try:
        parse_spec(table, path=None, name="x", limits=replace(Limits(), max_render_pixels=2**40))
        spec_ok = True
    except SpecError:
        spec_ok = False
    try:
        RenderSettings(width=width, height=height, fps=fps).validate()
        render_ok = True
    except RenderError:
        render_ok = False
    assert spec_ok == render_ok


def test_the_embedding_settings_have_their_defaults_in_config_only(monkeypatch: pytest.MonkeyPatch) -> None:
    from daemon.audio import embeddings as emb

    for variable in Embeddings.VARIABLES.values():
        monkeypatch.delenv(variable, raising=False)
    defaults = Embeddings()
    assert emb.hub_handle("yamnet") == defaults.yamnet_handle and emb.backend("vggish").handle == defaults.vggish_handle
    assert emb.backend("openl3").hop_s == defaults.openl3_hop_s and emb.setting("timeout_s") == defaults.timeout_s
    chosen = Embeddings(yamnet_handle="/models/yamnet", openl3_hop_s=0.5)
    for variable, value in chosen.environment().items():
        monkeypatch.setenv(variable, value)
    assert emb.hub_handle("yamnet") == "/models/yamnet" and emb.backend("openl3").hop_s == 0.5


def test_features_and_embeddings_share_one_frame_time_rule() -> None:
    from daemon.audio import embeddings as emb
    from daemon.audio import features

    assert emb.align_to_frames is features.align_to_frames
    rows = features.align_to_frames(np.array([0.0, 2.0]), np.array([0.5, 1.5]), n_frames=5, fps=2)
    np.testing.assert_allclose(rows, [0.0, 0.0, 1.0, 2.0, 2.0])  # frame i at i / fps, held at the ends


def test_features_does_not_import_embeddings() -> None:
    """The import cycle is gone: features.py is the registry, embeddings.py builds on it."""
    tree = ast.parse((ROOT / "daemon" / "audio" / "features.py").read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    assert not any("embeddings" in (name or "") for name in imported)
    assert not [a.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module == "daemon.audio"
                for a in node.names]


def test_the_audio_context_takes_the_configs_limits(tmp_path: Path) -> None:
    from daemon.pipeline import AudioContext, track_features
    from tests.conftest import synth, write_wav

    config = replace(ServiceConfig(base=tmp_path), limits=replace(Limits(), max_duration_s=2.0))
    ctx = AudioContext.for_config(config)
    assert ctx.limits.max_duration_s == 2.0 and ctx.cache.root == tmp_path / "state" / "cache"
    with pytest.raises(AudioError, match="above the maximum of 2 s"):
        track_features(write_wav(tmp_path / "long.wav", synth(3.0)), ("fft",), fps=10, ctx=ctx)
