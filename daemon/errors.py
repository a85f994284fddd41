"""Every error afx raises on purpose, in one hierarchy.

    AfxError                     anything the user can act on; carries what, which file, what to do
    ├── ConfigError              afx.toml: file + key
    │   └── NodeUnfit            a cluster node cannot run afx jobs (no ffmpeg, afx not installed): names it
    ├── SpecError                a style spec: file + key
    ├── AudioError               decoding or limits of an input track (bad input: not retried)
    ├── FeatureError             a feature set could not be computed (missing backend, model, ...)
    ├── GuidanceError            CLIP model / weights could not be loaded
    ├── StyleError               a style folder is missing, incomplete or inconsistent
    ├── RenderError              rendering or writing a video failed
    │   └── EncodeError          ffmpeg failed while encoding (carries its stderr tail)
    ├── TrainingError            the optimisation loop failed
    ├── JobTimeout               a job ran past its wall-clock limit (its size asks too much)
    └── TransientError           retrying the same job unchanged may succeed
        ├── StorageError         the disk failed us: ENOSPC, EIO, EDQUOT, EROFS, a broken pipe to ffmpeg
        ├── TrackRemoved         the track vanished or changed while a job used it (rendered when it returns)
        ├── JobCrashed           a job's process died (a signal, the out-of-memory killer)
        │   └── NodeLost         the cluster node running a job died or left (kind = "ray")
        ├── EmbeddingUnavailable an embedding model could not be reached or its worker stopped
        └── LedgerError          the service's SQLite ledger

`user_line()` is the one line a person sees; the traceback goes to the log. Whether the service retries a
failed job is a property of the error's class (`transient`), never decided where it is raised: everything
under `TransientError` is retried with back-off, everything else is bad input (not retried until the file
or spec changes). OS failures are turned into these classes in one place, `storage_errors()`, which the
storage and encode boundary (publishing videos, reports and style folders; ffmpeg's pipes) wraps around its
work; an error that escapes unclassified is an internal error and is retried.
"""

from __future__ import annotations

import errno
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

#: OS errors that say "the machine, not the input": retrying once it is fixed succeeds
STORAGE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS, errno.EPIPE, errno.ENOMEM,
                            errno.EMFILE, errno.ENFILE, errno.EAGAIN, errno.ESTALE, errno.ENOLCK})
#: what ffmpeg prints for the same failures (it reports them on stderr, not through its exit status)
STORAGE_MESSAGES = ("No space left on device", "Disk quota exceeded", "Input/output error",
                    "Read-only file system", "Broken pipe", "Cannot allocate memory")


def _rebuild(cls: type[AfxError], message: str, state: dict[str, Any]) -> AfxError:
    error = cls.__new__(cls)
    Exception.__init__(error, message)
    error.__dict__.update(state)
    return error


class AfxError(Exception):
    """Base class: a message, and the context that makes it actionable."""

    #: whether retrying the same job unchanged may succeed: a property of the class, never of one raise
    transient: bool = False

    def __init__(
        self,
        message: str,
        *,
        path: str | Path | None = None,
        key: str | None = None,
        hint: str | None = None,
        stderr_tail: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.path = str(path) if path is not None else None
        self.key = key
        self.hint = hint
        self.stderr_tail = stderr_tail

    def __reduce__(self) -> tuple[Any, ...]:
        """Picklable with its context (jobs run in child processes and send their errors back)."""
        return _rebuild, (type(self), self.message, dict(self.__dict__))

    def user_line(self) -> str:
        """What went wrong, where, and what to do — on one line."""
        where = ""
        if self.path:
            where = f"{self.path}"
            if self.key:
                where += f" [{self.key}]"
            where += ": "
        elif self.key:
            where = f"{self.key}: " if self.key.startswith("-") else f"[{self.key}]: "  # a flag, or a table key
        line = f"{where}{self.message}"
        if self.hint:
            line += f" — {self.hint}"
        return line.replace("\n", " ")

    def to_dict(self) -> dict[str, object]:
        """The error as it appears in failure reports and the ledger."""
        return {
            "type": type(self).__name__,
            "message": self.message,
            "path": self.path,
            "key": self.key,
            "hint": self.hint,
            "stderr_tail": self.stderr_tail,
            "transient": self.transient,
        }


class ConfigError(AfxError):
    """The service configuration (afx.toml) is invalid."""


class SpecError(AfxError):
    """A style spec (specs/*.toml) is invalid."""


class AudioError(AfxError):
    """An input track cannot be decoded or is outside the configured limits."""


class FeatureError(AfxError):
    """A feature set could not be computed for a track."""


class GuidanceError(AfxError):
    """The CLIP guidance model could not be loaded."""


class StyleError(AfxError):
    """A style folder is missing, incomplete or inconsistent."""


class RenderError(AfxError):
    """Rendering or publishing a video failed."""


class EncodeError(RenderError):
    """ffmpeg failed while encoding a video."""


class TrainingError(AfxError):
    """Training a style failed."""


class JobTimeout(AfxError):
    """A job ran past the wall-clock limit its size allows ([executor] in afx.toml)."""


class TransientError(AfxError):
    """Retrying the same job unchanged may succeed: the service retries these with back-off."""

    transient = True


class StorageError(TransientError):
    """Writing or reading our own files failed for a reason outside the input (a full disk, an I/O error)."""


class TrackRemoved(TransientError):
    """The track's file went away or changed while a job was using it."""


class JobCrashed(TransientError):
    """The process running a job died (killed by a signal, the out-of-memory killer, a crash)."""


class NodeLost(JobCrashed):
    """The cluster node (or its worker process) running a job died or left the cluster."""


class NodeUnfit(ConfigError):
    """A cluster node cannot run afx jobs: ffmpeg missing, afx not installed or another version there."""


class EmbeddingUnavailable(FeatureError, TransientError):
    """An embedding model could not be downloaded, or its worker process was stopped."""


class LedgerError(TransientError):
    """The service ledger (SQLite) failed."""


def is_storage_failure(error: BaseException) -> bool:
    return isinstance(error, OSError) and error.errno in STORAGE_ERRNOS


def storage_message(stderr: str) -> str | None:
    """The line of ffmpeg's output that names a storage failure, if one does."""
    for line in stderr.splitlines():
        if any(m in line for m in STORAGE_MESSAGES):
            return line.strip()
    return None


@contextmanager
def storage_errors(path: str | Path | None, what: str) -> Iterator[None]:
    """The one translation of OS failures: ENOSPC, EIO, EPIPE … become `StorageError` (retried)."""
    try:
        yield
    except OSError as e:
        if not is_storage_failure(e):
            raise
        raise StorageError(f"{what} failed: {e.strerror or e}", path=e.filename or path,
                           hint="free disk space or fix the device; the job is retried") from e
