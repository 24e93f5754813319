"""Kafka topics, the event envelope of DESIGN §6 and its codec."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from shared.ids import new_id

SCHEMA_VERSION = 1


class EventType(StrEnum):
    """The envelope `type`: the topic's event name."""

    SUBMITTED = "submitted"
    DISPATCHED = "dispatched"
    STARTED = "started"
    PROGRESS = "progress"
    COMPLETED = "completed"
    RETRY = "retry"
    FAILED = "failed"
    CANCELLED = "cancelled"


TOPIC_OF: dict[EventType, str] = {
    EventType.SUBMITTED: "jobs.submitted",
    EventType.DISPATCHED: "jobs.dispatched",
    EventType.STARTED: "jobs.started",
    EventType.PROGRESS: "jobs.progress",
    EventType.COMPLETED: "jobs.completed",
    EventType.RETRY: "jobs.retries",
    EventType.FAILED: "jobs.failed",
    EventType.CANCELLED: "jobs.cancelled",
}
TYPE_OF_TOPIC: dict[str, EventType] = {topic: kind for kind, topic in TOPIC_OF.items()}
JOB_TOPICS: tuple[str, ...] = tuple(TOPIC_OF.values())
ALERTS_TOPIC = "alerts"
# Batch events (DESIGN §5 Batches, §6): keyed by batch id; their envelope's jobId, queue, jobType and
# attempt are null, so they are not an EventType (Envelope describes one job's events).
BATCHES_TOPIC = "jobs.batches"
BATCH_COMPLETED = "batch_completed"
# Worker lifecycle events (`worker_started`, `worker_stopped`; an addition to DESIGN §6): keyed by worker id,
# no job fields, no tenant (workers are cluster resources). shared/worker_events.py builds them.
WORKERS_TOPIC = "workers"
ALL_TOPICS: tuple[str, ...] = (*JOB_TOPICS, ALERTS_TOPIC)
# Every topic a cluster creates up front (real Kafka in compose has auto-creation off). The notifier
# reads all of them (`batch_completed` from BATCHES_TOPIC goes to batch subscribers).
CLUSTER_TOPICS: tuple[str, ...] = (*ALL_TOPICS, BATCHES_TOPIC, WORKERS_TOPIC)

# Within one attempt, later kinds supersede earlier ones; used to ignore stale events.
RANK: dict[EventType, int] = {
    EventType.SUBMITTED: 0,
    EventType.DISPATCHED: 1,
    EventType.STARTED: 2,
    EventType.PROGRESS: 3,
    EventType.RETRY: 4,
    EventType.COMPLETED: 4,
    EventType.FAILED: 4,
    EventType.CANCELLED: 5,
}


def topic_name(prefix: str, name: str) -> str:
    """The physical topic for a logical one (tests isolate clusters by prefix)."""
    return f"{prefix}{name}"


def utcnow() -> datetime:
    """Timezone-aware now; every timestamp in Conveyor is UTC."""
    return datetime.now(UTC)


class Envelope(BaseModel):
    """One job event on the wire: `{eventId, type, schemaVersion, occurredAt, jobId, ...}`."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True)

    event_id: uuid.UUID = Field(default_factory=new_id)
    type: EventType
    schema_version: int = SCHEMA_VERSION
    occurred_at: datetime = Field(default_factory=utcnow)
    job_id: uuid.UUID
    queue: str
    job_type: str
    attempt: int = 0
    data: dict[str, Any] = Field(default_factory=dict)
    # Travel as Kafka headers (`tenant`, `traceparent`), not in the documented envelope.
    tenant: str = Field(default="default", exclude=True)
    trace_parent: str | None = Field(default=None, exclude=True)

    @property
    def topic(self) -> str:
        """The logical topic this event belongs on."""
        return TOPIC_OF[self.type]

    def to_wire(self) -> dict[str, Any]:
        """The camelCase JSON document, with ids and times as text."""
        return {
            "eventId": str(self.event_id),
            "type": self.type.value,
            "schemaVersion": self.schema_version,
            "occurredAt": self.occurred_at.isoformat(),
            "jobId": str(self.job_id),
            "queue": self.queue,
            "jobType": self.job_type,
            "attempt": self.attempt,
            "data": self.data,
        }


def encode(envelope: Envelope) -> bytes:
    """Serialize an envelope for Kafka."""
    return orjson.dumps(envelope.to_wire())


def decode(raw: bytes, tenant: str = "default", trace_parent: str | None = None) -> Envelope:
    """Parse an envelope from Kafka (tenant and trace come from its headers); raises pydantic.ValidationError
    (a ValueError) on junk."""
    envelope = Envelope.model_validate_json(raw)
    # The model was made here and nobody else holds it yet, so the header fields are filled in
    # in place: model_copy(update=...) copied the whole model first, which cost consumers more
    # than the validation itself (thousands of events a second).
    fields = envelope.__dict__
    if tenant != "default":
        fields["tenant"] = tenant
    if trace_parent:
        fields["trace_parent"] = trace_parent
    return envelope


TENANT_HEADER = "tenant"
TRACE_HEADER = "traceparent"


def decode_record(raw: bytes, headers: Sequence[tuple[str, bytes]] | None) -> Envelope:
    """An envelope from a Kafka record's value and headers (tenant, traceparent), read in one pass."""
    tenant, trace = "default", None
    for key, value in headers or ():
        if key == TENANT_HEADER:
            tenant = value.decode(errors="replace")
        elif key == TRACE_HEADER:
            trace = value.decode(errors="replace")
    return decode(raw, tenant, trace)


def tenant_of(headers: Sequence[tuple[str, bytes]] | None) -> str:
    """The tenant a record's headers name (records from before tenancy: the default)."""
    for key, value in headers or ():
        if key == TENANT_HEADER:
            return value.decode(errors="replace")
    return "default"
