"""Every error afx raises on purpose, in one hierarchy.

    AfxError                     anything the user can act on; carries what, which file, what to do
    ├── ConfigError              afx.toml: file + key
    ├── SpecError                a style spec: file + key
    ├── AudioError               decoding or limits of an input track (bad input: not retried)
    ├── FeatureError             a feature set could not be computed (missing backend, model, ...)
    ├── GuidanceError            CLIP model / weights could not be loaded
    ├── StyleError               a style folder is missing, incomplete or inconsistent
    ├── RenderError              rendering or writing a video failed
    │   └── EncodeError          ffmpeg failed while encoding (carries its stderr tail)
    ├── TrainingError            the optimisation loop failed
    └── LedgerError              the service's SQLite ledger

`user_line()` is the one line a person sees; the traceback goes to the log. `transient` says whether
retrying the same input may succeed (a busy GPU, a full disk) or not (a corrupt file).
"""

from __future__ import annotations

from pathlib import Path


class AfxError(Exception):
    """Base class: a message, and the context that makes it actionable."""

    #: whether retrying the same job unchanged may succeed
    transient: bool = False

    def __init__(
        self,
        message: str,
        *,
        path: str | Path | None = None,
        key: str | None = None,
        hint: str | None = None,
        stderr_tail: str | None = None,
        transient: bool | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.path = str(path) if path is not None else None
        self.key = key
        self.hint = hint
        self.stderr_tail = stderr_tail
        if transient is not None:
            self.transient = transient

    def user_line(self) -> str:
        """What went wrong, where, and what to do — on one line."""
        where = ""
        if self.path:
            where = f"{self.path}"
            if self.key:
                where += f" [{self.key}]"
            where += ": "
        elif self.key:
            where = f"[{self.key}]: "
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


class LedgerError(AfxError):
    """The service ledger (SQLite) failed."""
