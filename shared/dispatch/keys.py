"""Every Redis key name Conveyor uses, built in one place."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

# Ready-set scores: a lower score pops first. Priority takes the high bits, a global
# sequence the low 42 bits, so equal priorities stay FIFO and doubles stay exact.
PRIORITY_SHIFT = 2**42


def ready_score(priority: int, seq: int) -> float:
    """Score of a job in its queue's ready set (mirrors push.lua)."""
    return float((10 - priority) * PRIORITY_SHIFT + seq)


@dataclass(frozen=True)
class Keys:
    """Key names under one prefix (tests isolate by prefix)."""

    prefix: str

    @property
    def queues(self) -> str:
        return f"{self.prefix}:queues"

    @property
    def seq(self) -> str:
        return f"{self.prefix}:seq"

    @property
    def delayed(self) -> str:
        return f"{self.prefix}:delayed"

    @property
    def leases(self) -> str:
        return f"{self.prefix}:leases"

    @property
    def lease_owner(self) -> str:
        return f"{self.prefix}:lease-owner"

    @property
    def wake(self) -> str:
        return f"{self.prefix}:wake"

    @property
    def workers(self) -> str:
        return f"{self.prefix}:workers"

    def ready(self, queue: str) -> str:
        return f"{self.prefix}:q:{queue}:ready"

    def job(self, job_id: uuid.UUID | str) -> str:
        return f"{self.prefix}:job:{job_id}"

    def cancel(self, job_id: uuid.UUID | str) -> str:
        return f"{self.prefix}:cancel:{job_id}"

    def worker(self, worker_id: str) -> str:
        return f"{self.prefix}:worker:{worker_id}"
