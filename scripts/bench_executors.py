"""Per-job overhead of `[executor] kind = "ray"` against `kind = "local"` on this machine (docs/SCALE.md).

    .venv/bin/python scripts/bench_executors.py [--burst 12] [--slots 2] [--hd-seconds 4] [--json out.json]

For each executor: a burst of tiny renders (64×36, 10 fps, 2 s tracks, one random style) through `--slots`
slots, then one 720p render (1280×720, 24 fps, `--hd-seconds` long). Each job's time is submit → outcome, as
the service loop sees it; "in-process" renders the same jobs with `daemon.pipeline.render_track` directly,
so executor time − in-process time is what the executor adds. Ray runs as `address = "local"` (a one-node
cluster in this process, `--slots` CPUs): on a real cluster add the network, and for `storage = "transfer"`
the track and video bytes. Needs the [ray] extra.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from daemon.config import ExecutorSettings, Folders, ServiceConfig  # noqa: E402
from daemon.library import Library  # noqa: E402
from daemon.service.executor import JobControl, LocalExecutor, Outcome, WorkItem, run_job  # noqa: E402
from daemon.service.ledger import Job, render_key  # noqa: E402
from daemon.style import random_style  # noqa: E402
from tests.conftest import synth, write_wav  # noqa: E402


def item(config: ServiceConfig, name: str, *, seconds: float, size: tuple[int, int], fps: int) -> WorkItem:
    path = write_wav(config.path("inbox") / name, synth(seconds, seed=len(name)))
    style = random_style(7)
    style.name, style.style_id = "bench", "bench0001"
    library = Library(config.path("library"))
    if not library.has(style.name, style.style_id):
        style.save(library.folder_for(style.name, style.style_id))
    settings = {"width": size[0], "height": size[1], "fps": fps}
    key = render_key(f"{name}-{time.time_ns()}", style.style_id, settings)
    job = Job(key=key, kind="render", style_id=style.style_id, style_name=style.name, settings=settings,
              state="running", attempts=1, not_before=0.0, output=None, track_sha="x", track_path=str(path),
              lease_owner="bench:1", error=None, progress_done=None, progress_total=None, started=time.time(),
              worker=None, created=time.time(), updated=time.time())
    return WorkItem(job=job, spec=None, track_path=path, reference_tracks=(), config=config)


def run_all(executor: Any, items: list[WorkItem]) -> tuple[float, list[float]]:
    """Submit as slots free up (as the loop does); returns the burst's wall time and each job's time."""
    queue, started, times = list(items), {}, []
    begin = time.perf_counter()
    while queue or started:
        for slot in executor.idle():
            if not queue:
                break
            job = queue.pop(0)
            started[job.job.key] = time.perf_counter()
            executor.submit(job, slot=slot)
        for outcome in executor.poll():
            assert outcome.status == "done", outcome.error
            times.append(time.perf_counter() - started.pop(outcome.key))
        time.sleep(0.01)
    return time.perf_counter() - begin, times


def in_process(items: list[WorkItem]) -> list[float]:
    times = []
    for job in items:
        begin = time.perf_counter()
        outcome: Outcome = run_job(job, device="cpu", control=JobControl(), worker="bench")
        assert outcome.status == "done", outcome.error
        times.append(time.perf_counter() - begin)
    return times


def summary(burst_s: float, times: list[float], hd: float, baseline: list[float], hd_base: float) -> dict[str, Any]:
    median = statistics.median(times)
    return {"burst_s": round(burst_s, 2), "job_median_s": round(median, 3), "job_first_s": round(times[0], 3),
            "overhead_median_s": round(median - statistics.median(baseline), 3),
            "hd_s": round(hd, 2), "hd_overhead_s": round(hd - hd_base, 2)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--burst", type=int, default=12)
    parser.add_argument("--slots", type=int, default=2)
    parser.add_argument("--hd-seconds", type=float, default=4.0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="afx-bench-executors-"))
    config = ServiceConfig(folders=Folders(), base=root, device="cpu")

    def jobs(tag: str) -> tuple[list[WorkItem], WorkItem]:
        burst = [item(config, f"{tag}{i}.wav", seconds=2.0, size=(64, 36), fps=10) for i in range(args.burst)]
        return burst, item(config, f"{tag}-hd.wav", seconds=args.hd_seconds, size=(1280, 720), fps=24)

    burst, hd = jobs("base")
    in_process(burst[:1])  # imports and compiles once, as a warm worker has
    baseline, hd_base = in_process(burst), in_process([hd])[0]
    results: dict[str, Any] = {"machine_cpus": __import__("os").cpu_count(), "burst": args.burst, "slots": args.slots,
                               "in_process": {"job_median_s": round(statistics.median(baseline), 3),
                                              "hd_s": round(hd_base, 2)}}

    local = LocalExecutor(["cpu"] * args.slots)
    burst, hd = jobs("local")
    burst_s, times = run_all(local, burst)
    results["local"] = summary(burst_s, times, run_all(local, [hd])[0], baseline, hd_base)

    from daemon.service.ray_executor import RayExecutor

    ray_config = replace(config, executor=ExecutorSettings(kind="ray", address="local", local_cpus=args.slots))
    started = time.perf_counter()
    executor = RayExecutor(ray_config)
    while not executor.idle():
        time.sleep(0.05)
    results["ray_start_s"] = round(time.perf_counter() - started, 2)
    try:
        burst, hd = jobs("ray")
        burst_s, times = run_all(executor, burst)
        results["ray"] = summary(burst_s, times, run_all(executor, [hd])[0], baseline, hd_base)
    finally:
        executor.close()
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
