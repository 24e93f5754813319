"""The event ring, resuming from it, batch routing and queue_stats, without a server."""

from __future__ import annotations

import uuid

import orjson
import pytest

from services.notifier.buffer import ClientBuffer
from services.notifier.hub import Hub, Subscriber
from services.notifier.messages import Delivery, job_delivery
from services.notifier.protocol import ALL, Target, TargetKind
from services.notifier.resume import Limits, Opening, ResumeRefused, open_subscription
from services.notifier.ring import EventRing
from services.notifier.stats import QueueStats
from shared.events import Envelope, EventType

LIMITS = Limits(max_replay=100, max_batch_jobs=100, timeout_s=1.0)


def event(queue: str = "q", tenant: str = "default", kind: EventType = EventType.STARTED,
          job: uuid.UUID | None = None, **data: object) -> Delivery:
    return job_delivery(Envelope(type=kind, job_id=job or uuid.uuid4(), queue=queue, job_type="t", tenant=tenant,
                                 data=data))


def drain(sub: Subscriber) -> list[dict[str, object]]:
    return [orjson.loads(t) for t in sub.buffer.take(1000)]


def test_the_ring_keeps_the_newest_in_order_and_forgets_the_evicted() -> None:
    ring = EventRing(3)
    ds = [event() for _ in range(5)]
    for d in ds:
        assert ring.add(d)
    assert not ring.add(ds[4])  # already delivered
    assert len(ring) == 3 and ring.first_seq == 2
    assert (ds[0].event_id or "") not in ring and ring.seq_of(ds[3].event_id or "") == 3
    assert list(ring.since(2)) == ds[3:] and list(ring.since(-1)) == ds[2:]
    assert ring.at(1) is None and ring.at(4) is ds[4]


def test_last_event_for_a_tenant_includes_events_for_everyone() -> None:
    ring = EventRing(10)
    mine, theirs = event(), event(tenant="other")
    ring.add(mine)
    ring.add(theirs)
    assert ring.last_event_for("default") == mine.event_id
    everyone = Delivery(kind="alert", text="{}", tenant=None, event_id="alert-1")
    ring.add(everyone)
    assert ring.last_event_for("default") == "alert-1" == ring.last_event_for("other")


def test_the_hub_drops_a_redelivered_event() -> None:
    hub = Hub(buffer_size=10, max_subscriptions=10)
    sub = hub.connect("default", "ws")
    hub.subscribe(sub, [ALL])
    d = event()
    hub.deliver(d)
    hub.deliver(d)
    assert len(drain(sub)) == 1


def test_resume_from_the_ring_replays_exactly_what_came_after_since() -> None:
    hub = Hub(buffer_size=4, max_subscriptions=10)
    ds = [event(queue="q" if i % 2 else "other") for i in range(12)] + [event(queue="q", tenant="x")]
    for d in ds:
        hub.deliver(d)
    sub = hub.connect("default", "ws")
    since = ds[5].event_id
    reply = open_subscription(hub, sub, Opening((Target(TargetKind.QUEUE, "q"),), since), LIMITS)
    assert reply == {"type": "subscribed", "queue": "q", "since": since, "replayed": 3}
    later = event(queue="q")
    hub.deliver(later)  # live, right after the replay (the buffer's limit counts above the replay)
    got = drain(sub)
    assert [m.get("eventId") for m in got[1:]] == [ds[7].event_id, ds[9].event_id, ds[11].event_id, later.event_id]


def test_resume_refuses_another_tenants_event_and_too_long_replays() -> None:
    hub = Hub(buffer_size=4, max_subscriptions=10)
    foreign = event(tenant="other")
    hub.deliver(foreign)
    sub = hub.connect("default", "ws")
    with pytest.raises(ResumeRefused) as refused:
        open_subscription(hub, sub, Opening((ALL,), foreign.event_id), LIMITS)
    assert refused.value.code == "unknown_since"
    ds = [event() for _ in range(5)]
    for d in ds:
        hub.deliver(d)
    with pytest.raises(ResumeRefused) as too_old:
        open_subscription(hub, sub, Opening((ALL,), ds[0].event_id), Limits(3, 10, 1.0))
    assert too_old.value.code == "since_too_old"
    assert sub.subscription_count == 0  # nothing half-done


