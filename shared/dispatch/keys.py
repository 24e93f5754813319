"""Every Redis key name Conveyor uses, built in one place.

The keys of one queue share the hash tag `{<prefix>:<queue>}`: every Lua script works on one
queue and names all its keys in KEYS, so each script call touches one hash slot and could run
on Redis Cluster. The global keys (queue names, wake list, worker registry) are never touched
by a script; the Python side updates them in the same pipeline as the script calls.
"""

from __future__ import annotations

from dataclasses import dataclass

# Ready-set scores: a lower score pops first. Priority takes the high bits (a band per priority),
# the job's virtual start time in its band the low 49 bits (fair queuing between fairness keys,
# FIFO within one; scripts/_lib.lua): 11 bands * 2^49 < 2^53, so every score is an exact double.
PRIORITY_SHIFT = 2**49
MAX_PRIORITY = 10
# The virtual-time step of one job of weight 1 (a key of weight w steps UNIT // w).
FAIR_UNIT = 1000
# How long a worker that stopped heartbeating stays in the `workers` zset: GET /workers lists it
# `gone` that long after its last heartbeat (api), then the scheduler's sweep prunes it.
GONE_LISTED_MS = 10 * 60 * 1000


def ready_base(priority: int) -> int:
    """A job's ready-set score before its queue's sequence number is added (the scripts add it)."""
    return (MAX_PRIORITY - priority) * PRIORITY_SHIFT


def ready_score(priority: int, vt: int) -> int:
    """The full ready-set score of a job at virtual start time `vt` in its priority's band."""
    return ready_base(priority) + vt


@dataclass(frozen=True, slots=True)
class QueueKeys:
    """The keys of one queue, all in the hash slot of its tag."""

    prefix: str
    queue: str

    @property
    def tag(self) -> str:
        """`{<prefix>:<queue>}`: Redis Cluster hashes only this part of each key."""
        return f"{{{self.prefix}:{self.queue}}}"

    @property
    def ready(self) -> str:
        """Zset: job id -> ready score (priority, then FIFO)."""
        return f"{self.tag}:ready"

    @property
    def delayed(self) -> str:
        """Zset: job id -> run-at ms (scheduled runs and retries)."""
        return f"{self.tag}:delayed"

    @property
    def leases(self) -> str:
        """Zset: job id -> lease deadline ms."""
        return f"{self.tag}:leases"

    @property
    def owners(self) -> str:
        """Hash: job id -> token of the lease that owns it."""
        return f"{self.tag}:owners"

    @property
    def specs(self) -> str:
        """Hash: job id -> the JobSpec JSON handed to the worker."""
        return f"{self.tag}:specs"

    @property
    def state(self) -> str:
        """Hash: job id -> `<attempt>:<ready base>` of the copy Redis holds."""
        return f"{self.tag}:state"

    @property
    def fair(self) -> str:
        """Hash: fair-queuing clocks, `v:<band>` (virtual time served) and `l:<band>:<key>` (a key's last)."""
        return f"{self.tag}:fair"

    @property
    def jobkeys(self) -> str:
        """Hash: job id -> "<fairnessKey>\\x1f<rateLimitKey>\\x1f<concurrencyKey>", only for jobs with a key."""
        return f"{self.tag}:jobkeys"

    @property
    def lanes(self) -> str:
        """Lex zset: "<lane>\\0<score>\\0<id>", the waiting jobs with a rate-limit or concurrency key."""
        return f"{self.tag}:lanes"

    @property
    def held(self) -> str:
        """Zset: lane -> ms at which pop looks at a lane its key's limit held back again."""
        return f"{self.tag}:held"

    @property
    def aging(self) -> str:
        """Zset: job id -> ms of its next aging step (only while the queue has `age`)."""
        return f"{self.tag}:aging"

    @property
    def running(self) -> str:
        """Hash: concurrency key -> leases held under it (the queue's own count is the lease set)."""
        return f"{self.tag}:running"

    @property
    def rlog(self) -> str:
        """Zset: lease token -> start ms, the queue's starts within its rate-limit window."""
        return f"{self.tag}:rlog"

    @property
    def krlog(self) -> str:
        """Lex zset: "<rateLimitKey>\\0<start ms:13 digits>\\0<token>", the starts per key."""
        return f"{self.tag}:krlog"

    @property
    def cancelled(self) -> str:
        """Zset: job id -> ms until which its cancel flag holds."""
        return f"{self.tag}:cancelled"

    @property
    def config(self) -> str:
        """Hash: the queue's dispatch controls (shared/dispatch/config.py), written by the api."""
        return f"{self.tag}:config"


@dataclass(frozen=True, slots=True)
class Keys:
    """Key names under one prefix (tests isolate by prefix)."""

    prefix: str

    @property
    def queues(self) -> str:
        """Set of every queue name that ever had a job pushed (global)."""
        return f"{self.prefix}:queues"

    @property
    def wake(self) -> str:
        """List of wake tokens workers block on: one per ready job, at most 64 (global)."""
        return f"{self.prefix}:wake"

    @property
    def workers(self) -> str:
        """Zset: worker id -> last heartbeat ms (global)."""
        return f"{self.prefix}:workers"

    @property
    def workers_gone(self) -> str:
        """Set: ids of gone workers whose `worker_stopped` the scheduler announced (global)."""
        return f"{self.prefix}:workers:gone"

    @property
    def workers_sweep(self) -> str:
        """String: the lock of the scheduler replica sweeping the worker registry (global, expiring)."""
        return f"{self.prefix}:workers:sweep"

    def worker(self, worker_id: str) -> str:
        """A worker's registry entry, expiring unless refreshed (global)."""
        return f"{self.prefix}:worker:{worker_id}"

    def queue(self, name: str) -> QueueKeys:
        """The keys of one queue."""
        return QueueKeys(self.prefix, name)
