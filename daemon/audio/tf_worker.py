"""The child-process side of daemon.audio.embeddings: runs the TensorFlow models, never torch.

    python -m daemon.audio.tf_worker REQUEST.json

The request (written by `embeddings.run_backend`) names the backend, its model handle and the jobs: each an
input .npy of mono float32 audio at the model's rate, an output .npz, an error .json. The model is loaded
once; each job then writes either `values` [N, D] + `times` [N] (seconds, window centres) or its error file.
A failure that stops every job (a missing package, a model that does not load) goes to the request's error
file. Exit status 0 when every job succeeded, 3 otherwise; a crash leaves only stderr, which the parent
reports. This module imports nothing from the daemon package (and so no torch): the parent's process holds
the rendering GPU, this one gets TensorFlow with GPU memory growth on.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

EXIT_FAILED = 3
Run = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


class WorkerError(Exception):
    """A failure with a message and a hint for the person who reads the parent's FeatureError."""

    def __init__(self, message: str, *, hint: str | None = None, transient: bool = False) -> None:
        super().__init__(message)
        self.hint, self.transient = hint, transient

    def to_dict(self) -> dict[str, Any]:
        return {"message": str(self), "hint": self.hint, "transient": self.transient}


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0][:300]}" if text else type(e).__name__


def _install_hint(request: dict[str, Any]) -> str:
    return f"pip install 'audio-feature-explorer[{request.get('extra', 'tfhub')}]'"


def _memory_growth() -> None:
    """Allocate GPU memory as needed instead of all of it (TF_FORCE_GPU_ALLOW_GROWTH says the same)."""
    tf = sys.modules.get("tensorflow")
    if tf is None:
        return
    for gpu in tf.config.list_physical_devices("GPU"):
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except (RuntimeError, ValueError):  # already initialised: the environment variable covered it
            pass


def _import_hub(request: dict[str, Any]) -> tuple[Any, Any]:
    """tensorflow and tensorflow_hub, with memory growth set before any GPU is touched."""
    try:
        import tensorflow as tf
    except ImportError as e:
        raise WorkerError(f"TensorFlow is not installed ({_first_line(e)})", hint=_install_hint(request)) from e
    _memory_growth()
    if importlib.util.find_spec("pkg_resources") is None:
        # tensorflow_hub 0.16 imports pkg_resources.parse_version, which setuptools ≥ 81 no longer ships
        from packaging.version import parse

        shim = types.ModuleType("pkg_resources")
        shim.parse_version = parse  # type: ignore[attr-defined]
        sys.modules["pkg_resources"] = shim
    try:
        import tensorflow_hub as hub
    except ImportError as e:
        raise WorkerError(f"tensorflow_hub cannot be imported ({_first_line(e)})",
                          hint=_install_hint(request) + " (and tf-keras for TensorFlow ≥ 2.16)") from e
    return tf, hub


