"""Atomic writes: every file and folder afx publishes appears whole or not at all.

One recipe everywhere (videos, reports, style folders, the mood board): write under a unique hidden
scratch name beside the destination (`.NAME.partial-HOST-PID-RANDOM`, so two writers never share one and a
sweep can tell a dead writer's leftovers by its host and pid), fsync the file, rename it over the destination, and
fsync the folder so the rename survives a power cut. On any error the scratch is removed. Files get the
mode a plain open()/mkdir() would give (the umask's), not mkstemp's 0600.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

SCRATCH_MARK = ".partial-"  # in every scratch name: `.{name}.partial-{host}-{pid}-{random}{suffix}`
HOST = socket.gethostname()  # the one home of this machine's name (leases, scratch owners, status)
HOST_TAG = re.sub(r"[^A-Za-z0-9]", "_", HOST) or "host"  # no '.' or '-': the name stays parseable


def umask_mode(*, directory: bool = False) -> int:
    """The mode a plain open()/mkdir() would give. The umask is read from /proc (os.umask would change
    it for every thread for a moment)."""
    mask = 0o022
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                mask = int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return (0o777 if directory else 0o666) & ~mask


def scratch_name(dest: Path) -> Path:
    """A unique hidden sibling of `dest` that keeps its suffix (ffmpeg picks the container by it)."""
    dest = Path(dest)
    return dest.with_name(f".{dest.stem}{SCRATCH_MARK}{HOST_TAG}-{os.getpid()}-{secrets.token_hex(4)}{dest.suffix}")


def scratch_owner(name: str) -> tuple[str, int] | None:
    """(host tag, pid) of the writer of a scratch name, or None when `name` is not one. Older names without
    a host (`.x.partial-PID.mp4`, `.x.partial-PID-RANDOM`) give an empty host."""
    if not name.startswith(".") or SCRATCH_MARK not in name:
        return None
    parts = name.rsplit(SCRATCH_MARK, 1)[1].split(".", 1)[0].split("-")
    host, pid = ("", parts[0]) if len(parts) <= 2 else ("-".join(parts[:-2]), parts[-2])
    return (host, int(pid)) if pid.isdigit() else None


def scratch_is_ours(host: str) -> bool:
    """Whether a scratch owner's host tag is this machine (an empty tag: older names, written here)."""
    return host in ("", HOST_TAG)


def fsync_dir(folder: Path) -> None:
    """Make a rename in `folder` durable (some filesystems refuse to open a folder: then nothing to do)."""
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as e:
        if e.errno not in (errno.EINVAL, errno.ENOTSUP):
            raise
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(dest: Path) -> Iterator[Path]:
    """Yield a scratch path to write `dest` through; on success it is synced and renamed over `dest`,
    on failure (any exception, KeyboardInterrupt included) it is removed."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = scratch_name(dest)
    try:
        yield tmp
        os.chmod(tmp, umask_mode())
        _fsync_file(tmp)
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(dest.parent)


def atomic_write_bytes(path: Path, data: bytes) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        with open(tmp, "xb") as f:
            f.write(data)
    return path


def atomic_write_text(path: Path, text: str, *, encoding: str = "utf-8") -> Path:
    return atomic_write_bytes(path, text.encode(encoding))


def atomic_link(src: Path, dest: Path) -> Path:
    """Publish `src` at `dest` atomically: a hard link (no copy, no extra space), else a copy."""
    dest = Path(dest)
    with atomic_path(dest) as tmp:
        try:
            os.link(src, tmp)
        except OSError as e:
            if e.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EACCES):
                raise
            shutil.copyfile(src, tmp)
    return dest


@contextlib.contextmanager
def atomic_replace_dir(dest: Path) -> Iterator[Path]:
    """Yield a scratch folder to fill; on success it replaces `dest` (the old one, if any, is moved
    aside first and then removed); on failure it is removed and `dest` is untouched."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    scratch = scratch_name(dest.with_name(dest.name + ".d")).with_suffix("")
    scratch.mkdir(mode=0o700)
    try:
        yield scratch
        file_mode, folder_mode = umask_mode(), umask_mode(directory=True)
        for path in scratch.rglob("*"):
            path.chmod(folder_mode if path.is_dir() else file_mode)
            if path.is_file():
                _fsync_file(path)
        scratch.chmod(folder_mode)
        fsync_dir(scratch)
        old = scratch_name(dest.with_name(dest.name + ".d")).with_suffix("") if dest.exists() else None
        if old is not None:
            os.replace(dest, old)
        try:
            os.replace(scratch, dest)
        except BaseException:
            if old is not None:
                os.replace(old, dest)
            raise
        fsync_dir(dest.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
