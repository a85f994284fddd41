"""On-disk cache of feature timelines, keyed by the audio's content hash and every setting that changes them.

Entries are written to a temporary file and renamed into place, so a killed process never leaves a
half-written entry that a later read would trust. A damaged entry is treated as a miss.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from daemon.audio.features import FeatureTimeline, feature_set


def cache_key(sha256: str, *, sets: Sequence[str], fps: float, sample_rate: int) -> str:
    """Hash of the track's content hash, the sets (with their versions), fps and analysis rate."""
    material = {
        "track": sha256,
        "sets": [[s, feature_set(s).version] for s in sets],
        "fps": float(fps),
        "sample_rate": int(sample_rate),
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()[:32]


class FeatureCache:
    """A folder of `<key>.npz` files; `None` as root disables caching."""

    def __init__(self, root: Path | None) -> None:
        self.root = Path(root) if root is not None else None

    def get_or_compute(self, key: str, compute: Callable[[], FeatureTimeline]) -> tuple[FeatureTimeline, bool]:
        """The cached timeline for `key`, else `compute()` stored under it; also whether it was a hit."""
        hit = self.load(key)
        if hit is not None:
            return hit, True
        timeline = compute()
        self.store(key, timeline)
        return timeline, False

    def load(self, key: str) -> FeatureTimeline | None:
        if self.root is None:
            return None
        path = self.root / f"{key}.npz"
        if not path.exists():
            return None
        try:
            with np.load(path, allow_pickle=False) as data:
                meta = json.loads(str(data["meta"]))
                return FeatureTimeline(
                    sets=tuple(meta["sets"]), names=tuple(meta["names"]), values=data["values"].copy(),
                    fps=float(meta["fps"]), onset=data["onset"].copy(), normalisation=meta["normalisation"],
                )
        except (OSError, ValueError, KeyError):
            return None

    def store(self, key: str, timeline: FeatureTimeline) -> None:
        if self.root is None:
            return
        self.root.mkdir(parents=True, exist_ok=True)
        meta = json.dumps({"sets": timeline.sets, "names": timeline.names, "fps": timeline.fps,
                           "normalisation": timeline.normalisation})
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".tmp-", suffix=".npz")
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, values=timeline.values, onset=timeline.onset, meta=np.array(meta))
            os.replace(tmp, self.root / f"{key}.npz")
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
