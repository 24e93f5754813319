"""`make bench`: start the local cluster, run the scenarios, print and save the figures."""

from __future__ import annotations

import asyncio
import json
import os
import platform
import sys
import threading
import time
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


async def run(c: cluster.Cluster, quick: bool) -> dict[str, Any]:
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
    await asyncio.sleep(10)
    print("end to end (batched submit -> completed) ...", flush=True)
    before = cluster.process_cpu()
    out["endToEnd"] = await scenarios.end_to_end(c.api_url, c.api_key, total=int(30000 * scale))
    out["endToEnd"]["cpuMsPerJob"] = cpu_ms_per_job(before, out["endToEnd"]["jobs"])
    print(f"  {out['endToEnd']}", flush=True)
    # The target rate last: beyond the knee the backlog takes a while to drain.
    for rate, key in ((100, "latencyAt100"), (150, "latencyAt150"), (200, "latency")):
        await asyncio.sleep(5)
        print(f"latency at {rate} jobs/s ...", flush=True)
        before = cluster.process_cpu()
        out[key] = await scenarios.fixed_rate_latency(
            c.api_url, c.notifier_url, c.api_key, rate=rate, seconds=20 * scale
        )
        out[key]["cpuMsPerJob"] = cpu_ms_per_job(before, out[key]["submitted"])
        print(f"  {out[key]}", flush=True)
    return out


def main() -> None:
    quick = "--quick" in sys.argv
    RESULTS.mkdir(exist_ok=True)
    c = cluster.start()
    try:
        with RssSampler() as rss:
            time.sleep(1)
            figures = asyncio.run(run(c, quick))
        figures["peakRssMb"] = rss.peak
    finally:
        c.stop()
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
