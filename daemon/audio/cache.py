"""On-disk cache of feature timelines, keyed by the audio's content hash and every setting that changes them.

Entries are written to a temporary file and renamed into place, so a killed process never leaves a
half-written entry that a later read would trust. A damaged entry is treated as a miss.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import zipfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from daemon.audio.features import FeatureTimeline, feature_set


def cache_key(sha256: str, *, sets: Sequence[str], fps: float, sample_rate: int,
              extra: Mapping[str, object] | None = None) -> str:
    """Hash of the track's content hash, the sets (with their versions), fps and analysis rate.

    `extra` adds what else the timeline depends on (embedding sets: backend settings, dims, reduction).
    """
    material: dict[str, object] = {
        "track": sha256,
        "sets": [[s, feature_set(s).version] for s in sets],
        "fps": float(fps),
        "sample_rate": int(sample_rate),
    }
    if extra:
        material["extra"] = dict(extra)
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
        """The timeline stored under `key`, or None on a miss or a damaged entry."""
        arrays = self.load_arrays(key)
        if arrays is None:
            return None
        try:
            meta = json.loads(str(arrays["meta"]))
            return FeatureTimeline(
                sets=tuple(meta["sets"]), names=tuple(meta["names"]), values=arrays["values"],
                fps=float(meta["fps"]), onset=arrays["onset"], normalisation=meta["normalisation"],
                channels=arrays.get("channels"),
            )
        except (ValueError, KeyError):
            return None

    def store(self, key: str, timeline: FeatureTimeline) -> None:
        meta = json.dumps({"sets": timeline.sets, "names": timeline.names, "fps": timeline.fps,
                           "normalisation": timeline.normalisation})
        arrays = {"values": timeline.values, "onset": timeline.onset, "meta": np.array(meta)}
        if timeline.channels is not None:
            arrays["channels"] = timeline.channels
        self.store_arrays(key, arrays)

    def load_arrays(self, key: str) -> dict[str, np.ndarray] | None:
        """Named arrays stored under `key` (e.g. raw embeddings), or None on a miss or a damaged entry."""
        if self.root is None:
            return None
        path = self.root / f"{key}.npz"
        if not path.exists():
            return None
        try:
            with np.load(path, allow_pickle=False) as data:
                return {name: data[name].copy() for name in data.files}
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):  # damaged: recompute, never crash
            return None

    def store_arrays(self, key: str, arrays: Mapping[str, np.ndarray]) -> None:
        """Write named arrays under `key` atomically (temporary file, then rename)."""
        if self.root is None:
            return
        self.root.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".tmp-", suffix=".npz")
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, **arrays)  # type: ignore[arg-type]  # (numpy's stub: a key could be allow_pickle)
            os.replace(tmp, self.root / f"{key}.npz")
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
