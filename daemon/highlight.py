"""The most energetic stretch of a track, found from the features a render computes anyway.

A window's score is its mean loudness (the timeline's `level` channel, in [0, 1] relative to the track's
own loud level) plus half its mean onset strength (percussive hits, in [0, 1]): loud *and* busy wins, a
long loud drone loses to a loud passage with hits. `best_window` returns the highest-scoring window of the
asked length and says why in words; demo highlights (`afx render --highlight 30`) and the service's quick
previews use it. Nothing here decodes audio or renders.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from daemon.audio.features import FeatureTimeline

ONSET_WEIGHT = 0.5  # of the mean onset strength, added to the mean level


@dataclass(frozen=True)
class Window:
    """Frames start..stop of a timeline, and what made them the choice."""

    start: int  # first frame
    stop: int  # one past the last frame
    fps: float
    score: float  # mean level + ONSET_WEIGHT × mean onset strength in the window
    level: float  # mean level in the window
    onsets: float  # mean onset strength in the window
    track_level: float  # …over the whole track
    track_onsets: float
    whole_track: bool  # the track is no longer than the window asked for

    @property
    def start_s(self) -> float:
        return self.start / self.fps

    @property
    def duration_s(self) -> float:
        return (self.stop - self.start) / self.fps

    def why(self) -> str:
        if self.whole_track:
            return f"the track is only {self.duration_s:.1f} s long: all of it"
        return (f"the most energetic {self.duration_s:.0f} s: mean level {self.level:.2f} (track "
                f"{self.track_level:.2f}) and onset strength {self.onsets:.2f} (track {self.track_onsets:.2f}); "
                f"score = level + {ONSET_WEIGHT:g} × onsets = {self.score:.3f}, the highest of every "
                f"{self.duration_s:.0f} s window")

    def to_report(self) -> dict[str, Any]:
        """The report's `highlight` section (plain JSON values)."""
        return {"start_s": round(self.start_s, 3), "duration_s": round(self.duration_s, 3),
                "end_s": round(self.stop / self.fps, 3), "start_frame": self.start, "frames": self.stop - self.start,
                "score": round(self.score, 4), "level_mean": round(self.level, 4),
                "onset_mean": round(self.onsets, 4), "track_level_mean": round(self.track_level, 4),
                "track_onset_mean": round(self.track_onsets, 4), "why": self.why()}


def best_window(timeline: FeatureTimeline, *, seconds: float) -> Window:
    """The `seconds`-long window with the highest score (the earliest of equals); the whole track when it
    is not longer than that."""
    if seconds <= 0:
        raise ValueError(f"a window of {seconds} s")
    n = timeline.n_frames
    level = timeline.channel_values()[:, 2].astype(np.float64)
    onset = np.asarray(timeline.onset, dtype=np.float64)[:n]
    length = min(n, max(1, round(seconds * timeline.fps)))
    energy = level + ONSET_WEIGHT * onset
    sums = np.concatenate([[0.0], np.cumsum(energy)])
    scores = (sums[length:] - sums[:-length]) / length
    start = int(np.argmax(scores))
    stop = start + length
    return Window(start=start, stop=stop, fps=timeline.fps, score=float(scores[start]),
                  level=float(level[start:stop].mean()), onsets=float(onset[start:stop].mean()),
                  track_level=float(level.mean()), track_onsets=float(onset.mean()), whole_track=length >= n)
