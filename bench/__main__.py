"""`make bench`: start the local cluster, run the scenarios, print and save the figures."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import tempfile
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import cluster, scenarios

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


async def throughput(c: cluster.Cluster, quick: bool) -> dict[str, Any]:
    """Submission rates and end-to-end jobs/s with batched submission."""
    scale = 0.2 if quick else 1.0
    out: dict[str, Any] = {}
    print("warming up ...", flush=True)
    await scenarios.end_to_end(c.api_url, c.api_key, total=1000)
    print("single submissions ...", flush=True)
    out["singleSubmissions"] = await scenarios.single_submissions(c.api_url, c.api_key, seconds=10 * scale)
    print(f"  {out['singleSubmissions']}", flush=True)
    await asyncio.sleep(5)
    print("batched submissions ...", flush=True)
    out["batchedSubmissions"] = await scenarios.batched_submissions(c.api_url, c.api_key, total=int(20000 * scale))
    print(f"  {out['batchedSubmissions']}", flush=True)
    await asyncio.sleep(5)
    print("end to end (batched submit -> completed) ...", flush=True)
    before = cluster.process_cpu()
    out["endToEnd"] = await scenarios.end_to_end(c.api_url, c.api_key, total=int(30000 * scale))
    out["endToEnd"]["cpuMsPerJob"] = cpu_ms_per_job(before, out["endToEnd"]["jobs"])
    print(f"  {out['endToEnd']}", flush=True)
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


LATENCY_RATES = ((100, "latencyAt100"), (150, "latencyAt150"), (200, "latency"))


def run_all(quick: bool) -> dict[str, Any]:
    """Every scenario; each latency rate on a cluster of its own, started empty."""
    given = cluster.external()
    if given is not None:
        figures = asyncio.run(throughput(given, quick))
        for rate, key in LATENCY_RATES:
            figures[key] = asyncio.run(latency(given, rate, quick))
        return figures
    home = Path(tempfile.gettempdir()) / "conveyor-bench"
    with cluster.fresh(home) as c:
        figures = asyncio.run(throughput(c, quick))
    for rate, key in LATENCY_RATES:
        with cluster.fresh(home) as c:
            figures[key] = asyncio.run(latency(c, rate, quick))
    return figures


def main(argv: list[str] | None = None) -> None:
    """Run every scenario, print the figures and save them under bench/results/."""
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__,
        epilog="With API_URL (and NOTIFIER_URL) set, runs against that cluster; its key comes from "
               "CONVEYOR_API_KEY, or from the env file `make dev` writes (.conveyor/env, or $CONVEYOR_HOME/env).",
    )
    parser.add_argument("--quick", action="store_true", help="shorter scenarios (a smoke run, not figures)")
    quick: bool = parser.parse_args(argv).quick
    RESULTS.mkdir(exist_ok=True)
    with RssSampler() as rss:
        figures = run_all(quick)
    figures["peakRssMb"] = rss.peak
    report = {
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "quick": quick,
        **figures,
    }
    text = json.dumps(report, indent=2)
    print(text)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    (RESULTS / f"{stamp}.json").write_text(text + "\n")
    (RESULTS / "latest.json").write_text(text + "\n")


if __name__ == "__main__":
    main()
