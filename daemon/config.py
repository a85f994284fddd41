"""Service configuration: `afx.toml` (from --config, else $AFX_CONFIG, else ./afx.toml if present).

Every field has a default that works from a clone of the repository; relative folders are resolved
against the config file's folder (or the working directory when there is no file). Errors name the
file and the key, like style specs.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import ClassVar

from daemon.errors import ConfigError
from daemon.tables import bounds, from_table

CONFIG_ENV = "AFX_CONFIG"
DEFAULT_CONFIG_NAME = "afx.toml"


@dataclass(frozen=True)
class Folders:
    """Where things live; relative paths are resolved against the config file's folder."""

    inbox: Path = Path("inbox")  # audio files (and optional <track>.toml sidecars) are dropped here
    specs: Path = Path("specs")  # style specs (TOML), one style per file
    library: Path = Path("library")  # trained styles
    renders: Path = Path("renders")  # videos and reports, renders/<track stem>/<style>.mp4
    state: Path = Path("state")  # the ledger, scratch folders, training checkpoints
    cache: Path = Path("state/cache")  # feature timelines keyed by content hash
    models: Path = Path("state/models")  # CLIP weights cache (open_clip / Hugging Face downloads)


@dataclass(frozen=True)
class Limits:
    """Bounds on what a file or a spec can ask of the machine."""

    min_duration_s: float = field(default=1.0, metadata=bounds(lo=0.1))  # shortest accepted track
    max_duration_s: float = field(default=1200.0, metadata=bounds(lo=1.0))  # longest accepted track
    max_file_mb: float = field(default=2048.0, metadata=bounds(lo=1.0))  # largest accepted audio file
    max_render_pixels: int = field(default=3840 * 2160, metadata=bounds(lo=256))  # width × height of a render
    max_iterations: int = field(default=20000, metadata=bounds(lo=1))  # training steps a spec may ask for
    max_prompts: int = field(default=16, metadata=bounds(lo=1))  # prompts + negative prompts per spec
    max_prompt_chars: int = field(default=300, metadata=bounds(lo=1))  # characters per prompt

    @property
    def max_file_bytes(self) -> int:
        return int(self.max_file_mb * 1024 * 1024)


@dataclass(frozen=True)
class Embeddings:
    """Where the TensorFlow embedding models come from (a tfhub URL or a local SavedModel folder)."""

    yamnet_handle: str = "https://tfhub.dev/google/yamnet/1"
    vggish_handle: str = "https://tfhub.dev/google/vggish/1"
    openl3_hop_s: float = field(default=0.1, metadata=bounds(lo=0.01, hi=10.0))  # seconds between OpenL3 frames
    # (openl3's own default: 10 frames per second)
    timeout_s: float = field(default=1800.0, metadata=bounds(lo=1.0, hi=7 * 24 * 3600.0))  # one embedding
    # worker run (all its tracks), at most

    #: the environment variable that carries each field to daemon.audio.embeddings (which reads these
    #: defaults too: this class is their one home) and to its child process
    VARIABLES: ClassVar[dict[str, str]] = {
        "yamnet_handle": "AFX_YAMNET_HANDLE", "vggish_handle": "AFX_VGGISH_HANDLE",
        "openl3_hop_s": "AFX_OPENL3_HOP_S", "timeout_s": "AFX_EMBEDDING_TIMEOUT_S"}

    def environment(self) -> dict[str, str]:
        """The variables daemon.audio.embeddings (and its child process) reads."""
        return {variable: str(getattr(self, name)) for name, variable in self.VARIABLES.items()}


EXECUTOR_KINDS = ("local",)


@dataclass(frozen=True)
class ExecutorSettings:
    """Where jobs run, and how long one may take: a wall-clock limit grows with the job's size."""

    kind: str = field(default="local", metadata=bounds(choices=EXECUTOR_KINDS))  # local: child processes here
    job_base_s: float = field(default=900.0, metadata=bounds(lo=1.0))  # every job: start-up, decoding, models
    render_pixels_per_s: float = field(default=2e5, metadata=bounds(lo=1.0))  # slowest render rate allowed
    train_pixels_per_s: float = field(default=1e4, metadata=bounds(lo=1.0))  # slowest training rate allowed
    max_job_s: float = field(default=86400.0, metadata=bounds(lo=1.0))  # no job runs longer, whatever its size


@dataclass(frozen=True)
class ServiceConfig:
    """Everything `afx run` needs; also the defaults for the one-shot commands."""

    folders: Folders = Folders()
    limits: Limits = Limits()
    embeddings: Embeddings = Embeddings()
    executor: ExecutorSettings = ExecutorSettings()
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    workers: int = field(default=0, metadata=bounds(lo=0, hi=64))  # 0: one per GPU, one on CPU
    settle_s: float = field(default=5.0, metadata=bounds(lo=0.0, hi=3600.0))  # stable size+mtime this long
    rescan_s: float = field(default=60.0, metadata=bounds(lo=1.0, hi=86400.0))  # full rescan interval
    polling: bool = False  # use watchdog's polling observer (network mounts)
    download_models: bool = True  # fetch missing CLIP weights; false: use the models cache only (offline hosts)
    default_styles: tuple[str, ...] = ()  # styles for tracks no spec or sidecar assigns; empty: all specs
    retries: int = field(default=3, metadata=bounds(lo=0, hi=20))  # attempts for transient failures
    retry_backoff_s: float = field(default=30.0, metadata=bounds(lo=0.0, hi=86400.0))  # first back-off
    stop_timeout_s: float = field(default=60.0, metadata=bounds(lo=1.0, hi=3600.0))  # SIGTERM grace
    lease_s: float = field(default=600.0, metadata=bounds(lo=5.0))  # a job lease not renewed this long expired
    log_json: bool | None = None  # None: JSON lines unless on a terminal
    base: Path = Path(".")  # the folder relative paths resolve against (set by the loader, not the file)

    def path(self, name: str) -> Path:
        """An absolute folder path: `config.path("inbox")`."""
        folder = Path(getattr(self.folders, name))
        return folder if folder.is_absolute() else (self.base / folder).resolve()


def apply_environment(config: ServiceConfig) -> None:
    """Export the embedding settings for the TensorFlow child process; variables already set win."""
    for name, value in config.embeddings.environment().items():
        os.environ.setdefault(name, value)


def config_path(explicit: str | Path | None = None) -> Path | None:
    """The config file to read: --config, else $AFX_CONFIG, else ./afx.toml if it exists."""
    if explicit:
        return Path(explicit)
    if os.environ.get(CONFIG_ENV):
        return Path(os.environ[CONFIG_ENV])
    default = Path.cwd() / DEFAULT_CONFIG_NAME
    return default if default.exists() else None


def load_config(explicit: str | Path | None = None) -> ServiceConfig:
    """Read and validate the configuration; defaults alone when there is no file."""
    path = config_path(explicit)
    if path is None:
        return ServiceConfig(base=Path.cwd())
    if not path.is_file():
        raise ConfigError("config file not found", path=path, hint=f"create it, or unset {CONFIG_ENV}")
    try:
        table = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"not valid TOML ({e})", path=path) from e
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read ({e})", path=path) from e
    table.pop("base", None)
    config = from_table(ServiceConfig, table, error=ConfigError, path=path)
    return replace(config, base=path.resolve().parent)