def test_a_batch_subscriber_gets_its_jobs_and_batch_completed() -> None:
    hub = Hub(buffer_size=10, max_subscriptions=10)
    sub = hub.connect("default", "ws")
    job, other = uuid.uuid4(), uuid.uuid4()
    hub.subscribe(sub, [Target(TargetKind.BATCH, "b1")], {"b1": frozenset({str(job)})})
    hub.deliver(event(job=job))
    hub.deliver(event(job=other))
    hub.deliver(Delivery(kind="batch_completed", text='{"type":"batch_completed"}', tenant="default",
                         batch_id="b1", event_id="e"))
    assert [m["type"] for m in drain(sub)] == ["job_update", "batch_completed"]
    hub.unsubscribe(sub, [Target(TargetKind.BATCH, "b1")])
    assert not hub._by_batch and not hub._by_batch_job


def test_replays_do_not_count_against_the_buffer_limit() -> None:
    buffer = ClientBuffer(2)
    buffer.extend(["a", "b", "c", "d"])
    assert buffer.put("live-1") and buffer.put("live-2")
    assert not buffer.put("live-3")  # the limit still holds for live messages
    assert buffer.close_code == 4008


def test_queue_stats_count_by_type_and_go_quiet_with_one_zero_message() -> None:
    stats = QueueStats(lambda tenant: f"last-of-{tenant}")
    stats.record(event(kind=EventType.STARTED))
    stats.record(event(kind=EventType.COMPLETED, durationMs=30))
    stats.record(event(kind=EventType.COMPLETED, durationMs=10))
    stats.record(event(queue="q", tenant="other"))
    first = {(d.tenant, d.queue): orjson.loads(d.text) for d in stats.flush()}
    ours = first[("default", "q")]
    assert ours["counts"]["started"] == 1 and ours["counts"]["completed"] == 2 and ours["eventId"] == "last-of-default"
    assert ours["durationMs"] == {"avg": 20.0, "max": 30.0}
    assert first[("other", "q")]["counts"]["started"] == 1
    quiet = [orjson.loads(d.text) for d in stats.flush()]
    assert len(quiet) == 2 and all(sum(m["counts"].values()) == 0 for m in quiet)
    assert stats.flush() == []


def test_a_queue_level_alert_reaches_that_queues_tenants_and_cluster_holders_only() -> None:
    hub = Hub(buffer_size=10, max_subscriptions=10)
    user, stranger = hub.connect("default", "ws"), hub.connect("other", "ws")
    operator = hub.connect("third", "ws", cluster=True)
    for sub in (user, stranger, operator):
        hub.subscribe(sub, [ALL])
    hub.deliver(event(queue="emails"))  # the default tenant has jobs in `emails`
    drain(user)
    alert = Delivery(kind="alert", text='{"type":"alert"}', tenant=None, event_id="a1",
                     audience=hub.tenants_of_queue("emails"))
    hub.deliver(alert)
    assert len(drain(user)) == 1 and len(drain(operator)) == 1 and drain(stranger) == []
    assert user.wants(alert) and operator.wants(alert) and not stranger.wants(alert)  # the same rule on replay


def test_resuming_several_targets_with_one_since_sends_each_event_once() -> None:
    hub = Hub(buffer_size=10, max_subscriptions=10)
    ds = [event(queue="q" if i % 2 else "other") for i in range(6)]
    for d in ds:
        hub.deliver(d)
    sub = hub.connect("default", "ws")
    since = ds[0].event_id
    open_subscription(hub, sub, Opening((Target(TargetKind.QUEUE, "q"),), since), LIMITS)
    reply = open_subscription(hub, sub, Opening((ALL,), since), LIMITS)
    assert reply["replayed"] == 2  # the `other` queue's; `q`'s came with the first
    got = [str(m["eventId"]) for m in drain(sub) if m["type"] != "subscribed"]
    assert sorted(got) == sorted(str(d.event_id) for d in ds[1:])
