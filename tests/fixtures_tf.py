"""Builds tiny TensorFlow SavedModels with YAMNet's and VGGish's signatures (run as a script, never imported).

    python tests/fixtures_tf.py OUT_DIR   →   OUT_DIR/yamnet, OUT_DIR/vggish, OUT_DIR/broken

The real models cannot be downloaded here, so these stand in for them with the same interface:
- yamnet: 1-D float32 waveform at 16 kHz → (scores [N, 521], embeddings [N, 1024], log-mel [M, 64]), with
  0.96 s patches every 0.48 s, the waveform padded at the end to whole hops (as YAMNet does);
- vggish: 1-D float32 waveform at 16 kHz → embeddings [N, 128], one per whole 0.96 s.
Their outputs are fixed random linear maps of the log energy of 10 ms slices, so they follow the audio.
`broken` is a folder whose saved_model.pb is not a SavedModel (the error path).

It runs in its own process so the test process (which holds torch) never imports TensorFlow.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import tensorflow as tf

RATE = 16000
WINDOW = 15360  # 0.96 s
HOP = 7680  # 0.48 s
SLICES = 96  # 10 ms slices per window


def _weights(seed: int, shape: tuple[int, ...]) -> tf.Tensor:
    return tf.constant(np.random.default_rng(seed).standard_normal(shape).astype(np.float32) * 0.3)


def _log_energy(frames: tf.Tensor) -> tf.Tensor:
    """[N, WINDOW] → [N, SLICES] log mean power of each 10 ms slice."""
    slices = tf.reshape(frames, [-1, SLICES, WINDOW // SLICES])
    return tf.math.log(tf.reduce_mean(tf.square(slices), axis=-1) + 1e-6)


class FakeYamnet(tf.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w_scores = _weights(1, (SLICES, 521))
        self.w_embedding = _weights(2, (SLICES, 1024))
        self.w_mel = tf.constant(np.abs(np.random.default_rng(3).standard_normal((257, 64))).astype(np.float32))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
    def __call__(self, waveform: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        n = tf.shape(waveform)[0]
        hops = tf.cast(tf.math.ceil(tf.maximum(0, n - WINDOW) / HOP), tf.int32)
        padded = tf.pad(waveform, [[0, WINDOW + hops * HOP - n]])
        logs = _log_energy(tf.signal.frame(padded, WINDOW, HOP))
        scores = tf.sigmoid(tf.matmul(logs, self.w_scores) / 10.0)
        embeddings = tf.nn.relu(tf.matmul(logs, self.w_embedding) / 10.0)
        spectrum = tf.abs(tf.signal.stft(padded, 400, 160, 512))
        log_mel = tf.math.log(tf.matmul(spectrum, self.w_mel) + 1e-3)
        return scores, embeddings, log_mel


class FakeVggish(tf.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = _weights(4, (SLICES, 128))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
    def __call__(self, waveform: tf.Tensor) -> tf.Tensor:
        frames = tf.signal.frame(waveform, WINDOW, WINDOW)  # whole 0.96 s only
        return tf.matmul(_log_energy(frames), self.w)


def build(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    tf.saved_model.save(FakeYamnet(), str(out / "yamnet"))
    tf.saved_model.save(FakeVggish(), str(out / "vggish"))
    (out / "broken").mkdir(exist_ok=True)
    (out / "broken" / "saved_model.pb").write_bytes(b"this is not a SavedModel")


if __name__ == "__main__":
    build(Path(sys.argv[1]))