def load_hub_model(request: dict[str, Any]) -> Run:
    """YAMNet / VGGish through tensorflow_hub from a URL or a local SavedModel folder."""
    tf, hub = _import_hub(request)
    name, handle = request["backend"], request["handle"]
    is_url = handle.startswith(("http://", "https://", "gs://"))
    if not is_url and not Path(handle).expanduser().is_dir():
        raise WorkerError(f"the {name} model handle '{handle}' is neither a URL nor a folder")
    try:
        model = hub.load(str(Path(handle).expanduser()) if not is_url else handle)
    except Exception as e:  # hub and TF raise many types (OSError, ValueError, NotFoundError, URL errors)
        raise WorkerError(f"cannot load the {name} model from '{handle}' ({_first_line(e)})",
                          transient=is_url and "URLError" in type(e).__name__) from e
    hop, window = float(request["hop_s"]), float(request["window_s"])

    def run(audio: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        try:
            out = model(tf.constant(audio, dtype=tf.float32))
        except Exception as e:
            raise WorkerError(f"the {name} model at '{handle}' failed on this audio ({_first_line(e)})") from e
        values = _hub_values(name, out, handle)
        return values, np.arange(values.shape[0], dtype=np.float64) * hop + window / 2.0

    return run


def _hub_values(name: str, out: Any, handle: str) -> np.ndarray:
    """YAMNet: scores [N, 521] ⊕ embeddings [N, 1024]; VGGish: embeddings [N, 128]."""
    if name == "yamnet":
        parts = list(out) if isinstance(out, (list, tuple)) else []
        if len(parts) < 2:
            raise WorkerError(f"the model at '{handle}' is not YAMNet-like: expected (scores [N, 521], "
                              f"embeddings [N, 1024], log-mel spectrogram), got {type(out).__name__}")
        scores, embeddings = np.asarray(parts[0]), np.asarray(parts[1])
        if scores.ndim != 2 or embeddings.ndim != 2 or scores.shape[0] != embeddings.shape[0]:
            raise WorkerError(f"the model at '{handle}' returned scores {scores.shape} and embeddings "
                              f"{embeddings.shape}, expected [N, 521] and [N, 1024]")
        return np.concatenate([scores, embeddings], axis=1).astype(np.float32)
    values = np.asarray(out[0] if isinstance(out, (list, tuple)) else out)
    if values.ndim != 2:
        raise WorkerError(f"the model at '{handle}' returned shape {values.shape}, expected [N, 128]")
    return values.astype(np.float32)


def load_openl3(request: dict[str, Any]) -> Run:
    """OpenL3 through its package: get_audio_embedding(audio, sr, ...) → (embeddings [N, 512], times [N])."""
    try:
        import openl3
    except ImportError as e:
        raise WorkerError(f"the openl3 package is not installed ({_first_line(e)})",
                          hint=_install_hint(request)) from e
    _memory_growth()
    options = dict(request["openl3"])
    model = None
    loader = getattr(getattr(openl3, "models", None), "load_audio_embedding_model", None)
    if loader is not None:  # load once for every job (get_audio_embedding would load it per call)
        try:
            model = loader(input_repr=options["input_repr"], content_type=options["content_type"],
                           embedding_size=options["embedding_size"])
        except Exception as e:
            raise WorkerError(f"cannot load the OpenL3 model ({_first_line(e)})",
                              hint="openl3 downloads its weights at install time: reinstall it") from e
    sr, hop = int(request["sample_rate"]), float(request["hop_s"])

    def run(audio: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        try:
            emb, ts = openl3.get_audio_embedding(audio, sr, model=model, hop_size=hop, center=True,
                                                 verbose=False, **options)
        except Exception as e:
            raise WorkerError(f"openl3 failed on this audio ({_first_line(e)})") from e
        return np.asarray(emb, dtype=np.float32), np.asarray(ts, dtype=np.float64).reshape(-1)

    return run


def _write_json(path: str, data: dict[str, Any]) -> None:
    tmp = f"{path}.tmp"
    Path(tmp).write_text(json.dumps(data))
    os.replace(tmp, path)


def _write_result(path: str, values: np.ndarray, times: np.ndarray) -> None:
    tmp = f"{path}.tmp.npz"
    np.savez(tmp, values=values, times=times)
    os.replace(tmp, path)


def run_job(run: Run, job: dict[str, str], *, dims: int) -> None:
    audio = np.load(job["input"], allow_pickle=False).astype(np.float32).reshape(-1)
    values, times = run(audio)
    if values.ndim != 2 or values.shape[1] != dims or times.shape != (values.shape[0],):
        raise WorkerError(f"the model returned frames {values.shape} with times {times.shape}, expected "
                          f"[N, {dims}] and [N]")
    _write_result(job["output"], values, times)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m daemon.audio.tf_worker REQUEST.json", file=sys.stderr)
        return 2
    request = json.loads(Path(argv[0]).read_text())
    try:
        run = load_openl3(request) if request["kind"] == "openl3" else load_hub_model(request)
    except WorkerError as e:
        _write_json(request["error"], e.to_dict())
        return EXIT_FAILED
    failed = 0
    for job in request["jobs"]:
        try:
            run_job(run, job, dims=int(request["dims"]))
        except WorkerError as e:
            _write_json(job["error"], e.to_dict())
            failed += 1
        except Exception as e:  # one bad track must not cost the others their embeddings
            _write_json(job["error"], WorkerError(f"failed on this track ({_first_line(e)})").to_dict())
            failed += 1
    return EXIT_FAILED if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
