"""Quality metrics computed while frames stream past, on the device, in bounded memory (docs/ART.md).

Visual change is the mean absolute difference of consecutive grayscale frames downscaled to at most
256 px wide, every frame, in gray levels (0..255).

- temporal SSIM: SSIM between consecutive frames (same copy), for up to `max_pairs` pairs spread evenly;
- motion energy: mean visual change per second, so stillness shows (0 for a still video);
- onset alignment: AV-Align (TempoTokens): peaks of visual change matched to the audio's onset peaks within
  ±1 frame, matches / (audio peaks + visual peaks − matches), in [0, 1]; a still video has no peaks: 0;
- loud/quiet contrast: mean visual change in the loudest 20 % of frames over that in the quietest 20 %;
- onset correlation: Pearson correlation of visual change with onset strength (scale-free: a nearly still
  video can score high, so it is never read alone).
- detail: mean absolute difference of horizontally and vertically neighbouring pixels (summed), on the same
  gray copy, averaged over every frame, in gray levels: 0 for a flat field, high for fine structure. It
  depends on the frame size (the copy is at most 256 px wide), so compare it between videos of one size.
"""

from __future__ import annotations

import math

import librosa
import numpy as np
import torch
from scipy.signal import find_peaks
import torch.nn.functional as F

SSIM_WIDTH = 256
VIDEO_PEAK_MIN = 2.0  # gray levels: a visual-change peak lower or less prominent than this is no event
# (a whole-frame flicker of one level is invisible)
VIDEO_PEAK_SHARE = 0.15  # ... nor one less prominent than this share of the 95th percentile of change
CONTRAST_SHARE = 0.2  # loud/quiet contrast compares the loudest and the quietest 20 % of frames
CONTRAST_FLOOR = 0.05  # gray levels per frame added to both sides: a still video scores 1, not 0/0
_C1, _C2 = 0.01**2, 0.03**2


def _gaussian_window(size: int = 11, sigma: float = 1.5, *, device: torch.device) -> torch.Tensor:
    x = torch.arange(size, device=device, dtype=torch.float32) - size // 2
    g = torch.exp(-(x * x) / (2 * sigma * sigma))
    g = g / g.sum()
    return (g[:, None] * g[None, :])[None, None]


