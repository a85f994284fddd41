"""uvicorn in a thread of the service (or in the foreground for `afx web`).

The thread is the web part's error boundary: whatever happens in it — the port is taken, the app raises,
uvicorn stops — is logged as `web.crashed` and the server is started again after a back-off, while the
service's loop goes on with its jobs. It is started after the executor's forkserver, so no job process is
ever forked from a process with this thread in it.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import uvicorn

from daemon.logs import get_logger
from daemon.web.security import WebAccess

log = get_logger("afx.web")

RESTART_S = 2.0  # first wait before the server is started again after a crash; doubles up to RESTART_MAX_S
RESTART_MAX_S = 60.0


def server_config(app: Any, access: WebAccess) -> uvicorn.Config:
    return uvicorn.Config(app, host=access.host, port=access.port, log_config=None, access_log=False,
                          lifespan="off", server_header=False, timeout_graceful_shutdown=2)


def url_of(server: uvicorn.Server, access: WebAccess) -> str | None:
    """The address a started server really listens on (port 0 picks a free one)."""
    for listener in getattr(server, "servers", []) or []:
        for sock in listener.sockets:
            host, port = sock.getsockname()[:2]
            return f"http://{'[' + host + ']' if ':' in host else host}:{port}/"
    return None


class WebServer:
    """The dashboard in a daemon thread, restarted after a crash, never taking the service down."""

    def __init__(self, app: Any, access: WebAccess) -> None:
        self.app = app
        self.access = access
        self.url: str | None = None
        self.crashes = 0
        self._stop = threading.Event()
        self._server: uvicorn.Server | None = None
        self._thread = threading.Thread(target=self._serve, name="afx-web", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def wait_started(self, timeout: float) -> str | None:
        deadline = time.monotonic() + timeout
        while self.url is None and time.monotonic() < deadline and self._thread.is_alive():
            time.sleep(0.02)
        return self.url

    def _serve(self) -> None:
        delay = RESTART_S
        while not self._stop.is_set():
            try:
                server = uvicorn.Server(server_config(self.app, self.access))
                self._server = server
                watcher = threading.Thread(target=self._note_url, args=(server,), daemon=True)
                watcher.start()
                server.run()  # returns when stopped; a bind failure raises SystemExit inside uvicorn
                if self._stop.is_set():
                    return
                raise RuntimeError("the web server stopped by itself")
            except BaseException as e:  # noqa: BLE001 — SystemExit too: nothing here may end the service
                self.url = None
                self.crashes += 1
                log.error("web.crashed", error=f"{type(e).__name__}: {e}", listen=f"{self.access.host}:"
                          f"{self.access.port}", restart_in_s=delay, crashes=self.crashes)
                if self._stop.wait(delay):
                    return
                delay = min(delay * 2, RESTART_MAX_S)

    def _note_url(self, server: uvicorn.Server) -> None:
        while not server.started and not self._stop.is_set() and not server.should_exit:
            time.sleep(0.02)
        if server.started:
            self.url = url_of(server, self.access)
            log.info("web.listening", url=self.url, token=self.access.token is not None)

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._server is not None:
            self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout)
