"""A client that stops reading is cut off (4008, DESIGN §7) while the others keep getting every event."""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import time
import uuid
from datetime import datetime

import pytest
from prometheus_client import REGISTRY
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from shared.events import EventType
from shared.kafka.producer import EventProducer
from tests.fixtures.polling import eventually
from tests.integration.notifier.conftest import NotifierFactory
from tests.integration.notifier.helpers import client, job_event, recv, request

BATCH = 100
MAX_EVENTS = 10_000


def pad() -> str:
    """8 KB that permessage-deflate cannot shrink: big messages fill the socket buffers quickly."""
    return base64.b64encode(os.urandom(6000)).decode()


def _slow_disconnects() -> float:
    return REGISTRY.get_sample_value("conveyor_notifier_slow_disconnects_total") or 0.0


async def _tiny_socket(port: int) -> socket.socket:
    """A connected socket with a small receive buffer, so a client that reads nothing stalls soon."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    return sock


async def test_a_slow_client_is_disconnected_and_the_fast_one_gets_everything(
    start_notifier: NotifierFactory, producer: EventProducer
) -> None:
    slow_before = _slow_disconnects()
    # No key: auth off explicitly (allowed on the loopback host).
    async with start_notifier(client_buffer=32, auth_required=False) as notifier:
        port = notifier._settings.notifier_port
        sock = await _tiny_socket(port)
        async with client(notifier, sock=sock, max_queue=1) as slow, client(notifier) as fast:
            assert await request(slow, {"type": "subscribe", "all": True}) == {"type": "subscribed", "all": True}
            assert await request(fast, {"type": "subscribe", "queue": "bulk"}) == {
                "type": "subscribed", "queue": "bulk"}

            sent: set[str] = set()
            seen: set[str] = set()

            async def read_forever() -> None:
                while True:
                    seen.add((await recv(fast, 30))["eventId"])

            reader = asyncio.create_task(read_forever())
            try:
                # Kernel socket buffers (megabytes on loopback) absorb a lot before the server's
                # own buffer fills: keep producing until the slow client is cut off.
                while not _slow_disconnects() > slow_before:
                    assert len(sent) < MAX_EVENTS, "the slow client was never disconnected"
                    batch = [job_event(EventType.STARTED, uuid.uuid4(), queue="bulk", pad=pad()) for _ in range(BATCH)]
                    await producer.publish_events(batch)
                    sent.update(str(e.event_id) for e in batch)
                    await asyncio.sleep(0.2)  # pacing, not a wait: the fast client keeps up between batches

                def fast_client_has_all() -> bool:
                    assert not reader.done(), reader
                    return seen >= sent

                await eventually(fast_client_has_all, timeout_s=60)
            finally:
                reader.cancel()
            assert seen == sent

            # The slow client now reads what had reached it, then the close frame.
            with pytest.raises(ConnectionClosed) as info:
                for _ in range(MAX_EVENTS + 10):
                    await asyncio.wait_for(slow.recv(), 20)
            assert info.value.rcvd is not None
            assert info.value.rcvd.code == 4008
            assert info.value.rcvd.reason == "too slow: fell too far behind the event stream; reconnect with since"
            assert len(notifier.hub) == 1
    assert _slow_disconnects() == slow_before + 1


def _rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


async def test_a_client_that_never_reads_does_not_delay_the_others(
    start_notifier: NotifierFactory, producer: EventProducer
) -> None:
    """Live clients keep p99 < 250 ms event-to-client while a stuck one fills up and is cut off; buffers
    stay bounded, memory flat. Default fetch settings: what a deployment gets."""
    slow_before = _slow_disconnects()
    async with start_notifier(client_buffer=64, auth_required=False) as notifier:
        sock = await _tiny_socket(notifier._settings.notifier_port)
        async with client(notifier, sock=sock, max_queue=1) as stuck, \
                client(notifier) as a, client(notifier) as b, client(notifier) as c:
            await request(stuck, {"type": "subscribe", "all": True})
            for ws in (a, b, c):
                await request(ws, {"type": "subscribe", "queue": "live"})
            delays: list[float] = []

            async def read(ws: ClientConnection) -> None:
                while True:
                    message = await recv(ws, 30)
                    delays.append(time.time() - datetime.fromisoformat(message["occurredAt"]).timestamp())

            readers = [asyncio.create_task(read(ws)) for ws in (a, b, c)]
            rss: list[float] = []
            sent = 0
            try:
                loop = asyncio.get_running_loop()
                end = loop.time() + 8
                while loop.time() < end or not _slow_disconnects() > slow_before:
                    assert loop.time() < end + 30, "the stuck client was never disconnected"
                    bulk = [job_event(EventType.STARTED, uuid.uuid4(), queue="bulk", pad=pad()) for _ in range(5)]
                    await producer.publish_events([*bulk, job_event(EventType.STARTED, uuid.uuid4(), queue="live")])
                    sent += 1
                    held = sum(len(sub.buffer) for sub in notifier.hub._subscribers)
                    assert held <= 4 * 64, held  # every buffer bounded
                    rss.append(_rss_mb())
                    await asyncio.sleep(0.02)
                await eventually(lambda: len(delays) == 3 * sent, timeout_s=15)
            finally:
                for reader in readers:
                    reader.cancel()
            delays.sort()
            p99 = delays[int(len(delays) * 0.99) - 1]
            assert p99 < 0.25, f"p99 {p99 * 1000:.0f} ms, max {delays[-1] * 1000:.0f} ms over {len(delays)}"
            half = len(rss) // 2
            assert max(rss[half:]) - max(rss[:half]) < 40, (rss[0], max(rss[:half]), max(rss[half:]))
            assert len(notifier.hub) == 3
