"""A fresh install, offline: the repository's own specs/, `afx run`, one dropped track → a video per style of
the default set, no failure report, and the seed's CLIP examples named as held out (issue 11, item 4).

Tiny sizes come from afx.toml's [spec_override] (the shipped specs are copied unchanged); nothing is
downloaded (download_models = false, no models cache) and no pretrained weights exist.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from daemon.config import load_config
from daemon.spec import load_specs
from tests.test_service_e2e import ROOT, ServiceUnderTest

pytestmark = pytest.mark.slow

TINY = """
[spec_override.network]
width = 16
depth = 3

[spec_override.training]
iterations = 1
resolution = 32
cutouts = 1
time_points = 2
checkpoint_every = 1

[spec_override.render]
width = 64
height = 36
fps = 10
"""


@pytest.fixture
def fresh(tmp_path: Path) -> Iterator[ServiceUnderTest]:
    svc = ServiceUnderTest(tmp_path)
    svc.configure(workers=2)  # two job processes: on 2 cores, nine tiny trainings are mostly start-up
    shutil.rmtree(tmp_path / "specs")
    shutil.copytree(ROOT / "specs", tmp_path / "specs")
    config = tmp_path / "afx.toml"
    config.write_text("download_models = false\n" + config.read_text() + TINY)
    yield svc
    svc.cleanup()


def test_a_fresh_offline_install_renders_every_default_style_and_holds_out_the_clip_examples(
        fresh: ServiceUnderTest) -> None:
    config = load_config(fresh.root / "afx.toml")
    specs = [s for p in sorted((fresh.root / "specs").rglob("*.toml")) for s in load_specs(p, override=config.spec_override)]
    clip = sorted(s.name for s in specs if s.training.clip_model not in ("none", "afx-tiny"))
    offline = sorted(s.name for s in specs if s.training.clip_model == "none")
    assert len(offline) >= 7, "the shipped mood board: 7-10 weight-free styles"
    assert clip, "the seed's CLIP examples are still shipped"

    fresh.track("dropped.wav", seconds=2.0)
    fresh.start()
    fresh.wait(lambda: fresh.states() == ["done"] * len(offline), timeout=900, what="a video per default style")

    assert fresh.renders() == sorted(f"dropped.wav/{name}.{ext}" for name in offline for ext in ("mp4", "json"))
    held = fresh.events("style.held_out")
    assert sorted(e["style"] for e in held) == clip  # one line per CLIP spec, however many scans ran
    status = fresh.status()
    assert sorted(h["style"] for h in status["held_out"]) == clip
    assert status["totals"]["failed"] == 0 and status["totals"]["bad_input"] == 0 and not status["problems"]
    assert fresh.stop()[0] == 0
