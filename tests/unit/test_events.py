"""The Kafka envelope codec (DESIGN §6)."""

from __future__ import annotations

import uuid

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared import events

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


def test_envelope_has_exactly_the_documented_fields() -> None:
    env = events.Envelope(type=events.EventType.COMPLETED, job_id=uuid.uuid4(), queue="q", job_type="noop",
                          attempt=2, data={"result": {}}, tenant="acme")
    wire = orjson.loads(events.encode(env))
    assert set(wire) == {"eventId", "type", "schemaVersion", "occurredAt", "jobId", "queue", "jobType",
                         "attempt", "data"}
    assert wire["type"] == "completed" and wire["attempt"] == 2 and wire["schemaVersion"] == 1
    assert "tenant" not in wire


@given(data=st.dictionaries(st.text(max_size=10), json_values, max_size=5),
       kind=st.sampled_from(list(events.EventType)), attempt=st.integers(0, 1000))
def test_codec_round_trips(data: dict[str, object], kind: events.EventType, attempt: int) -> None:
    env = events.Envelope(type=kind, job_id=uuid.uuid4(), queue="q", job_type="t", attempt=attempt, data=data)
    back = events.decode(events.encode(env))
    assert back == env


def test_decode_rejects_junk() -> None:
    with pytest.raises(ValueError):
        events.decode(b"not json")
    with pytest.raises(ValueError):
        events.decode(b'{"type": "exploded"}')


# Stated from DESIGN §6, not copied from events.TOPIC_OF: each envelope `type` and its topic.
# (`jobs.batches` is documented for batch completion events, which nothing produces yet.)
DOCUMENTED_TOPICS = {
    "submitted": "jobs.submitted", "dispatched": "jobs.dispatched", "started": "jobs.started",
    "progress": "jobs.progress", "completed": "jobs.completed", "retry": "jobs.retries", "failed": "jobs.failed",
    "cancelled": "jobs.cancelled",
}
# Stated from the staleness rule of docs/adr/0001, not copied from events.RANK.
DOCUMENTED_RANKS = {
    "submitted": 0, "dispatched": 1, "started": 2, "progress": 3, "retry": 4, "completed": 4, "failed": 4,
    "cancelled": 5,
}


def test_every_event_type_goes_to_its_documented_topic() -> None:
    assert {kind.value: events.TOPIC_OF[kind] for kind in events.EventType} == DOCUMENTED_TOPICS
    assert {events.TYPE_OF_TOPIC[topic].value: topic for topic in events.JOB_TOPICS} == DOCUMENTED_TOPICS
    assert set(events.ALL_TOPICS) == {*DOCUMENTED_TOPICS.values(), "alerts"}
    # DESIGN §6: batch_completed goes to jobs.batches, which every cluster creates with the others;
    # worker_started/worker_stopped go to `workers` (an addition to §6).
    assert set(events.CLUSTER_TOPICS) == {*DOCUMENTED_TOPICS.values(), "alerts", "jobs.batches", "workers"}


def test_every_event_type_has_the_rank_of_the_staleness_rule() -> None:
    assert {kind.value: rank for kind, rank in events.RANK.items()} == DOCUMENTED_RANKS
    assert set(events.RANK) == set(events.EventType)


def test_the_tenant_travels_in_a_header() -> None:
    assert events.tenant_of([("tenant", b"acme")]) == "acme"
    assert events.tenant_of(None) == "default"


def test_a_record_decodes_with_the_tenant_and_trace_of_its_headers() -> None:
    envelope = events.Envelope(type=events.EventType.STARTED, job_id=uuid.uuid4(), queue="q", job_type="noop")
    raw = events.encode(envelope)
    decoded = events.decode_record(raw, [("traceparent", b"00-abc-def-01"), ("tenant", b"acme")])
    assert (decoded.tenant, decoded.trace_parent) == ("acme", "00-abc-def-01")
    assert decoded.model_dump(exclude={"tenant", "trace_parent"}) == envelope.model_dump(
        exclude={"tenant", "trace_parent"})
    plain = events.decode_record(raw, None)
    assert (plain.tenant, plain.trace_parent) == ("default", None)
    # The header fields go on the decoded copy only; the wire form never carries them.
    assert "tenant" not in orjson.loads(events.encode(decoded))