def ssim(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean SSIM of grayscale images [N, 1, H, W] in [0, 1] (Gaussian window 11, σ 1.5); returns [N]."""
    w = _gaussian_window(device=a.device)
    pad = w.shape[-1] // 2
    mu_a, mu_b = F.conv2d(a, w, padding=pad), F.conv2d(b, w, padding=pad)
    var_a = F.conv2d(a * a, w, padding=pad) - mu_a**2
    var_b = F.conv2d(b * b, w, padding=pad) - mu_b**2
    cov = F.conv2d(a * b, w, padding=pad) - mu_a * mu_b
    num = (2 * mu_a * mu_b + _C1) * (2 * cov + _C2)
    den = (mu_a**2 + mu_b**2 + _C1) * (var_a + var_b + _C2)
    return (num / den).mean(dim=(1, 2, 3))


def to_gray_small(frames: torch.Tensor) -> torch.Tensor:
    """uint8 [B, H, W, 3] → float gray [B, 1, h, w] in [0, 1], at most SSIM_WIDTH wide."""
    x = frames.permute(0, 3, 1, 2).float() / 255.0
    gray = (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3])
    width = gray.shape[-1]
    if width > SSIM_WIDTH:
        factor = math.ceil(width / SSIM_WIDTH)
        gray = F.avg_pool2d(gray, kernel_size=factor, stride=factor)
    return gray


class TemporalMetrics:
    """Feed every frame batch in order; read the metrics at the end."""

    def __init__(self, n_frames: int, *, fps: float = 30.0, max_pairs: int = 240) -> None:
        self.n_frames = n_frames
        self.fps = fps
        self.stride = max(1, math.ceil(max(n_frames - 1, 1) / max_pairs))
        self._prev: torch.Tensor | None = None
        self._index = 0  # index of the next frame fed
        self.change: list[float] = []  # change[i] = visual change from frame i to i + 1, gray levels
        self.ssim: list[float] = []
        self.detail_sum = 0.0  # sum over frames of each frame's detail, gray levels

    def update(self, frames: torch.Tensor) -> None:
        gray = to_gray_small(frames)
        self.detail_sum += float(detail(gray).sum()) * 255.0
        seq = gray if self._prev is None else torch.cat([self._prev, gray])
        if seq.shape[0] >= 2:
            prev, curr = seq[:-1], seq[1:]
            self.change.extend(((curr - prev).abs().mean(dim=(1, 2, 3)) * 255.0).tolist())
            first_pair = self._index - (0 if self._prev is None else 1)  # index of prev[0]
            pick = [i for i in range(prev.shape[0]) if (first_pair + i) % self.stride == 0]
            if pick:
                self.ssim.extend(ssim(prev[pick], curr[pick]).tolist())
        self._prev = gray[-1:]
        self._index += frames.shape[0]

    def result(self, onset: np.ndarray, *, level: np.ndarray | None = None) -> dict[str, float | int | str | None]:
        """The metrics; `onset` [n_frames] in [0, 1], `level` [n_frames] loudness (the timeline's channel)."""
        ssim_vals = np.asarray(self.ssim, dtype=np.float64)
        change = np.asarray(self.change, dtype=np.float64)
        return {
            "temporal_ssim_mean": round(float(ssim_vals.mean()), 5) if ssim_vals.size else None,
            "temporal_ssim_min": round(float(ssim_vals.min()), 5) if ssim_vals.size else None,
            "temporal_ssim_pairs": int(ssim_vals.size),
            "temporal_ssim_method": f"1 in {self.stride} consecutive frame pairs, gray, <= {SSIM_WIDTH} px wide, "
                                    "Gaussian window 11 / sigma 1.5",
            "motion_energy": _round(motion_energy(change, fps=self.fps)),
            "onset_alignment": _round(onset_alignment(change, onset)),
            "loud_quiet_contrast": _round(None if level is None else loud_quiet_contrast(change, level)),
            "onset_correlation": onset_correlation(change, onset),
            "detail": _round(self.detail_sum / self._index) if self._index else None,
        }


def detail(gray: torch.Tensor) -> torch.Tensor:
    """Per frame [N] of gray frames [N, 1, H, W] in [0, 1]: mean |horizontal step| + mean |vertical step|."""
    across = (gray[..., :, 1:] - gray[..., :, :-1]).abs().mean(dim=(1, 2, 3)) if gray.shape[-1] > 1 else 0
    down = (gray[..., 1:, :] - gray[..., :-1, :]).abs().mean(dim=(1, 2, 3)) if gray.shape[-2] > 1 else 0
    return gray.new_zeros(gray.shape[0]) + across + down


def _round(value: float | None, digits: int = 5) -> float | None:
    return None if value is None else round(float(value), digits)


def motion_energy(change: np.ndarray, *, fps: float) -> float | None:
    """Mean visual change per second, gray levels/s: 0 for a still video, up to 255 × fps."""
    return float(change.mean() * fps) if change.size else None


def visual_peaks(change: np.ndarray) -> np.ndarray:
    """Frames where visual change peaks (change into frame j is change[j - 1]), high and prominent enough."""
    into = np.concatenate([[0.0], change])
    floor = max(VIDEO_PEAK_MIN, VIDEO_PEAK_SHARE * float(np.percentile(into, 95)))
    peaks, _ = find_peaks(into, height=VIDEO_PEAK_MIN, prominence=floor, distance=2)
    return np.asarray(peaks)


def audio_peaks(onset: np.ndarray) -> np.ndarray:
    """Frames of onset peaks: librosa's peak picking (as its onset_detect) on the per-frame onset strength."""
    if onset.size < 3 or onset.max() <= 0:
        return np.zeros(0, dtype=int)
    return librosa.util.peak_pick(onset.astype(np.float64), pre_max=2, post_max=2, pre_avg=3, post_avg=3,
                                  delta=0.07, wait=2)


def onset_alignment(change: np.ndarray, onset: np.ndarray) -> float | None:
    """AV-Align: audio onset peaks with a visual-change peak within ±1 frame, over the union of peaks.

    None when neither has a peak (silence rendered still); 0 when only one side has any.
    """
    n = min(change.size + 1, onset.size)
    a, v = audio_peaks(onset[:n]), visual_peaks(change[:n - 1])
    if a.size + v.size == 0:
        return None
    hits = sum(1 for i in a if np.any(np.abs(v - i) <= 1))
    return hits / (a.size + v.size - hits)


def loud_quiet_contrast(change: np.ndarray, level: np.ndarray) -> float | None:
    """Mean change into the loudest 20 % of frames over that into the quietest 20 % (floored both sides).

    None when the track's level hardly varies (then no frames are louder than others).
    """
    n = min(change.size, max(level.size - 1, 0))
    if n < 5:
        return None
    into, lv = change[:n], level[1:n + 1]
    if np.ptp(lv) < 0.05:
        return None
    order = np.argsort(lv, kind="stable")
    k = max(1, int(round(n * CONTRAST_SHARE)))
    return float((into[order[-k:]].mean() + CONTRAST_FLOOR) / (into[order[:k]].mean() + CONTRAST_FLOOR))


def onset_correlation(change: np.ndarray, onset: np.ndarray) -> float | None:
    """Pearson correlation of visual change (frame i → i+1) with onset strength at frame i + 1."""
    n = min(change.size, max(onset.size - 1, 0))
    if n < 3:
        return None
    a, b = change[:n], onset[1:n + 1]
    if a.std() < 1e-9 or b.std() < 1e-9:
        return 0.0
    return round(float(np.corrcoef(a, b)[0, 1]), 5)
