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
    """One strip per column (up to 40) over time in seconds, plus onset strength."""
    names = list(timeline.names)[:40]
    times = np.arange(timeline.n_frames) / timeline.fps
    rows = len(names) + 1
    fig, axes = plt.subplots(rows, 1, figsize=(12, 0.55 * rows + 1), sharex=True, squeeze=False)
    for ax, name, column in zip(axes[:, 0], names, timeline.values.T):
        ax.plot(times, column, linewidth=0.7)
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
