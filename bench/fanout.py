"""`websocketFanout`: 1,000 WebSocket clients on their own jobs plus 10 on `all`, at 500 events/s.

The events are synthetic envelopes produced straight to the cluster's Kafka (`started` and
`completed` of jobs that do not exist: the scheduler's projection updates no row), so the rate
is exact and the figure is the notifier's: Kafka → notifier → socket. Delivery = the client's
receive time - the envelope's `occurredAt`, stamped just before the produce (one machine, one
clock). The clients run in two child processes (the 1,000 and the 10), so the load generator's
own event loop does not stand in the notifier's figures; the producer runs here.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiokafka import AIOKafkaProducer

from bench import cluster
from shared import events

QUEUE = "bench-fanout"
TENANT = "default"  # the local runner's key belongs to it


def _kafka() -> tuple[str, str]:
    """Bootstrap servers and topic prefix of the cluster under test (env, else the runner's env file)."""
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        return os.environ["KAFKA_BOOTSTRAP_SERVERS"], os.environ.get("KAFKA_TOPIC_PREFIX", "")
    for home in (Path(tempfile.gettempdir()) / "conveyor-bench", Path(os.environ.get("CONVEYOR_HOME") or
                                                                       cluster.ROOT / ".conveyor")):
        if (home / "env").exists():
            values = cluster.read_env(home / "env")
            if values.get("KAFKA_BOOTSTRAP_SERVERS"):
                return values["KAFKA_BOOTSTRAP_SERVERS"], values.get("KAFKA_TOPIC_PREFIX", "")
    raise RuntimeError("no KAFKA_BOOTSTRAP_SERVERS for the fan-out bench")


def _cpu_of(pid: int | None) -> float:
    """CPU seconds a process used so far (0 for a cluster not found: one at API_URL on another machine)."""
    if pid is None:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _broker_pid(root: int | None) -> int | None:
    """The embedded broker of the cluster the bench started (None for one at API_URL)."""
    if root is None:
        return None
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and b"tansu" in os.readlink(entry / "exe").encode() and \
                    cluster._descends_from(int(entry.name), root):
                return int(entry.name)
        except OSError:
            continue
    return None


def _percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


# ---- the client processes ------------------------------------------------------------------------


async def _client(session: aiohttp.ClientSession, url: str, key: str, subscriptions: list[dict[str, Any]],
                  delays: list[float], ready: asyncio.Event, counter: list[int], stop: asyncio.Event) -> None:
    headers = {"Authorization": f"Bearer {key}"}
    async with session.ws_connect(url, headers=headers, compress=0, autoping=True, timeout=aiohttp.ClientWSTimeout(
            ws_receive=None, ws_close=5)) as ws:
        for sub in subscriptions:
            await ws.send_str(orjson.dumps({"type": "subscribe", **sub}).decode())
            reply = orjson.loads((await ws.receive(timeout=60)).data)
            assert reply["type"] == "subscribed", reply
        counter[0] += 1
        if counter[0] == counter[1]:
            ready.set()
        while not stop.is_set():
            try:
                msg = await ws.receive(timeout=1.0)
            except TimeoutError:
                continue
            now = time.time()
            if msg.type is not aiohttp.WSMsgType.TEXT:
                break
            message = orjson.loads(msg.data)
            if message.get("type", "").startswith("job_"):
                delays.append(now - datetime.fromisoformat(message["occurredAt"]).timestamp())


async def _clients_main(spec: dict[str, Any]) -> None:
    """Child process: connect, say READY on stdout, read until STOP on stdin, print the delays."""
    url = spec["notifierUrl"].replace("http", "ws", 1) + "/ws"
    delays: list[float] = []
    ready, stop = asyncio.Event(), asyncio.Event()
    plans: list[list[dict[str, Any]]] = spec["plans"]
    counter = [0, len(plans)]
    # aiohttp's WebSocket reader is compiled: the client costs the machine less than with `websockets`.
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        tasks = []
        for i, plan in enumerate(plans):
            tasks.append(asyncio.create_task(_client(session, url, spec["key"], plan, delays, ready, counter, stop)))
            if i % 50 == 49:
                await asyncio.sleep(0.05)  # do not flood the accept queue
        await asyncio.wait_for(ready.wait(), 120)
        print("READY", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
    print(json.dumps({"delays": delays}), flush=True)


# ---- the scenario -------------------------------------------------------------------------------


async def _spawn(spec: dict[str, Any]) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.fanout", stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        cwd=cluster.ROOT, env={**os.environ, "FANOUT_SPEC": json.dumps(spec)}, limit=1 << 28)
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 180)
    if line.strip() != b"READY":
        raise RuntimeError(f"a fan-out client process failed to start: {line!r}")
    return proc


async def _finish(proc: asyncio.subprocess.Process) -> list[float]:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(b"STOP\n")
    await proc.stdin.drain()
    out = await asyncio.wait_for(proc.stdout.read(), 120)
    await proc.wait()
    return list(json.loads(out.decode().strip().splitlines()[-1])["delays"])


def _envelope(job: str, n: int) -> tuple[str, bytes, bytes]:
    kind = events.EventType.STARTED if n % 2 == 0 else events.EventType.COMPLETED
    doc = {"eventId": str(uuid.uuid4()), "type": kind.value, "schemaVersion": 1,
           "occurredAt": datetime.now().astimezone().isoformat(), "jobId": job, "queue": QUEUE,
           "jobType": "noop", "attempt": 1, "data": {"n": n}}
    return events.TOPIC_OF[kind], job.encode(), orjson.dumps(doc)


async def websocket_fanout(c: cluster.Cluster, *, clients: int = 1000, watchers: int = 10, rate: int = 500,
                           seconds: float = 20.0, jobs_per_client: int = 2) -> dict[str, Any]:
    """Connect the clients, produce `rate` events/s for `seconds`, then gather the delivery delays."""
    bootstrap, prefix = _kafka()
    notifier_url, key = c.notifier_url, c.api_key
    jobs = [[str(uuid.uuid4()) for _ in range(jobs_per_client)] for _ in range(clients)]
    own = {"notifierUrl": notifier_url, "key": key, "plans": [[{"jobId": j} for j in js] for js in jobs]}
    watching = {"notifierUrl": notifier_url, "key": key, "plans": [[{"all": True}] for _ in range(watchers)]}
    print(f"  connecting {clients} + {watchers} clients ...", flush=True)
    procs = [await _spawn(own), await _spawn(watching)]
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=2, acks=1)
    await producer.start()
    flat = [j for js in jobs for j in js]
    headers = [(events.TENANT_HEADER, TENANT.encode())]
    sent = 0
    root = c.process.pid if c.process is not None else None
    notifier_pid = cluster.service_pids(root).get("notifier")
    broker_pid = _broker_pid(root)
    cpu_before = _cpu_of(notifier_pid), _cpu_of(broker_pid)
    try:
        loop = asyncio.get_running_loop()
        start = loop.time()
        tick = 0.02  # 50 sends a second, rate/50 events each
        while (elapsed := loop.time() - start) < seconds:
            due = int(elapsed * rate) + 1 - sent
            for _ in range(max(0, due)):
                topic, k, value = _envelope(flat[sent % len(flat)], sent)
                await producer.send(events.topic_name(prefix, topic), value, key=k, headers=headers)
                sent += 1
            await asyncio.sleep(tick)
        await producer.flush()
        notifier_cpu, broker_cpu = _cpu_of(notifier_pid) - cpu_before[0], _cpu_of(broker_pid) - cpu_before[1]
        await asyncio.sleep(3)  # let the last ones arrive
        rss = {name: round(cluster.peak_rss_mb(pid), 1) for name, pid in cluster.service_pids(root).items()}
    finally:
        await producer.stop()
        delays_own, delays_all = await _finish(procs[0]), await _finish(procs[1])
    every = sorted(delays_own + delays_all)
    own_sorted, all_sorted = sorted(delays_own), sorted(delays_all)
    ms = 1000
    return {
        "clients": clients + watchers,
        "eventsPerSecond": round(sent / seconds, 1),
        "events": sent,
        "deliveries": {"expected": sent * (1 + watchers), "received": len(every)},
        "deliveryMs": {name: round(_percentile(every, q) * ms, 1) for name, q in
                       (("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("max", 1.0))},
        "ownJobsP99Ms": round(_percentile(own_sorted, 0.99) * ms, 1),
        "allSubscribersP99Ms": round(_percentile(all_sorted, 0.99) * ms, 1),
        "notifierRssMb": rss.get("notifier"),
        # CPU while producing, as a share of one core (the broker's: the producer's and every consumer's).
        "notifierCpuShare": round(notifier_cpu / seconds, 3),
        "brokerCpuShare": round(broker_cpu / seconds, 3),
        "loadAverage": round(os.getloadavg()[0], 2),
    }


if __name__ == "__main__":
    asyncio.run(_clients_main(json.loads(os.environ["FANOUT_SPEC"])))
