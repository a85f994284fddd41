"""Webhooks: a POST with the report of every finished or failed job to each `[web] webhooks` URL.

`send` only puts the delivery on a queue, so the service's loop never waits for a receiver; one thread
delivers them, and retries a failed one (a refused connection, a timeout, a status other than 2xx) after
`webhook_backoff_s`, doubling, up to `webhook_retries` times, while later deliveries go ahead. A full
queue drops the newest delivery with a log line rather than grow without bound.
"""

from __future__ import annotations

import heapq
import itertools
import json
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from daemon import __version__
from daemon.config import WebSettings
from daemon.logs import get_logger

log = get_logger("afx.webhooks")

MAX_PENDING = 1000  # deliveries waiting (retries included) before new ones are dropped


@dataclass(order=True)
class Delivery:
    due: float  # monotonic time it may be attempted
    seq: int  # ties: first come, first sent
    url: str = field(compare=False)
    body: bytes = field(compare=False)
    event: str = field(compare=False)
    attempt: int = field(default=0, compare=False)


class Webhooks:
    """The delivery queue and its thread (started with the first URL to send to)."""

    def __init__(self, settings: WebSettings) -> None:
        self.settings = settings
        self.delivered = 0
        self.given_up = 0
        self._heap: list[Delivery] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._closed = False
        self._thread: threading.Thread | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.settings.webhooks)

    def send(self, event: str, payload: dict[str, Any]) -> None:
        """Queue `payload` for every URL; returns at once."""
        if not self.enabled or self._closed:
            return
        body = json.dumps({"event": event, **payload}, ensure_ascii=False, default=str).encode("utf-8")
        with self._cond:
            for url in self.settings.webhooks:
                if len(self._heap) >= MAX_PENDING:
                    log.warning("webhook.dropped", url=url, what=event, reason=f"{MAX_PENDING} deliveries waiting")
                    continue
                heapq.heappush(self._heap, Delivery(time.monotonic(), next(self._seq), url, body, event))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="afx-webhooks", daemon=True)
                self._thread.start()
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._closed and (not self._heap or self._heap[0].due > time.monotonic()):
                    self._cond.wait(None if not self._heap else max(0.0, self._heap[0].due - time.monotonic()))
                if self._closed:
                    return
                delivery = heapq.heappop(self._heap)
            try:
                self._attempt(delivery)
            except Exception as e:  # noqa: BLE001 — the sender thread must outlive any one delivery
                log.error("webhook.error", url=delivery.url, error=f"{type(e).__name__}: {e}", exc_info=e)

    def _attempt(self, delivery: Delivery) -> None:
        s = self.settings
        request = urllib.request.Request(delivery.url, data=delivery.body, method="POST", headers={
            "content-type": "application/json", "user-agent": f"afx/{__version__}"})
        try:
            with urllib.request.urlopen(request, timeout=s.webhook_timeout_s) as response:
                status = int(response.status)
            error = None if 200 <= status < 300 else f"HTTP {status}"
        except urllib.error.HTTPError as e:
            error = f"HTTP {e.code}"
        except Exception as e:  # noqa: BLE001 — a refused connection, a timeout, a bad URL: all retried
            error = f"{type(e).__name__}: {e}"
        if error is None:
            self.delivered += 1
            log.info("webhook.sent", url=delivery.url, what=delivery.event, attempt=delivery.attempt + 1)
            return
        if delivery.attempt >= s.webhook_retries:
            self.given_up += 1
            log.error("webhook.failed", url=delivery.url, what=delivery.event, error=error,
                      attempts=delivery.attempt + 1)
            return
        wait = s.webhook_backoff_s * 2 ** delivery.attempt
        log.warning("webhook.retry", url=delivery.url, what=delivery.event, error=error, retry_in_s=wait)
        with self._cond:
            delivery.attempt += 1
            delivery.due = time.monotonic() + wait
            heapq.heappush(self._heap, delivery)
            self._cond.notify()

    def close(self) -> None:
        """Stop delivering; what is still queued is dropped (and logged)."""
        with self._cond:
            self._closed = True
            left = len(self._heap)
            self._cond.notify_all()
        if left:
            log.warning("webhook.unsent", count=left, reason="the service stopped")
        if self._thread is not None:
            self._thread.join(timeout=2.0)
