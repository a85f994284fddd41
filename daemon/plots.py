"""PNG figures (matplotlib, Agg backend): feature curves, training curves. Nothing is shown on screen."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from daemon.audio.features import FeatureTimeline  # noqa: E402


def plot_features(timeline: FeatureTimeline, path: Path, *, title: str = "") -> Path:
    """One strip per column (up to 40) over time in seconds, then the pulse/drift/level channels and onset.

    With `timeline.raw`, each strip also shows the raw value (grey, min–max scaled into the strip's own
    range) behind the conditioned one, so the floor, gating and smoothing can be seen.
    """
    names = list(timeline.names)[:40]
    times = np.arange(timeline.n_frames) / timeline.fps
    channels = timeline.channel_values()
    rows = len(names) + 4
    fig, axes = plt.subplots(rows, 1, figsize=(12, 0.6 * rows + 1), sharex=True, squeeze=False)
    for j, (ax, name, column) in enumerate(zip(axes[:, 0], names, timeline.values.T)):
        if timeline.raw is not None:
            raw = timeline.raw[:, j]
            span = float(np.ptp(raw)) or 1.0
            ax.plot(times, (raw - raw.min()) / span * 2 - 1, color="0.7", linewidth=0.6)
        ax.plot(times, column, linewidth=0.8)
        ax.set_ylim(-1.05, 1.05)
        ax.set_ylabel(name, rotation=0, ha="right", fontsize=7)
        ax.set_yticks([])
    for ax, name, column in zip(axes[len(names):len(names) + 3, 0], ("pulse", "drift (s)", "level"), channels.T):
        ax.plot(times, column, color="tab:green", linewidth=0.8)
        ax.set_ylabel(name, rotation=0, ha="right", fontsize=7)
        ax.set_yticks([])
    onset_ax = axes[-1, 0]
    onset_ax.plot(times, timeline.onset, color="tab:red", linewidth=0.7)
    onset_ax.set_ylabel("onset", rotation=0, ha="right", fontsize=7)
    onset_ax.set_xlabel("time (s)")
    fig.suptitle(title or f"features: {', '.join(timeline.sets)}", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def plot_curves(steps: Sequence[int], series: dict[str, Sequence[float]], path: Path, *, title: str,
                ylabel: str) -> Path:
    """Lines over steps, one per named series (e.g. similarity per prompt)."""
    fig, ax = plt.subplots(figsize=(8, 4))
    for label, values in series.items():
        ax.plot(list(steps)[:len(values)], list(values), label=label[:60], linewidth=1.2)
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    if series:
        ax.legend(fontsize=7, loc="best")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
