"""systemd's notify protocol (sd_notify) with the standard library alone.

When systemd starts afx with `Type=notify` it sets `$NOTIFY_SOCKET`; the service tells it `READY=1` after
its first scan, `WATCHDOG=1` while its loop runs, `STATUS=` with the queue and `STOPPING=1` on the way out.
Without the variable every call is a no-op, so the same code runs from a terminal, a test or a container.
"""

from __future__ import annotations

import os
import socket
import time

from daemon.logs import get_logger

log = get_logger("afx.notify")


class Notifier:
    """Sends sd_notify datagrams; silent when not started by systemd (or when the socket fails)."""

    def __init__(self, environ: dict[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self.address = _socket_address(env.get("NOTIFY_SOCKET", ""))
        self.watchdog_s = _watchdog_interval(env)
        self._last_ping = 0.0
        self._last_status = ""

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, *lines: str) -> bool:
        """One datagram of `KEY=value` lines; True when it was sent."""
        if self.address is None:
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.connect(self.address)
                sock.sendall("\n".join(lines).encode("utf-8"))
            return True
        except OSError as e:
            log.warning("notify.failed", error=str(e))
            return False

    def ready(self, status: str = "") -> None:
        self.send("READY=1", *([f"STATUS={status}"] if status else []))

    def stopping(self) -> None:
        self.send("STOPPING=1", "STATUS=stopping")

    def status(self, text: str) -> None:
        """STATUS= only when it changed: systemctl shows the latest line."""
        if text != self._last_status:
            self._last_status = text
            self.send(f"STATUS={text.replace(chr(10), ' ')}")

    def watchdog(self, *, now: float | None = None) -> None:
        """WATCHDOG=1, at most every quarter of systemd's WatchdogSec (the loop calls this every pass)."""
        if self.address is None:
            return
        now = time.monotonic() if now is None else now
        interval = self.watchdog_s / 4 if self.watchdog_s else 5.0
        if now - self._last_ping >= interval:
            self._last_ping = now
            self.send("WATCHDOG=1")


def _socket_address(value: str) -> str | bytes | None:
    """`/run/systemd/notify` → a path; `@name` → the abstract namespace (a leading NUL byte)."""
    if not value:
        return None
    if value.startswith("@"):
        return b"\0" + value[1:].encode("utf-8")
    if value.startswith("/"):
        return value
    return None  # vsock and other address families are not used by systemd for services


def _watchdog_interval(env: dict[str, str] | os._Environ[str]) -> float | None:
    """WatchdogSec in seconds when systemd asked this process (WATCHDOG_PID unset or ours) for pings."""
    usec = env.get("WATCHDOG_USEC", "")
    pid = env.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if pid and pid.isdigit() and int(pid) != os.getpid():
        return None
    return int(usec) / 1e6
