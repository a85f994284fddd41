"""Audio stages: decode any ffmpeg-readable file, compute per-video-frame feature timelines, cache them."""
