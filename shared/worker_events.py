"""`worker_started` / `worker_stopped` on the `workers` topic (an addition to DESIGN §6).

The envelope has the shape of §6 with the job fields null (like `batch_completed`), keyed by the
worker id. The worker announces its own start and clean stop (reason `shutdown`); the scheduler
announces a worker that stopped heartbeating (reason `gone`), once.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

import orjson

from shared import events
from shared.ids import new_id
from shared.kafka.producer import OutgoingMessage
from shared.telemetry import inject_headers

WORKER_STARTED = "worker_started"
WORKER_STOPPED = "worker_stopped"
KINDS = frozenset({WORKER_STARTED, WORKER_STOPPED})
# The fields of a registry entry (services/worker heartbeat `describe`) an event carries.
ENTRY_FIELDS = ("hostname", "pid", "queues", "allQueues", "concurrency", "jobTypes", "startedAt")


class StopReason(StrEnum):
    """Why a worker stopped: a clean stop, or it stopped heartbeating."""

    SHUTDOWN = "shutdown"
    GONE = "gone"


def document(kind: str, worker_id: str, data: dict[str, Any], *, at: datetime,
             event_id: uuid.UUID | None = None) -> dict[str, Any]:
    """The JSON of one worker event: `data` holds `workerId` first, then what the caller knows."""
    return {
        "eventId": str(event_id or new_id()),
        "type": kind,
        "schemaVersion": events.SCHEMA_VERSION,
        "occurredAt": at.isoformat(),
        "jobId": None,
        "queue": None,
        "jobType": None,
        "attempt": None,
        "data": {"workerId": worker_id, **data},
    }


def message(doc: dict[str, Any]) -> OutgoingMessage:
    """The Kafka message of a worker event document, keyed by worker id."""
    return OutgoingMessage(
        events.WORKERS_TOPIC, str(doc["data"]["workerId"]).encode(), orjson.dumps(doc), list(inject_headers())
    )


def started(worker_id: str, entry: dict[str, Any], *, at: datetime) -> dict[str, Any]:
    """`worker_started` from the worker's registry entry."""
    return document(WORKER_STARTED, worker_id, {k: entry.get(k) for k in ENTRY_FIELDS}, at=at)


def stopped(worker_id: str, reason: StopReason, *, at: datetime, entry: dict[str, Any] | None = None,
            last_heartbeat_at: datetime | None = None, event_id: uuid.UUID | None = None) -> dict[str, Any]:
    """`worker_stopped` with its reason (and whatever is still known of the worker)."""
    data: dict[str, Any] = {"reason": reason.value}
    if entry is not None:
        data |= {k: entry.get(k) for k in ENTRY_FIELDS}
    if last_heartbeat_at is not None:
        data["lastHeartbeatAt"] = last_heartbeat_at.isoformat()
    return document(WORKER_STOPPED, worker_id, data, at=at, event_id=event_id)
