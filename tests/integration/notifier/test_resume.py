"""Resume after a disconnect (DESIGN §7): `since` / `Last-Event-ID` miss nothing and repeat nothing."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg
import httpx

from services.analytics.recorder import EventRecorder
from services.analytics.service import AnalyticsService
from services.notifier.service import NotifierService
from shared.events import Envelope
from shared.kafka.producer import EventProducer
from shared.settings import AnalyticsSettings
from tests.fixtures.polling import eventually, poll_until
from tests.fixtures.resources import SettingsFactory
from tests.integration.notifier.conftest import NotifierFactory
from tests.integration.notifier.helpers import (
    assert_quiet,
    client,
    http_url,
    mixed_events,
    recv,
    recv_until,
    request,
    sse_events,
)

QUEUE = "resume"


async def _stream(producer: EventProducer, events: list[Envelope], sent: list[Envelope]) -> None:
    """Publish a running stream: small mixed batches (its queue's and another's) while clients come and go."""
    for i in range(0, len(events), 8):
        batch = events[i:i + 8]
        await producer.publish_events(batch)
        sent.extend(batch)
        await asyncio.sleep(0.02)


def _ids(messages: list[dict[str, Any]]) -> list[str]:
    return [m["eventId"] for m in messages]


async def test_websocket_resume_with_since_misses_nothing_and_repeats_nothing(
    notifier: NotifierService, producer: EventProducer
) -> None:
    events = [e for pair in zip(mixed_events(QUEUE, 400), mixed_events("noise", 400), strict=True) for e in pair]
    sent: list[Envelope] = []
    async with client(notifier) as ws:
        assert await request(ws, {"type": "subscribe", "queue": QUEUE}) == {"type": "subscribed", "queue": QUEUE}
        stream = asyncio.create_task(_stream(producer, events, sent))
        before = [await recv(ws) for _ in range(60)]
    await asyncio.sleep(0.5)  # the stream goes on while the client is away
    since = before[-1]["eventId"]
    async with client(notifier) as ws:
        reply = await request(ws, {"type": "subscribe", "queue": QUEUE, "since": since})
        assert (reply["type"], reply["queue"], reply["since"]) == ("subscribed", QUEUE, since)
        assert reply["replayed"] > 0
        await stream
        want = {str(e.event_id) for e in sent if e.queue == QUEUE}
        after = await recv_until(ws, lambda got: len(before) + len(got) >= len(want), timeout_s=30)
        await assert_quiet(ws, 1.0)
    got = _ids(before + after)
    assert len(got) == len(set(got)), "a message came twice"
    assert set(got) == want


async def test_sse_resume_with_last_event_id_misses_nothing_and_repeats_nothing(
    notifier: NotifierService, producer: EventProducer
) -> None:
    events = mixed_events(QUEUE, 300)
    sent: list[Envelope] = []
    before: list[dict[str, Any]] = []
    async with httpx.AsyncClient(base_url=http_url(notifier), timeout=httpx.Timeout(10, read=30)) as http:
        async with http.stream("GET", "/sse", params={"queue": QUEUE}) as response:
            reading = sse_events(response)
            assert (await anext(reading))[2] == {"type": "subscribed", "queue": QUEUE}
            stream = asyncio.create_task(_stream(producer, events, sent))
            while len(before) < 50:
                event_id, kind, message = await asyncio.wait_for(anext(reading), 15)
                assert (event_id, kind) == (message["eventId"], message["type"])  # DESIGN §7: id: and event:
                before.append(message)
        await asyncio.sleep(0.5)
        headers = {"Last-Event-ID": before[-1]["eventId"]}
        async with http.stream("GET", "/sse", params={"queue": QUEUE}, headers=headers) as response:
            reading = sse_events(response)
            _, _, reply = await anext(reading)
            assert (reply["type"], reply["since"]) == ("subscribed", before[-1]["eventId"])
            await stream
            after: list[dict[str, Any]] = []
            while len(before) + len(after) < len(sent):
                after.append((await asyncio.wait_for(anext(reading), 15))[2])
            quiet = asyncio.ensure_future(anext(reading))
            done, _ = await asyncio.wait({quiet}, timeout=1.0)
            quiet.cancel()
            assert not done, "a message beyond the stream arrived"
    got = _ids(before + after)
    assert len(got) == len(set(got))
    assert set(got) == {str(e.event_id) for e in sent}


async def test_an_unknown_since_is_an_error_and_the_connection_stays(notifier: NotifierService) -> None:
    stranger = str(uuid.uuid4())
    async with client(notifier) as ws:
        reply = await request(ws, {"type": "subscribe", "queue": QUEUE, "since": stranger})
        assert (reply["type"], reply["code"], reply["since"]) == ("error", "unknown_since", stranger)
        assert "subscribe without since" in reply["message"]
        assert (await request(ws, {"type": "subscribe", "queue": QUEUE, "since": "nope"}))["type"] == "error"
        assert await request(ws, {"type": "ping"}) == {"type": "pong"}
        assert await request(ws, {"type": "subscribe", "queue": QUEUE}) == {"type": "subscribed", "queue": QUEUE}
    async with (
        httpx.AsyncClient(base_url=http_url(notifier), timeout=httpx.Timeout(10, read=15)) as http,
        http.stream("GET", "/sse", params={"queue": QUEUE}, headers={"Last-Event-ID": stranger}) as response,
    ):
        # An EventSource would reconnect with the same id after a refusal: an error event, then live.
        reading = sse_events(response)
        assert (await anext(reading))[1:] == ("error", (await _error_of(stranger)))
        assert (await anext(reading))[2] == {"type": "subscribed", "queue": QUEUE}


async def _error_of(since: str) -> dict[str, Any]:
    return {"type": "error", "code": "unknown_since", "since": since, "message": (
        "this event is neither among the notifier's recent events nor in the audit log (too old, or not an "
        "event): subscribe without since and reload the state")}


async def test_resume_on_another_replica_reads_the_audit_log_and_its_own_recent_events(
    start_notifier: NotifierFactory, producer: EventProducer, db_pool: asyncpg.Pool,
    service_settings: SettingsFactory,
) -> None:
    """The ring of a fresh replica does not hold `since`: what the audit log holds, then what analytics
    has not written yet (it is stopped) from the replica's ring; one ordered, duplicate-free stream."""
    analytics = AnalyticsService(service_settings(AnalyticsSettings, drain_timeout_s=30.0))
    await analytics.start()
    # One event at a time: Kafka's order is the order they happened, which the audit log replays in.
    first, second = mixed_events(QUEUE, 40), mixed_events(QUEUE, 30)
    try:
        async with start_notifier(auth_required=False) as one, client(one) as ws:
            await request(ws, {"type": "subscribe", "queue": QUEUE})
            for event in first:
                await producer.publish_events([event])
            before = [await recv(ws) for _ in range(15)]
        ids = [e.event_id for e in first]
        recorded = "SELECT count(*) FROM job_events WHERE event_id = ANY($1::uuid[])"

        async def all_recorded() -> bool:
            return int(await db_pool.fetchval(recorded, ids)) == len(ids)

        await poll_until(all_recorded, timeout_s=30, every_s=0.2)
    finally:
        await analytics.stop()
    async with start_notifier(auth_required=False) as two:
        for event in second:  # not in the audit log: analytics is down
            await producer.publish_events([event])
        await eventually(lambda: str(second[-1].event_id) in two.hub.ring, timeout_s=15)
        async with client(two) as ws:
            reply = await request(ws, {"type": "subscribe", "queue": QUEUE, "since": before[-1]["eventId"]})
            assert reply["replayed"] == len(first) + len(second) - len(before)
            after = [await recv(ws) for _ in range(reply["replayed"])]
            await assert_quiet(ws, 0.5)
    got = _ids(before + after)
    assert got == [str(e.event_id) for e in first + second]  # all, once, in the order they happened


async def test_a_resume_in_a_replicas_first_seconds_waits_for_the_audit_log_to_catch_up(
    start_notifier: NotifierFactory, producer: EventProducer, db_pool: asyncpg.Pool
) -> None:
    """An event from just before a replica began reading is in neither its ring nor, for a moment, the
    audit log: a client resuming through it then must wait for analytics, not skip the event."""
    seen, missed = mixed_events(QUEUE, 2)
    recorder = EventRecorder(db_pool)
    await recorder.record([seen])  # what the client saw last: long recorded
    await producer.publish_events([missed])  # before the replica starts: never in its ring

    async def analytics_a_second_late() -> None:
        await asyncio.sleep(1.0)  # the behaviour under test: the audit log is a second behind the stream
        await recorder.record([missed])

    async with start_notifier(auth_required=False) as fresh:
        late = asyncio.create_task(analytics_a_second_late())
        try:
            async with client(fresh) as ws:
                reply = await request(ws, {"type": "subscribe", "queue": QUEUE, "since": str(seen.event_id)})
                assert (reply["type"], reply["replayed"]) == ("subscribed", 1)
                assert (await recv(ws))["eventId"] == str(missed.event_id)
                await assert_quiet(ws, 0.5)
        finally:
            await late
