"""Sends due webhook deliveries: signed per try, bounded concurrency and time, retried with backoff.

Any replica sends any delivery: rows are claimed with FOR UPDATE SKIP LOCKED under a lease longer
than a request may take, and each try is recorded on its row. The backoff is computed from the
try number (no state between tries), so `shared.backoff.Backoff`, which keeps its state in the
loop that sleeps, does not fit; the full-jitter formula is three lines.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx

from services.notifier.settings import NotifierServiceSettings
from services.notifier.store import webhooks as store
from shared import webhooks
from shared.waiting import unless

log = logging.getLogger(__name__)

# A claim lasts this much longer than the request timeout: the try is recorded before it ends.
_LEASE_MARGIN_S = 30.0
_USER_AGENT = "Conveyor-Webhooks/1"


def retry_delay(tries: int, base_s: float, max_s: float) -> float:
    """Full jitter: uniform in [0, min(max_s, base_s * 2^(tries-1))] after `tries` failed tries."""
    return random.uniform(0.0, min(max_s, base_s * 2 ** max(tries - 1, 0)))


class WebhookSender:
    """`run()` until `stop()`: claims what is due (as many as free slots), sends each in its own task."""

    def __init__(self, pool: asyncpg.Pool, settings: NotifierServiceSettings) -> None:
        self._pool = pool
        self._s = settings
        self._slots = asyncio.Semaphore(settings.webhook_concurrency)
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._in_flight: set[asyncio.Task[None]] = set()
        self._lease_s = settings.webhook_timeout_s + _LEASE_MARGIN_S

    def wake(self) -> None:
        """New deliveries were stored: look for due ones now rather than at the next poll."""
        self._wake.set()

    def stop(self) -> None:
        """Claim nothing more; `run()` returns once the tries under way are recorded."""
        self._stopping.set()

    async def run(self) -> None:
        """The claim loop; its sends are tasks it owns (awaited on stop, cancelled with it)."""
        timeout = httpx.Timeout(self._s.webhook_timeout_s)
        limits = httpx.Limits(max_connections=self._s.webhook_concurrency)
        async with httpx.AsyncClient(timeout=timeout, limits=limits, follow_redirects=False,
                                     headers={"User-Agent": _USER_AGENT}) as client:
            try:
                await self._claim_loop(client)
            finally:
                if self._in_flight:
                    await asyncio.gather(*self._in_flight, return_exceptions=True)

    async def _claim_loop(self, client: httpx.AsyncClient) -> None:
        while not self._stopping.is_set():
            self._wake.clear()
            free = self._s.webhook_concurrency - len(self._in_flight)
            try:
                due = await store.claim_due(self._pool, free, self._lease_s)
            except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as exc:
                log.warning("webhooks: cannot claim due deliveries: %r", exc)
                due = []
            for delivery in due:
                await self._slots.acquire()  # never blocks: at most `free` rows were claimed
                task = asyncio.create_task(self._send(client, delivery), name=f"webhook-{delivery.id}")
                self._in_flight.add(task)
                task.add_done_callback(self._done)
            if len(due) == free and free > 0:
                continue  # more may be due: claim again at once
            # Woken by new deliveries, a freed slot, or the poll interval (retries, other replicas' rows).
            await unless(self._stopping, _wait(self._wake, self._s.webhook_poll_s))

    def _done(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        self._slots.release()
        self._wake.set()
        if not task.cancelled() and task.exception() is not None:
            log.error("webhooks: a send failed unexpectedly", exc_info=task.exception())

    async def _send(self, client: httpx.AsyncClient, delivery: store.DueDelivery) -> None:
        attempt, ok = await self._try(client, delivery)
        tries = delivery.tries + 1
        if ok:
            state, retry_in = "delivered", 0.0
        elif tries >= self._s.webhook_max_attempts:
            state, retry_in = "failed", 0.0
        else:
            state = "pending"
            retry_in = retry_delay(tries, self._s.webhook_retry_base_s, self._s.webhook_retry_max_s)
        try:
            recorded = await store.record_try(self._pool, delivery, attempt, state, retry_in)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as exc:
            # The lease runs out and the delivery is tried again: at least once, never lost.
            log.warning("webhooks: cannot record try %d of %s: %r", tries, delivery.id, exc)
            return
        if not recorded:
            log.warning("webhooks: try %d of %s was recorded by another sender", tries, delivery.id)
        elif state == "failed":
            log.warning("webhooks: delivery %s to %s failed after %d tries", delivery.id, delivery.url, tries)

    async def _try(self, client: httpx.AsyncClient, delivery: store.DueDelivery) -> tuple[dict[str, Any], bool]:
        """One signed POST; its record `{at, status, error?, durationMs}` and whether it was a 2xx."""
        secret = await webhooks.ensure_secret(self._pool, delivery.tenant)
        body = delivery.body.encode()
        now = time.time()
        headers = {
            "Content-Type": "application/json",
            webhooks.EVENT_HEADER: delivery.event_type,
            webhooks.DELIVERY_HEADER: str(delivery.id),
            webhooks.SIGNATURE_HEADER: webhooks.signature(secret, int(now), body),
        }
        record: dict[str, Any] = {"at": datetime.fromtimestamp(now, UTC).isoformat(), "status": None}
        started = time.perf_counter()
        try:
            response = await client.post(delivery.url, content=body, headers=headers)
            record["status"] = response.status_code
            if not response.is_success:
                record["error"] = f"HTTP {response.status_code}"
        except httpx.TimeoutException:
            record["error"] = f"no answer within {self._s.webhook_timeout_s:g} s"
        except httpx.HTTPError as exc:
            record["error"] = f"{type(exc).__name__}: {exc}"[:500]
        record["durationMs"] = round((time.perf_counter() - started) * 1000)
        return record, record["status"] is not None and 200 <= record["status"] < 300


async def _wait(event: asyncio.Event, timeout_s: float) -> None:
    try:
        await asyncio.wait_for(event.wait(), timeout=timeout_s)
    except TimeoutError:
        pass
