"""Audio stages: decode any ffmpeg-readable file, compute per-video-frame feature timelines, cache them.

The feature-set registry is `features.py`'s; the learned embeddings (openl3, yamnet, vggish) register
themselves from `embeddings.py`, imported here so that every user of the package sees every set (and so
that `features.py` never imports `embeddings.py`, which builds on it).
"""

from daemon.audio import embeddings as _embeddings  # noqa: F401 — registers the embedding sets
