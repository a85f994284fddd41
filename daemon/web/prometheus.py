"""`/metrics` for Prometheus, computed from the ledger at each scrape (so `afx web` serves them too).

Job counts by kind and state, the queue's length, job durations and render real-time factors as
histograms, failures by error class, the devices the service's workers use and what runs on each.
The ledger is the only state: a restart of the service loses no history.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from daemon.config import ServiceConfig
from daemon.naming import report_path
from daemon.service.ledger import KINDS, STATES
from daemon.service.status import status_snapshot
from daemon.web.data import open_ledger

DURATION_BUCKETS = (1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 4 * 3600.0)
REALTIME_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0)


def histogram(name: str, doc: str, series: dict[tuple[str, ...], Sequence[float]], buckets: Sequence[float],
              labels: Sequence[str]) -> HistogramMetricFamily:
    """One histogram family from raw values: {label values: observations}."""
    family = HistogramMetricFamily(name, doc, labels=list(labels))
    for label_values, values in series.items():
        cumulative = [(str(b), float(sum(1 for v in values if v <= b))) for b in buckets]
        cumulative.append(("+Inf", float(len(values))))
        family.add_metric(list(label_values), cumulative, sum_value=float(sum(values)))
    return family


class LedgerCollector(Collector):
    """Reads the ledger (and the reports of published renders, cached by mtime) at every scrape."""

    def __init__(self, config: ServiceConfig) -> None:
        self.config = config
        self._factors: dict[str, tuple[int, float | None]] = {}  # report path → (mtime_ns, real-time factor)

    def collect(self) -> Iterator[Metric]:
        ledger = open_ledger(self.config)
        if ledger is None:
            yield GaugeMetricFamily("afx_service_up", "1 while the service runs (heartbeat in the ledger)", value=0)
            return
        try:
            counts = ledger.counts()
            done = ledger.query("SELECT kind, updated - started AS seconds FROM jobs WHERE state = 'done'"
                                " AND started IS NOT NULL")
            failed = ledger.query("SELECT kind, error_json FROM jobs WHERE state IN ('failed', 'bad_input')")
            outputs = [r["path"] for r in ledger.query("SELECT path FROM outputs")]
        finally:
            ledger.close()
        jobs = GaugeMetricFamily("afx_jobs", "jobs in the ledger by kind and state", labels=["kind", "state"])
        for kind in KINDS:
            for state in STATES:
                jobs.add_metric([kind, state], counts[kind][state])
        yield jobs
        yield GaugeMetricFamily("afx_queue_length", "queued jobs (trainings and renders)",
                                value=sum(counts[k]["queued"] for k in KINDS))
        yield histogram("afx_job_duration_seconds", "wall-clock seconds of finished jobs (their last attempt)",
                        {(kind,): [max(0.0, float(r["seconds"])) for r in done if r["kind"] == kind]
                         for kind in KINDS}, DURATION_BUCKETS, ["kind"])
        factors = [f for f in (self._factor(Path(p)) for p in outputs) if f is not None]
        yield histogram("afx_render_realtime_factor", "seconds of audio rendered per second, of published videos",
                        {(): factors}, REALTIME_BUCKETS, [])
        yield self._failures(failed)
        yield from self._service()

    def _failures(self, rows: Sequence[object]) -> GaugeMetricFamily:
        by_kind: Counter[tuple[str, str]] = Counter()
        for row in rows:
            try:
                error = json.loads(row["error_json"] or "{}")  # type: ignore[index]
            except ValueError:
                error = {}
            by_kind[(str(row["kind"]), str(error.get("type") or "unknown"))] += 1  # type: ignore[index]
        family = GaugeMetricFamily("afx_failures", "failed and bad-input jobs by job kind and error class",
                                   labels=["kind", "error"])
        for (kind, error_type), n in sorted(by_kind.items()):
            family.add_metric([kind, error_type], n)
        return family

    def _service(self) -> Iterator[Metric]:
        snap = status_snapshot(self.config, errors=0)
        svc = snap["service"]
        yield GaugeMetricFamily("afx_service_up", "1 while the service runs (heartbeat in the ledger)",
                                value=1 if svc.get("state") == "running" else 0)
        yield GaugeMetricFamily("afx_service_uptime_seconds", "seconds since the service started",
                                value=float(svc.get("uptime_s") or 0.0))
        running = Counter(str(r.get("device")) for r in snap["running"])
        devices = GaugeMetricFamily("afx_device_running_jobs", "jobs running on each worker device (cpu, cuda:N)",
                                    labels=["device"])
        for device in sorted(set(map(str, svc.get("workers") or [])) | set(running)):
            devices.add_metric([device], running.get(device, 0))
        yield devices

    def _factor(self, video: Path) -> float | None:
        path = report_path(video)
        try:
            mtime = path.stat().st_mtime_ns
        except OSError:
            return None
        cached = self._factors.get(str(path))
        if cached is None or cached[0] != mtime:
            try:
                value = json.loads(path.read_text(encoding="utf-8"))["timing"]["realtime_factor"]
                factor = float(value) if value is not None else None
            except (OSError, ValueError, KeyError, TypeError):
                factor = None
            cached = (mtime, factor)
            self._factors[str(path)] = cached
        return cached[1]


def metrics_registry(config: ServiceConfig) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(LedgerCollector(config))
    return registry


def exposition(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
