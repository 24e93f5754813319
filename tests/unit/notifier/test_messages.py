"""What each event becomes on the wire, and its routing."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import orjson
import pytest

from services.notifier.messages import alert_delivery, alert_event_id, job_delivery
from shared.events import Envelope, EventType

# Stated from DESIGN, not copied from messages.JOB_MESSAGE: the message type of §7 and the job's
# status after the event (§4 lifecycle). Clients and the dashboard switch on these exact strings.
EXPECTED = {
    EventType.SUBMITTED: ("job_update", "pending"),
    EventType.DISPATCHED: ("job_update", "queued"),
    EventType.STARTED: ("job_update", "running"),
    EventType.PROGRESS: ("job_progress", "running"),
    EventType.COMPLETED: ("job_completed", "completed"),
    EventType.RETRY: ("job_retry", "retrying"),
    EventType.FAILED: ("job_failed", "failed"),
    EventType.CANCELLED: ("job_update", "cancelled"),
}


@pytest.mark.parametrize("kind", list(EventType))  # every event type has a message
def test_job_message_shape(kind: EventType) -> None:
    env = Envelope(type=kind, job_id=uuid.uuid4(), queue="emails", job_type="send", attempt=2,
                   occurred_at=datetime(2024, 5, 1, 10, 0, 5, 123000, tzinfo=UTC), data={"x": [1, "two"]},
                   tenant="acme")
    d = job_delivery(env)
    assert orjson.loads(d.text) == {
        "type": EXPECTED[kind][0], "jobId": str(env.job_id), "queue": "emails", "jobType": "send",
        "status": EXPECTED[kind][1], "attempt": 2, "eventId": str(env.event_id),
        "occurredAt": "2024-05-01T10:00:05.123000+00:00", "data": {"x": [1, "two"]},
    }
    assert (d.kind, d.tenant, d.job_id, d.queue) == (EXPECTED[kind][0], "acme", str(env.job_id), "emails")
    assert (d.coalesce_key is not None) == (kind is EventType.PROGRESS)


def test_alerts_pass_through_with_an_event_id() -> None:
    d = alert_delivery({"rule": "failure_rate", "queue": "emails", "value": 0.5}, event_id="e1", occurred_at=1.0)
    assert orjson.loads(d.text) == {
        "type": "alert", "eventId": "e1", "alert": {"rule": "failure_rate", "queue": "emails", "value": 0.5}}
    assert d.tenant is None and d.job_id is None and d.queue is None and d.event_id == "e1"
    assert alert_delivery({"tenant": "acme"}, event_id="e2", occurred_at=0).tenant == "acme"
    assert orjson.loads(alert_delivery([1, 2], event_id="e3", occurred_at=0).text) == {
        "type": "alert", "eventId": "e3", "alert": [1, 2]}


def test_alert_event_ids_are_their_own_else_derived_the_same_everywhere() -> None:
    assert alert_event_id({"eventId": "mine", "alertId": "a"}, "t:0:1") == "mine"
    opened = alert_event_id({"alertId": "a", "status": "open"}, "t:0:1")
    assert opened == alert_event_id({"alertId": "a", "status": "open"}, "t:3:9")  # a redelivery: the same
    assert opened != alert_event_id({"alertId": "a", "status": "resolved"}, "t:0:1")
    assert alert_event_id({"rule": "x"}, "t:0:1") == alert_event_id({"rule": "x"}, "t:0:1") != alert_event_id(
        {"rule": "x"}, "t:0:2")
