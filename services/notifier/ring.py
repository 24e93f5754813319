"""The replica's recent events in the order it delivered them: resume reads it, dedupe consults it.

Written by hand (a fixed list used as a circular buffer plus an id index): no library keeps
"the last N items, addressable by key and by position" more simply.
"""

from __future__ import annotations

from collections.abc import Iterator

from services.notifier.messages import Delivery


class EventRing:
    """The last `size` deliveries that carry an event id, each with a sequence number (delivery order)."""

    __slots__ = ("_last_of_tenant", "_next", "_seq_of", "_size", "_slots")

    def __init__(self, size: int) -> None:
        self._size = size
        self._slots: list[Delivery | None] = [None] * size
        self._seq_of: dict[str, int] = {}
        self._next = 0  # the sequence number of the next delivery
        # The newest event each tenant may see (None: events for every tenant), for queue_stats ids.
        self._last_of_tenant: dict[str | None, Delivery] = {}

    def __len__(self) -> int:
        return min(self._next, self._size)

    @property
    def first_seq(self) -> int:
        """The sequence number of the oldest delivery still held."""
        return max(0, self._next - self._size)

    @property
    def next_seq(self) -> int:
        """The sequence number the next delivery will get."""
        return self._next

    def add(self, delivery: Delivery) -> bool:
        """Remember a delivery with an event id; False if that event was already delivered (a duplicate)."""
        event_id = delivery.event_id
        seq_of = self._seq_of
        if event_id is None or event_id in seq_of:
            return False
        n = self._next
        slot = n % self._size
        evicted = self._slots[slot]
        if evicted is not None:
            seq_of.pop(evicted.event_id or "", None)
        self._slots[slot] = delivery
        seq_of[event_id] = n
        self._last_of_tenant[delivery.tenant] = delivery
        self._next = n + 1
        return True

    def seq_of(self, event_id: str) -> int | None:
        """Where an event sits in the delivery order, if it is still held."""
        return self._seq_of.get(event_id)

    def at(self, seq: int) -> Delivery | None:
        """The delivery with that sequence number, if still held."""
        if not self.first_seq <= seq < self._next:
            return None
        return self._slots[seq % self._size]

    def __contains__(self, event_id: str) -> bool:
        return event_id in self._seq_of

    def since(self, seq: int) -> Iterator[Delivery]:
        """The deliveries after `seq`, oldest first (from the oldest held if `seq` is older)."""
        for n in range(max(seq + 1, self.first_seq), self._next):
            delivery = self._slots[n % self._size]
            if delivery is not None:
                yield delivery

    def last_event_for(self, tenant: str) -> str | None:
        """The id of the newest event a client of `tenant` may have been sent (its own, or everyone's)."""
        own = self._last_of_tenant.get(tenant)
        shared = self._last_of_tenant.get(None)
        if own is None or shared is None:
            newest = own or shared
        else:  # the later of the two in the delivery order (one evicted: the other is newer)
            newest = own if self._seq_of.get(own.event_id or "", -1) > self._seq_of.get(shared.event_id or "", -1) \
                else shared
        return newest.event_id if newest is not None else None
