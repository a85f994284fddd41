"""Headless Chromium driven over the DevTools protocol on a pipe: for the parity test, the bench and checks.

No Python dependency: Chromium's `--remote-debugging-pipe` reads NUL-terminated JSON commands on fd 3 and
answers on fd 4. WebGL2 runs on SwiftShader (software GL) where there is no GPU, with the flags below.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from daemon.errors import AfxError

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
FLAGS = ("--headless=new", "--no-sandbox", "--use-gl=angle", "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
         "--ignore-gpu-blocklist", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--mute-audio", "--allow-file-access-from-files",
         "--autoplay-policy=no-user-gesture-required", "--disable-dev-shm-usage", "--hide-scrollbars")


class BrowserError(AfxError):
    """Chromium is missing, did not start, or a page failed."""


def find_chromium() -> str | None:
    """$AFX_CHROMIUM, else the first Chromium or Chrome on PATH."""
    if os.environ.get("AFX_CHROMIUM"):
        return os.environ["AFX_CHROMIUM"]
    return next((path for name in CHROMIUM_NAMES if (path := shutil.which(name))), None)


class Browser:
    """One headless Chromium with one page; `with Browser() as b: b.open(url); b.evaluate("1 + 1")`."""

    def __init__(self, *, width: int = 800, height: int = 600, timeout_s: float = 120.0,
                 executable: str | None = None) -> None:
        found = executable or find_chromium()
        if not found:
            raise BrowserError("no Chromium found", hint="install Debian's `chromium` (scripts/bootstrap.sh does) "
                                                         "or set AFX_CHROMIUM to a Chromium or Chrome binary")
        self.executable = found
        self.size, self.timeout_s = (width, height), timeout_s
        self.next_id, self.buffer, self.session = 0, b"", ""

    def __enter__(self) -> Browser:
        self.profile = tempfile.mkdtemp(prefix="afx-chromium-")
        to_browser_r, self.to_browser = os.pipe()
        self.from_browser, from_browser_w = os.pipe()
        # the child gets our pipe ends as its fds 3 and 4
        env = {**os.environ, "HOME": self.profile}
        self.proc = subprocess.Popen(
            [self.executable, *FLAGS, "--remote-debugging-pipe", f"--user-data-dir={self.profile}",
             f"--window-size={self.size[0]},{self.size[1]}", "about:blank"],
            pass_fds=(3, 4), preexec_fn=lambda: _as_fds_3_and_4(to_browser_r, from_browser_w),
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
        os.close(to_browser_r)
        os.close(from_browser_w)
        try:
            targets = self.call("Target.getTargets", session=False)["targetInfos"]
            page = next(t["targetId"] for t in targets if t["type"] == "page")
            self.session = self.call("Target.attachToTarget", {"targetId": page, "flatten": True},
                                     session=False)["sessionId"]
            self.call("Runtime.enable")
            self.call("Page.enable")
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        for fd in (self.to_browser, self.from_browser):
            try:
                os.close(fd)
            except OSError:
                pass
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.profile, ignore_errors=True)

    def call(self, method: str, params: dict[str, Any] | None = None, *, session: bool = True) -> dict[str, Any]:
        """Send one DevTools command and wait for its answer (events in between are dropped)."""
        self.next_id += 1
        message: dict[str, Any] = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = self.session
        os.write(self.to_browser, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + self.timeout_s
        while True:
            reply = self._read(deadline)
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise BrowserError(f"Chromium refused {method}: {reply['error'].get('message')}")
                result: dict[str, Any] = reply.get("result", {})
                return result

    def _read(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BrowserError(f"Chromium did not answer within {self.timeout_s:.0f} s")
            ready, _, _ = select.select([self.from_browser], [], [], left)
            chunk = os.read(self.from_browser, 1 << 20) if ready else b""
            if ready and not chunk:
                tail = (self.proc.stderr.read() if self.proc.stderr else b"").decode(errors="replace")[-500:]
                raise BrowserError("Chromium exited", stderr_tail=tail)
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\0")
        message: dict[str, Any] = json.loads(line)
        return message

    def open(self, url: str, *, ready: str = "document.readyState === 'complete'") -> None:
        """Load `url` and wait until the JavaScript expression `ready` is true."""
        self.call("Page.navigate", {"url": url})
        deadline = time.monotonic() + self.timeout_s
        while not self.evaluate(f"Boolean({ready})"):
            if time.monotonic() > deadline:
                raise BrowserError(f"page did not become ready ({ready})", path=url)
            time.sleep(0.05)

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression (promises are awaited); a thrown error becomes BrowserError."""
        result = self.call("Runtime.evaluate", {"expression": expression, "awaitPromise": True,
                                                "returnByValue": True})
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            raise BrowserError(f"page script failed: {text}")
        return result.get("result", {}).get("value")

    def screenshot(self, path: Path) -> Path:
        """The page as a PNG."""
        data = self.call("Page.captureScreenshot", {"format": "png"})["data"]
        Path(path).write_bytes(base64.b64decode(data))
        return Path(path)


def _as_fds_3_and_4(read_end: int, write_end: int) -> None:
    """In the child before exec: the DevTools pipe ends as fds 3 and 4 (copied high first, so neither
    dup2 can close the other's source)."""
    high_r, high_w = fcntl.fcntl(read_end, fcntl.F_DUPFD, 10), fcntl.fcntl(write_end, fcntl.F_DUPFD, 10)
    os.dup2(high_r, 3)
    os.dup2(high_w, 4)
