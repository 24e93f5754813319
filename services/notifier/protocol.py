"""Client → server messages of the stream protocol (DESIGN §7) and the replies to them."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import orjson

from shared.errors import ConveyorError

QUEUE_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")


class ProtocolError(ConveyorError):
    """The client sent something the protocol does not allow."""


class TargetKind(StrEnum):
    """What a subscription follows; the value is also the key in messages."""

    JOB = "jobId"
    QUEUE = "queue"
    BATCH = "batchId"
    ALL = "all"


@dataclass(frozen=True, slots=True)
class Target:
    """One subscription target: a job or batch id (canonical UUID text), a queue name, or every event."""

    kind: TargetKind
    value: str = ""


ALL = Target(TargetKind.ALL)


class Action(StrEnum):
    """What a client message asks for."""

    SUBSCRIBE = "subscribe"
    UNSUBSCRIBE = "unsubscribe"
    PING = "ping"


@dataclass(frozen=True, slots=True)
class Command:
    """A parsed client message; `since`: the last event id the client saw (resume after it)."""

    action: Action
    targets: tuple[Target, ...] = ()
    since: str | None = None


def _uuid_text(raw: object, field: str) -> str:
    if not isinstance(raw, str):
        raise ProtocolError(f"{field} must be a UUID string")
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        raise ProtocolError(f"{field} must be a UUID string") from None


def job_target(raw: object) -> Target:
    """A job target from client input; job ids are compared in canonical form."""
    return Target(TargetKind.JOB, _uuid_text(raw, "jobId"))


def batch_target(raw: object) -> Target:
    """A batch target from client input (canonical UUID text)."""
    return Target(TargetKind.BATCH, _uuid_text(raw, "batchId"))


def since_of(raw: object) -> str | None:
    """The event id to resume after (`since` / `Last-Event-ID`), canonical; None when absent or empty."""
    if raw is None or raw == "":
        return None
    return _uuid_text(raw.strip() if isinstance(raw, str) else raw, "since")


def queue_target(raw: object) -> Target:
    """A queue target from client input (the queue-name rule of DESIGN §5)."""
    if not isinstance(raw, str) or not QUEUE_NAME.fullmatch(raw):
        raise ProtocolError("queue must be a queue name ([a-z0-9][a-z0-9._-]{0,63})")
    return Target(TargetKind.QUEUE, raw)


def targets_of(job_ids: list[Any], queues: list[Any], everything: bool, batch_ids: list[Any] | None = None
               ) -> tuple[Target, ...]:
    """Validated targets; at least one is required."""
    targets = [job_target(j) for j in job_ids] + [queue_target(q) for q in queues]
    targets += [batch_target(b) for b in batch_ids or ()]
    if everything:
        targets.append(ALL)
    if not targets:
        raise ProtocolError("name a target: jobId, queue, batchId or all: true")
    return tuple(dict.fromkeys(targets))


def parse_command(raw: str | bytes | None) -> Command:
    """Parse one client message; raises ProtocolError with a message fit to send back."""
    if raw is None:
        raise ProtocolError("empty message")
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ProtocolError("message is not valid JSON") from None
    if not isinstance(doc, dict):
        raise ProtocolError("message must be a JSON object")
    kind = doc.get("type")
    if not isinstance(kind, str):
        raise ProtocolError("message needs a string 'type'")
    try:
        action = Action(kind)
    except ValueError:
        raise ProtocolError(f"unknown message type {kind[:64]!r}") from None
    if action is Action.PING:
        return Command(action)
    everything = doc.get("all", False)
    if everything is not True and everything is not False:
        raise ProtocolError("all must be true")
    job_ids = [doc["jobId"]] if "jobId" in doc else [doc["job_id"]] if "job_id" in doc else []
    queues = [doc["queue"]] if "queue" in doc else []
    batch_ids = [doc["batchId"]] if "batchId" in doc else [doc["batch_id"]] if "batch_id" in doc else []
    since = since_of(doc.get("since")) if action is Action.SUBSCRIBE else None
    return Command(action, targets_of(job_ids, queues, everything, batch_ids), since)


def target_fields(targets: tuple[Target, ...]) -> dict[str, Any]:
    """The targets as message fields: `{"jobId": ...}`, `{"queue": ...}`, `{"all": true}`."""
    fields: dict[str, Any] = {}
    for target in targets:
        fields[target.kind.value] = True if target.kind is TargetKind.ALL else target.value
    return fields


def reply_to(command: Command) -> dict[str, Any]:
    """`pong`, or `subscribed` / `unsubscribed` echoing the targets."""
    if command.action is Action.PING:
        return {"type": "pong"}
    kind = "subscribed" if command.action is Action.SUBSCRIBE else "unsubscribed"
    return {"type": kind, **target_fields(command.targets)}


def error_reply(message: str, **fields: Any) -> dict[str, Any]:
    """The reply to a message the server could not act on (`fields`: e.g. a `code` and the `since`)."""
    return {"type": "error", "message": message, **fields}
