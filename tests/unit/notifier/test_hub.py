"""The subscription index and the fan-out (no network)."""

from __future__ import annotations

import uuid

import orjson
import pytest

from services.notifier.hub import Hub, Subscriber
from services.notifier.messages import Delivery, alert_delivery, job_delivery
from services.notifier.protocol import ALL, ProtocolError, Target, TargetKind
from shared.events import Envelope, EventType

J1, J2 = str(uuid.uuid4()), str(uuid.uuid4())


def event(job: str, queue: str, tenant: str = "default", kind: EventType = EventType.STARTED) -> Delivery:
    return job_delivery(Envelope(type=kind, job_id=uuid.UUID(job), queue=queue, job_type="t", tenant=tenant))


def alert(**doc: object) -> Delivery:
    return alert_delivery(doc, event_id=str(uuid.uuid4()), occurred_at=0.0)


def drain(sub: Subscriber) -> list[dict[str, object]]:
    return [orjson.loads(t) for t in sub.buffer.take(1000)]


def test_routing_by_job_queue_and_all() -> None:
    hub = Hub(buffer_size=100, max_subscriptions=10)
    by_job, by_queue, everything, idle = (hub.connect("default", "ws") for _ in range(4))
    hub.subscribe(by_job, [Target(TargetKind.JOB, J1)])
    hub.subscribe(by_queue, [Target(TargetKind.QUEUE, "q1")])
    hub.subscribe(everything, [ALL])
    hub.deliver(event(J1, "q2"))
    hub.deliver(event(J2, "q1"))
    hub.deliver(alert(rule="x"))
    assert [m["jobId"] for m in drain(by_job)] == [J1]
    assert [m["jobId"] for m in drain(by_queue)] == [J2]
    assert [m.get("jobId", m["type"]) for m in drain(everything)] == [J1, J2, "alert"]
    assert drain(idle) == []


def test_a_client_matching_twice_gets_one_copy() -> None:
    hub = Hub(buffer_size=100, max_subscriptions=10)
    sub = hub.connect("default", "ws")
    hub.subscribe(sub, [Target(TargetKind.JOB, J1), Target(TargetKind.QUEUE, "q1"), ALL])
    hub.deliver(event(J1, "q1"))
    assert len(drain(sub)) == 1


def test_tenants_are_isolated() -> None:
    hub = Hub(buffer_size=100, max_subscriptions=10)
    mine, theirs = hub.connect("default", "ws"), hub.connect("other", "sse")
    for sub in (mine, theirs):
        hub.subscribe(sub, [ALL, Target(TargetKind.JOB, J1), Target(TargetKind.QUEUE, "q")])
    hub.deliver(event(J1, "q", tenant="other"))
    assert drain(mine) == [] and len(drain(theirs)) == 1
    hub.deliver(alert(tenant="default"))
    hub.deliver(alert(rule="global"))
    assert len(drain(mine)) == 2 and len(drain(theirs)) == 1


def test_unsubscribe_and_disconnect_clean_the_index() -> None:
    hub = Hub(buffer_size=100, max_subscriptions=10)
    sub = hub.connect("default", "ws")
    targets = [Target(TargetKind.JOB, J1), Target(TargetKind.QUEUE, "q1"), ALL]
    hub.subscribe(sub, targets)
    hub.unsubscribe(sub, [Target(TargetKind.QUEUE, "q1"), ALL])
    hub.deliver(event(J2, "q1"))
    assert drain(sub) == []
    hub.deliver(event(J1, "q9"))
    assert len(drain(sub)) == 1
    hub.disconnect(sub)
    hub.disconnect(sub)  # idempotent
    assert len(hub) == 0
    assert not hub._by_job and not hub._by_queue and not hub._all and not hub._tenants


def test_overflow_drops_only_the_slow_client() -> None:
    hub = Hub(buffer_size=4, max_subscriptions=10)
    slow, fast = hub.connect("default", "ws"), hub.connect("default", "ws")
    hub.subscribe(slow, [ALL])
    hub.subscribe(fast, [ALL])
    pressured = []
    for _ in range(5):
        pressured.append(hub.deliver(event(J1, "q")))
        fast.buffer.take(10)  # the fast client keeps up
    assert pressured[1] is True  # half of 4 reached: the caller should yield
    assert slow.buffer.close_code == 4008 and len(hub) == 1
    hub.deliver(event(J1, "q"))
    assert len(drain(fast)) == 1


def test_subscription_limit() -> None:
    hub = Hub(buffer_size=4, max_subscriptions=2)
    sub = hub.connect("default", "ws")
    hub.subscribe(sub, [Target(TargetKind.QUEUE, "a"), Target(TargetKind.QUEUE, "b")])
    hub.subscribe(sub, [Target(TargetKind.QUEUE, "a")])  # already followed: fine
    with pytest.raises(ProtocolError):
        hub.subscribe(sub, [Target(TargetKind.QUEUE, "c")])


def test_close_all_ends_every_stream() -> None:
    hub = Hub(buffer_size=4, max_subscriptions=2)
    subs = [hub.connect("default", "ws") for _ in range(3)]
    hub.close_all()
    assert len(hub) == 0 and all(s.buffer.close_code == 1012 for s in subs)
