"""`make bench`: start the local cluster, run the scenarios, print and save the figures."""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import platform
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import analytics_lag, cluster, control, dashboard, fanout, metrics_routes, scenarios, scheduled, timing
from shared.settings import WorkerSettings

RESULTS = Path(__file__).resolve().parent / "results"


class RssSampler:
    """Samples each service's peak RSS (VmHWM) while the scenarios run."""

    def __init__(self) -> None:
        self.peak: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            for name, pid in cluster.service_pids().items():
                try:
                    self.peak[name] = max(self.peak.get(name, 0.0), round(cluster.peak_rss_mb(pid), 1))
                except OSError:
                    pass

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def cpu_ms_per_job(before: dict[str, float], jobs: int) -> dict[str, float]:
    """Where the time goes: CPU milliseconds per job of each process since `before`."""
    after = cluster.process_cpu()
    return {name: round(1000 * (after[name] - before.get(name, 0.0)) / max(jobs, 1), 3) for name in after}


THROUGHPUT = ("singleSubmissions", "batchedSubmissions", "endToEnd", "endToEndScheduled")
LATENCY_RATES = ((100, "latencyAt100"), (150, "latencyAt150"), (200, "latency"))
SCHEDULING = ("rateLimited", "delayedStartLagMs", "cronFireLagMs", "cancelRunningMs", "crashRecoveryS")
ANALYTICS = ("metricsRoutes", "analyticsLagS")
SCENARIOS = (*THROUGHPUT, *(key for _, key in LATENCY_RATES), *SCHEDULING, *ANALYTICS, "websocketFanout",
             "dashboard")


async def throughput(c: cluster.Cluster, quick: bool, only: frozenset[str]) -> dict[str, Any]:
    """Submission rates and end-to-end jobs/s with batched submission, plain and with scheduling in play."""
    scale = 0.2 if quick else 1.0
    out: dict[str, Any] = {}
    print("warming up ...", flush=True)
    await scenarios.end_to_end(c.api_url, c.api_key, total=1000)
    if "singleSubmissions" in only:
        print("single submissions ...", flush=True)
        out["singleSubmissions"] = await scenarios.single_submissions(c.api_url, c.api_key, seconds=10 * scale)
        print(f"  {out['singleSubmissions']}", flush=True)
        await asyncio.sleep(5)
    if "batchedSubmissions" in only:
        print("batched submissions ...", flush=True)
        out["batchedSubmissions"] = await scenarios.batched_submissions(c.api_url, c.api_key,
                                                                        total=int(20000 * scale))
        print(f"  {out['batchedSubmissions']}", flush=True)
        await asyncio.sleep(5)
    if "endToEnd" in only or "analyticsLagS" in only:
        print("end to end (batched submit -> completed) ...", flush=True)
        before = cluster.process_cpu()
        async with metrics_routes.LagSampler().sampling() as lag:  # analyticsLagS: sampled meanwhile
            began = time.monotonic()
            out["endToEnd"] = await scenarios.end_to_end(c.api_url, c.api_key, total=int(30000 * scale))
        out["analyticsLagS"] = lag.figures(split_at=began + out["endToEnd"]["submitSeconds"])
        out["endToEnd"]["cpuMsPerJob"] = cpu_ms_per_job(before, out["endToEnd"]["jobs"])
        print(f"  {out['endToEnd']}\n  analyticsLagS: {out['analyticsLagS']}", flush=True)
        await asyncio.sleep(5)
    if "analyticsLagS" in only and out["analyticsLagS"].get("available", True):
        # The target's own measure ("keeps up with the worker's peak event rate"): the workers
        # draining a released backlog. The figure during endToEnd (the api's submission burst on
        # top, about three times the workers' event rate) stays beside it as `duringEndToEnd`.
        print("analytics lag at the workers' peak pace (a backlog released at once) ...", flush=True)
        peak = await scheduled.guarded("analyticsLagS", analytics_lag.worker_peak(c, int(30000 * scale)))
        out["analyticsLagS"] = {**peak, "duringEndToEnd": out["analyticsLagS"]} if "p99" in peak else {
            **out["analyticsLagS"], "workerPeak": peak}
        print(f"  analyticsLagS: {out['analyticsLagS']}", flush=True)
        await asyncio.sleep(5)
    if "endToEndScheduled" in only:
        print("end to end with priorities, fairness and rate keys, fan-ins ...", flush=True)
        out["endToEndScheduled"] = await scheduled.guarded("endToEndScheduled", _end_to_end_scheduled(c, scale))
        plain, sched = out.get("endToEnd", {}), out["endToEndScheduled"]
        if plain.get("jobsPerSecond") and sched.get("jobsPerSecond"):
            sched["relativeToEndToEnd"] = round(sched["jobsPerSecond"] / plain["jobsPerSecond"], 3)
        print(f"  {sched}", flush=True)
    return out


