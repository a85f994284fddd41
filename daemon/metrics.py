"""Quality metrics computed while frames stream past, on the device, in bounded memory.

- temporal SSIM: SSIM between consecutive frames on a grayscale copy downscaled to at most 256 px wide,
  for up to `max_pairs` pairs spread evenly over the video (every k-th pair);
- audio reactivity: Pearson correlation between per-frame visual change (mean absolute difference of
  consecutive downscaled frames, every frame) and the audio's onset strength at those frames.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

SSIM_WIDTH = 256
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

    def __init__(self, n_frames: int, *, max_pairs: int = 240) -> None:
        self.n_frames = n_frames
        self.stride = max(1, math.ceil(max(n_frames - 1, 1) / max_pairs))
        self._prev: torch.Tensor | None = None
        self._index = 0  # index of the next frame fed
        self.change: list[float] = []  # change[i] = visual change from frame i to i + 1
        self.ssim: list[float] = []

    def update(self, frames: torch.Tensor) -> None:
        gray = to_gray_small(frames)
        seq = gray if self._prev is None else torch.cat([self._prev, gray])
        if seq.shape[0] >= 2:
            prev, curr = seq[:-1], seq[1:]
            self.change.extend((curr - prev).abs().mean(dim=(1, 2, 3)).tolist())
            first_pair = self._index - (0 if self._prev is None else 1)  # index of prev[0]
            pick = [i for i in range(prev.shape[0]) if (first_pair + i) % self.stride == 0]
            if pick:
                self.ssim.extend(ssim(prev[pick], curr[pick]).tolist())
        self._prev = gray[-1:]
        self._index += frames.shape[0]

    def result(self, onset: np.ndarray) -> dict[str, object]:
        ssim_vals = np.asarray(self.ssim, dtype=np.float64)
        return {
            "temporal_ssim_mean": round(float(ssim_vals.mean()), 5) if ssim_vals.size else None,
            "temporal_ssim_min": round(float(ssim_vals.min()), 5) if ssim_vals.size else None,
            "temporal_ssim_pairs": int(ssim_vals.size),
            "temporal_ssim_method": f"1 in {self.stride} consecutive frame pairs, gray, <= {SSIM_WIDTH} px wide, "
                                    "Gaussian window 11 / sigma 1.5",
            "audio_reactivity": audio_reactivity(np.asarray(self.change), onset),
        }


def audio_reactivity(change: np.ndarray, onset: np.ndarray) -> float | None:
    """Pearson correlation of visual change (frame i → i+1) with onset strength at frame i + 1."""
    n = min(change.size, max(onset.size - 1, 0))
    if n < 3:
        return None
    a, b = change[:n], onset[1:n + 1]
    if a.std() < 1e-9 or b.std() < 1e-9:
        return 0.0
    return round(float(np.corrcoef(a, b)[0, 1]), 5)
