"""Opening a subscription, and resuming one after `since` (DESIGN §7): no gap, no duplicate.

Two steps. `prepare` awaits what needs Postgres: the jobs of batch targets and, when the
replica's ring no longer holds `since`, the audit log's events after it. `open_subscription`
then runs without awaiting anything: it takes the rest from the ring, queues the reply and
the replay, and subscribes, all before the fan-out can deliver another event. The live
stream therefore starts exactly where the ring ended: nothing falls between, nothing twice.

The order resumed in: when the ring holds `since`, the replica's delivery order (what this
replica sent its clients; exact for a client that was on it). Otherwise the audit log's order
(occurred_at, eventId), merged with the ring's events that analytics has not written yet.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from services.notifier import sql
from services.notifier.hub import Hub, Subscriber
from services.notifier.messages import Delivery, encode, job_delivery
from services.notifier.protocol import Target, TargetKind, target_fields
from shared import events
from shared.errors import ConveyorError

log = logging.getLogger(__name__)

UNKNOWN_SINCE = "unknown_since"
SINCE_TOO_OLD = "since_too_old"


class ResumeRefused(ConveyorError):
    """`since` cannot be resumed from: the client must resubscribe without it and reload state."""

    def __init__(self, code: str, since: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.since = since
        self.message = message

    def reply(self) -> dict[str, Any]:
        """The `error` message that says so."""
        return {"type": "error", "code": self.code, "since": self.since, "message": self.message}


@dataclass(frozen=True, slots=True)
class Limits:
    """How far back a resume may reach, and how long its queries may take."""

    max_replay: int
    max_batch_jobs: int
    timeout_s: float
    settle_s: float = 0.0  # see NotifierServiceSettings.resume_settle_s


@dataclass(slots=True)
class Opening:
    """A subscription ready to open: its targets, their batch jobs, and what the audit log adds."""

    targets: tuple[Target, ...]
    since: str | None = None
    batch_jobs: dict[str, frozenset[str]] = field(default_factory=dict)
    audited: list[Delivery] | None = None  # None: the ring held `since` (or no resume)
    after: tuple[float, str] = (0.0, "")  # the audit-log position of `since`


def probe(sub: Subscriber, opening: Opening) -> Subscriber:
    """A detached subscriber with only the new targets: the replay is what they cover."""
    p = Subscriber(sub.tenant, sub.transport, 1, cluster=sub.cluster)
    for t in opening.targets:
        if t.kind is TargetKind.JOB:
            p.jobs.add(t.value)
        elif t.kind is TargetKind.QUEUE:
            p.queues.add(t.value)
        elif t.kind is TargetKind.BATCH:
            p.batches[t.value] = opening.batch_jobs.get(t.value, frozenset())
        else:
            p.everything = True
    return p


def _held(hub: Hub, sub: Subscriber, since: str) -> int | None:
    """The ring position of `since` if the ring holds it and the client may know it."""
    seq = hub.ring.seq_of(since)
    if seq is None:
        return None
    delivery = hub.ring.at(seq)
    if delivery is not None and delivery.tenant not in (None, sub.tenant):
        return None
    return seq


async def prepare(hub: Hub, pool: asyncpg.Pool, sub: Subscriber, targets: tuple[Target, ...],
                  since: str | None, limits: Limits) -> Opening:
    """Load what opening needs from Postgres; raises ResumeRefused for an unknown or too old `since`."""
    opening = Opening(targets, since)
    for t in targets:
        if t.kind is TargetKind.BATCH:
            jobs = await sql.batch_jobs(pool, sub.tenant, t.value, limit=limits.max_batch_jobs,
                                        timeout_s=limits.timeout_s)
            opening.batch_jobs[t.value] = frozenset(jobs)
    if since is None or _held(hub, sub, since) is not None:
        return opening
    await _settle(hub, limits)
    position = await sql.event_position(pool, since, timeout_s=limits.timeout_s)
    if position is None or position.tenant != sub.tenant:
        raise ResumeRefused(UNKNOWN_SINCE, since, "this event is neither among the notifier's recent events nor in "
                            "the audit log (too old, or not an event): subscribe without since and reload the state")
    p = probe(sub, opening)
    job_ids = sorted(p.jobs.union(*p.batches.values()))
    rows = await sql.events_after(pool, position, since, everything=p.everything, job_ids=job_ids,
                                  queues=sorted(p.queues), limit=limits.max_replay + 1, timeout_s=limits.timeout_s)
    audited: dict[str, Delivery] = {}
    for tenant, envelope in rows:
        try:
            d = job_delivery(events.Envelope.model_validate(envelope).model_copy(update={"tenant": tenant}))
        except ValueError as exc:
            log.error("skipping an undecodable audit-log envelope: %s", exc)
            continue
        audited[d.event_id or ""] = d
    if len(audited) > limits.max_replay:
        raise _too_old(since, limits)
    opening.audited = list(audited.values())
    opening.after = (position.occurred_at.timestamp(), since)
    return opening


async def _settle(hub: Hub, limits: Limits) -> None:
    """In a replica's first seconds, wait until the audit log has caught up with what came before its ring.

    The ring starts with the first event after the replica began reading; an event a moment older is
    the audit log's to replay, and analytics writes it ~0.5-1 s later. Read before that, it would be
    in neither: a gap.
    """
    began = hub.live_since
    wait = limits.settle_s if began is None else began + limits.settle_s - time.monotonic()
    if wait > 0:
        await asyncio.sleep(wait)


def _too_old(since: str, limits: Limits) -> ResumeRefused:
    return ResumeRefused(SINCE_TOO_OLD, since, f"more than {limits.max_replay} events happened since this one: "
                         "subscribe without since and reload the state")


def open_subscription(hub: Hub, sub: Subscriber, opening: Opening, limits: Limits) -> dict[str, Any]:
    """Queue the `subscribed` reply and the replay, then subscribe; nothing here awaits. Returns the reply.

    Raises ProtocolError past the subscription limit, ResumeRefused when the replay is too long.
    """
    hub.check_limit(sub, opening.targets)
    replay = _replay(hub, sub, opening, limits) if opening.since is not None else []
    reply: dict[str, Any] = {"type": "subscribed", **target_fields(opening.targets)}
    if opening.since is not None:
        reply |= {"since": opening.since, "replayed": len(replay)}
    if not sub.buffer.put(encode(reply)):
        return reply  # the buffer closed: the session is ending
    sub.buffer.extend([d.text for d in replay])
    hub.subscribe(sub, opening.targets, opening.batch_jobs)
    return reply


def _replay(hub: Hub, sub: Subscriber, opening: Opening, limits: Limits) -> list[Delivery]:
    assert opening.since is not None
    p = probe(sub, opening)

    def missed(d: Delivery) -> bool:
        # What the client's other subscriptions already brought it (opened with the same since) is not missed.
        return p.wants(d) and not sub.wants(d)

    seq = _held(hub, sub, opening.since)
    if seq is not None:  # the ring holds it (again, if the audit log was read meanwhile): its order
        replay = [d for d in hub.ring.since(seq) if missed(d)]
    elif opening.audited is not None:
        seen = {d.event_id for d in opening.audited}
        newer = [d for d in hub.ring.since(-1) if d.event_id not in seen and (d.occurred_at, d.event_id or "") >
                 opening.after and missed(d)]
        audited = [d for d in opening.audited if missed(d)]
        replay = sorted(audited + newer, key=lambda d: (d.occurred_at, d.event_id or ""))
    else:  # the ring dropped it while the batches loaded
        raise ResumeRefused(UNKNOWN_SINCE, opening.since, "this event is no longer among the notifier's recent "
                            "events: subscribe again with since")
    if len(replay) > limits.max_replay:
        raise _too_old(opening.since, limits)
    return replay