async def _end_to_end_scheduled(c: cluster.Cluster, scale: float) -> dict[str, Any]:
    await scheduled.prepare_scheduled(c.api_url, c.api_key)
    before = cluster.process_cpu()
    out = await scenarios.end_to_end(c.api_url, c.api_key, total=int(30000 * scale),
                                     jobs_for=scheduled.scheduled_jobs)
    out["cpuMsPerJob"] = cpu_ms_per_job(before, out["jobs"])
    return out


async def latency(c: cluster.Cluster, rate: int, quick: bool) -> dict[str, Any]:
    """Single submissions at a fixed rate: latency and CPU per job."""
    await scenarios.end_to_end(c.api_url, c.api_key, total=500)  # warm up connections and caches
    await asyncio.sleep(3)
    print(f"latency at {rate} jobs/s ...", flush=True)
    before = cluster.process_cpu()
    out = await scenarios.fixed_rate_latency(c.api_url, c.notifier_url, c.api_key, rate=rate,
                                             seconds=20 * (0.5 if quick else 1.0))
    out["cpuMsPerJob"] = cpu_ms_per_job(before, out["submitted"])
    print(f"  {out}", flush=True)
    return out


def lease_ms() -> int:
    """The worker's lease TTL: LEASE_MS as the services of a bench cluster inherit it, else their default."""
    return int(os.environ.get("LEASE_MS") or WorkerSettings.model_fields["lease_ms"].default)


async def scheduling(c: cluster.Cluster, quick: bool, only: frozenset[str]) -> dict[str, Any]:
    """Rate limit, delayed and cron start lag, cancel of a running job, crash recovery. The cron scenario
    mostly waits for the next minute boundary, so it runs beside the others."""
    url, key = c.api_url, c.api_key
    await scenarios.end_to_end(url, key, total=500)  # warm up connections and caches
    out: dict[str, Any] = {}
    cron = None
    if "cronFireLagMs" in only:
        print("cron fire lag (waits for the next minute; runs beside the others) ...", flush=True)
        cron = asyncio.create_task(scheduled.guarded(
            "cronFireLagMs", timing.cron_fire_lag(url, key, schedules=10 if quick else 30)))
    steps: list[tuple[str, Callable[[], Awaitable[dict[str, Any]]]]] = [
        ("rateLimited", lambda: timing.rate_limited(url, key, seconds=4 if quick else 8)),
        ("delayedStartLagMs", lambda: timing.delayed_start_lag(url, key, jobs=100 if quick else 300)),
        ("cancelRunningMs", lambda: control.cancel_running(url, key, jobs=10 if quick else 20)),
        ("crashRecoveryS", lambda: control.crash_recovery(url, key, cluster.worker_killer(c), lease_ms(),
                                                          jobs=5 if quick else 10)),
    ]
    for name, step in steps:
        if name in only:
            print(f"{name} ...", flush=True)
            out[name] = await scheduled.guarded(name, step())
            print(f"  {out[name]}", flush=True)
    if cron is not None:
        out["cronFireLagMs"] = await cron
        print(f"  cronFireLagMs: {out['cronFireLagMs']}", flush=True)
    return out


