"""Subscribers and the subscription index: fan-out costs O(matching subscribers) per message."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from services.notifier import metrics
from services.notifier.buffer import CLOSE_RESTARTING, ClientBuffer
from services.notifier.messages import Delivery
from services.notifier.protocol import ProtocolError, Target, TargetKind
from services.notifier.ring import EventRing

log = logging.getLogger(__name__)

_Key = tuple[str, str]  # (tenant, job id or queue)


class Subscriber:
    """One connected client (a WebSocket or an SSE stream) of one tenant."""

    __slots__ = ("batches", "buffer", "cluster", "everything", "jobs", "queues", "tenant", "transport")

    def __init__(self, tenant: str, transport: str, buffer_size: int, *, cluster: bool = False) -> None:
        self.tenant = tenant
        self.transport = transport
        self.cluster = cluster  # holds the `cluster` scope: may see cluster resources (workers)
        self.buffer = ClientBuffer(buffer_size)
        self.jobs: set[str] = set()
        self.queues: set[str] = set()
        self.batches: dict[str, frozenset[str]] = {}  # batch id -> its job ids
        self.everything = False

    @property
    def subscription_count(self) -> int:
        """How many targets this client follows."""
        return len(self.jobs) + len(self.queues) + len(self.batches) + int(self.everything)

    def wants(self, d: Delivery) -> bool:
        """Whether this client's subscriptions cover a message (the hub's routing, for one client: replay)."""
        if (d.tenant is not None and d.tenant != self.tenant) or (d.cluster_only and not self.cluster):
            return False
        if d.audience is not None and self.tenant not in d.audience and not self.cluster:
            return False
        if self.everything or (d.queue is not None and d.queue in self.queues):
            return True
        if d.batch_id is not None and d.batch_id in self.batches:
            return True
        job = d.job_id
        return job is not None and (job in self.jobs or any(job in jobs for jobs in self.batches.values()))


def _add(index: dict[_Key, set[Subscriber]], key: _Key, sub: Subscriber) -> None:
    index.setdefault(key, set()).add(sub)


def _discard(index: dict[_Key, set[Subscriber]], key: _Key, sub: Subscriber) -> None:
    subs = index.get(key)
    if subs is not None:
        subs.discard(sub)
        if not subs:
            del index[key]


class Hub:
    """Connected subscribers, indexed by (tenant, job), (tenant, queue), (tenant, batch), the jobs of
    followed batches, and tenant for `all`; and the ring of the events delivered lately."""

    def __init__(self, *, buffer_size: int, max_subscriptions: int, ring_size: int = 20_000) -> None:
        self._buffer_size = buffer_size
        self._max_subscriptions = max_subscriptions
        self._subscribers: set[Subscriber] = set()
        self._tenants: dict[str, int] = {}
        self._by_job: dict[_Key, set[Subscriber]] = {}
        self._by_queue: dict[_Key, set[Subscriber]] = {}
        self._by_batch: dict[_Key, set[Subscriber]] = {}
        self._by_batch_job: dict[_Key, set[Subscriber]] = {}
        self._all: dict[str, set[Subscriber]] = {}
        self._tenants_of_queue: dict[str, set[str]] = {}  # who has jobs in a queue (seen on the stream)
        self.ring = EventRing(ring_size)
        # When (time.monotonic()) the consumer began feeding the ring: it holds nothing from before.
        self.live_since: float | None = None

    def __len__(self) -> int:
        return len(self._subscribers)

    def connect(self, tenant: str, transport: str, *, cluster: bool = False) -> Subscriber:
        """Register a new client with no subscriptions yet (`cluster`: its key holds that scope)."""
        sub = Subscriber(tenant, transport, self._buffer_size, cluster=cluster)
        self._subscribers.add(sub)
        self._tenants[tenant] = self._tenants.get(tenant, 0) + 1
        metrics.CLIENTS.labels(transport).inc()
        return sub

    def disconnect(self, sub: Subscriber) -> None:
        """Forget a client and every subscription it had; idempotent."""
        if sub not in self._subscribers:
            return
        self._subscribers.discard(sub)
        self.unsubscribe(sub, self._targets_of(sub))
        left = self._tenants[sub.tenant] - 1
        if left:
            self._tenants[sub.tenant] = left
        else:
            del self._tenants[sub.tenant]
        metrics.CLIENTS.labels(sub.transport).dec()

    def check_limit(self, sub: Subscriber, targets: Iterable[Target]) -> None:
        """Raise ProtocolError if following `targets` too would pass the per-client limit."""
        new = [t for t in targets if not self._follows(sub, t)]
        if sub.subscription_count + len(new) > self._max_subscriptions:
            raise ProtocolError(f"too many subscriptions (at most {self._max_subscriptions} per client)")

    def subscribe(self, sub: Subscriber, targets: Iterable[Target],
                  batch_jobs: dict[str, frozenset[str]] | None = None) -> None:
        """Follow targets (already-followed ones are fine); raises ProtocolError past the limit.

        `batch_jobs`: the job ids of each batch target (its jobs' events go to the batch's subscribers).
        """
        targets = list(targets)
        self.check_limit(sub, targets)
        for target in targets:
            if self._follows(sub, target):
                continue
            key = (sub.tenant, target.value)
            if target.kind is TargetKind.JOB:
                sub.jobs.add(target.value)
                _add(self._by_job, key, sub)
            elif target.kind is TargetKind.QUEUE:
                sub.queues.add(target.value)
                _add(self._by_queue, key, sub)
            elif target.kind is TargetKind.BATCH:
                jobs = (batch_jobs or {}).get(target.value, frozenset())
                sub.batches[target.value] = jobs
                _add(self._by_batch, key, sub)
                for job in jobs:
                    _add(self._by_batch_job, (sub.tenant, job), sub)
            else:
                sub.everything = True
                self._all.setdefault(sub.tenant, set()).add(sub)

    def unsubscribe(self, sub: Subscriber, targets: Iterable[Target]) -> None:
        """Stop following targets (unknown ones are ignored)."""
        for target in list(targets):
            if target.kind is TargetKind.JOB:
                sub.jobs.discard(target.value)
                _discard(self._by_job, (sub.tenant, target.value), sub)
            elif target.kind is TargetKind.QUEUE:
                sub.queues.discard(target.value)
                _discard(self._by_queue, (sub.tenant, target.value), sub)
            elif target.kind is TargetKind.BATCH:
                jobs = sub.batches.pop(target.value, None)
                if jobs is not None:
                    _discard(self._by_batch, (sub.tenant, target.value), sub)
                    for job in jobs:
                        _discard(self._by_batch_job, (sub.tenant, job), sub)
            elif target.kind is TargetKind.ALL and sub.everything:
                sub.everything = False
                subs = self._all[sub.tenant]
                subs.discard(sub)
                if not subs:
                    del self._all[sub.tenant]

    def deliver(self, delivery: Delivery) -> bool:
        """Queue a message for every matching client without waiting on any socket.

        A client whose buffer overflows is dropped here (its connection closes with 4008).
        An event this replica already delivered (a redelivery) is dropped; the others join the ring.
        Returns True when some recipient's buffer is at least half full, so the caller can
        yield to the senders before the next message.
        """
        if delivery.event_id is not None and not self.ring.add(delivery):
            return False  # delivered already
        if delivery.event_type is not None and delivery.queue is not None and delivery.tenant is not None:
            tenants = self._tenants_of_queue.get(delivery.queue)
            if tenants is None:
                tenants = self._tenants_of_queue[delivery.queue] = set()
            tenants.add(delivery.tenant)
        recipients = self._recipients(delivery)
        if not recipients:
            return False
        pressured = False
        slow: list[Subscriber] = []
        for sub in recipients:
            if not sub.buffer.put(delivery.text, delivery.coalesce_key):
                slow.append(sub)
            elif sub.buffer.pressured:
                pressured = True
        metrics.MESSAGES_QUEUED.labels(delivery.kind).inc(len(recipients) - len(slow))
        for sub in slow:
            log.warning("disconnecting a slow %s client of tenant %s (buffer of %d full)",
                        sub.transport, sub.tenant, sub.buffer.limit)
            metrics.SLOW_DISCONNECTS.inc()
            self.disconnect(sub)
        return pressured

    def close_all(self, code: int = CLOSE_RESTARTING, reason: str = "service restarting") -> None:
        """End every client's stream (shutdown)."""
        for sub in list(self._subscribers):
            sub.buffer.close(code, reason)
            self.disconnect(sub)

    def tenants_of_queue(self, queue: str) -> frozenset[str]:
        """The tenants whose jobs' events in `queue` this replica has seen (a queue-level alert's audience)."""
        return frozenset(self._tenants_of_queue.get(queue, ()))

    def _recipients(self, d: Delivery) -> set[Subscriber]:
        if d.audience is not None:  # a queue-level alert: all-subscribers of its tenants, and cluster holders
            return {sub for tenant, subs in self._all.items() for sub in subs if tenant in d.audience or sub.cluster}
        tenants: Iterable[str] = (d.tenant,) if d.tenant is not None else list(self._tenants)
        out: set[Subscriber] = set()
        for tenant in tenants:
            if d.job_id is not None:
                out.update(self._by_job.get((tenant, d.job_id), ()))
                if self._by_batch_job:
                    out.update(self._by_batch_job.get((tenant, d.job_id), ()))
            if d.queue is not None:
                out.update(self._by_queue.get((tenant, d.queue), ()))
            if d.batch_id is not None:
                out.update(self._by_batch.get((tenant, d.batch_id), ()))
            out.update(self._all.get(tenant, ()))
        if d.cluster_only:
            return {sub for sub in out if sub.cluster}
        return out

    @staticmethod
    def _follows(sub: Subscriber, target: Target) -> bool:
        if target.kind is TargetKind.JOB:
            return target.value in sub.jobs
        if target.kind is TargetKind.QUEUE:
            return target.value in sub.queues
        if target.kind is TargetKind.BATCH:
            return target.value in sub.batches
        return sub.everything

    @staticmethod
    def _targets_of(sub: Subscriber) -> list[Target]:
        targets = [Target(TargetKind.JOB, j) for j in sub.jobs] + [Target(TargetKind.QUEUE, q) for q in sub.queues]
        targets += [Target(TargetKind.BATCH, b) for b in sub.batches]
        if sub.everything:
            targets.append(Target(TargetKind.ALL))
        return targets