def run_all(quick: bool, only: frozenset[str]) -> dict[str, Any]:
    """The scenarios in `only`: each latency rate, and the scheduling scenarios, on a cluster of its own,
    started empty."""
    figures: dict[str, Any] = {}
    given = cluster.external()
    home = Path(tempfile.gettempdir()) / "conveyor-bench"

    def on_cluster(run: Callable[[cluster.Cluster], Coroutine[Any, Any, dict[str, Any]]]) -> dict[str, Any]:
        if given is not None:
            return asyncio.run(run(given))
        with cluster.fresh(home) as c:
            return asyncio.run(run(c))

    if only & {*THROUGHPUT, "analyticsLagS"}:
        figures.update(on_cluster(lambda c: throughput(c, quick, only)))
    for rate, key in LATENCY_RATES:
        if key in only:
            figures[key] = on_cluster(functools.partial(latency, rate=rate, quick=quick))
    if only & set(SCHEDULING):
        figures.update(on_cluster(lambda c: scheduling(c, quick, only)))
    if "metricsRoutes" in only:  # its own cluster: a million jobs of history would weigh on the others
        figures["metricsRoutes"] = on_cluster(lambda c: metrics_routes.metrics_routes(c, home, quick))
    if "websocketFanout" in only:  # a cluster of its own: its broker holds only the fan-out's events
        print("websocket fan-out (1,000 + 10 clients, 500 events/s) ...", flush=True)
        figures["websocketFanout"] = on_cluster(lambda c: fanout.websocket_fanout(c, seconds=10 if quick else 30))
        print(f"  {figures['websocketFanout']}", flush=True)
    if "dashboard" in only:  # its own cluster too: it seeds a million jobs after the live figures
        print("dashboard in chromium ...", flush=True)
        figures["dashboard"] = on_cluster(lambda c: dashboard.dashboard(c, home, quick))
    return figures


def _only(raw: list[str]) -> frozenset[str]:
    names = {name.strip() for arg in raw for name in arg.split(",") if name.strip()}
    unknown = names - set(SCENARIOS)
    if unknown:
        raise SystemExit(f"unknown scenario(s) {sorted(unknown)}; known: {', '.join(SCENARIOS)}")
    return frozenset(names)


def main(argv: list[str] | None = None) -> None:
    """Run every scenario, print the figures and save them under bench/results/."""
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__,
        epilog="With API_URL (and NOTIFIER_URL) set, runs against that cluster; its key comes from "
               "CONVEYOR_API_KEY, or from the env file `make dev` writes (.conveyor/env, or $CONVEYOR_HOME/env).",
    )
    parser.add_argument("--quick", action="store_true", help="shorter scenarios (a smoke run, not figures)")
    parser.add_argument("--only", action="append", default=[], metavar="NAME[,NAME]",
                        help=f"run only these scenarios (the rest are skipped, latest.json is left as it is); "
                             f"one of: {', '.join(SCENARIOS)}")
    args = parser.parse_args(argv)
    quick: bool = args.quick
    only = _only(args.only)
    RESULTS.mkdir(exist_ok=True)
    with RssSampler() as rss:
        figures = run_all(quick, only or frozenset(SCENARIOS))
    figures["peakRssMb"] = rss.peak
    report = {
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "quick": quick,
        **({"only": sorted(only)} if only else {}),
        **figures,
    }
    text = json.dumps(report, indent=2)
    print(text)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    (RESULTS / f"{stamp}.json").write_text(text + "\n")
    if not only:
        (RESULTS / "latest.json").write_text(text + "\n")


if __name__ == "__main__":
    main()
