"""The values the dispatch protocol takes and returns, and the spec's Redis encoding."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeVar

from shared.models import JobSpec

T = TypeVar("T")


def now_ms() -> int:
    """Wall-clock milliseconds: lease deadlines and run-at times are shared across hosts."""
    return int(time.time() * 1000)


def text(raw: bytes | str) -> str:
    """A Redis reply as text."""
    return raw.decode() if isinstance(raw, bytes) else raw


def encode_spec(spec: JobSpec) -> str:
    """The spec as stored in Redis (the attempt lives beside it, in the queue's state hash)."""
    return spec.model_dump_json(by_alias=True)


def decode_spec(raw: bytes | str, attempt: bytes | str | int) -> JobSpec:
    """A spec read from Redis, with the attempt Redis holds it at."""
    spec = JobSpec.model_validate_json(raw)
    return spec.model_copy(update={"attempt": int(attempt)})


class JobRef(NamedTuple):
    """A job as Redis addresses it: its queue, then its id."""

    queue: str
    job_id: uuid.UUID

    @classmethod
    def of(cls, spec: JobSpec) -> JobRef:
        """The reference of a spec's job."""
        return cls(spec.queue, spec.job_id)


@dataclass(frozen=True)
class Lease:
    """A job a worker holds: the spec of this attempt and the token proving ownership."""

    spec: JobSpec
    token: str
    started_ms: int = 0  # Redis TIME of the pop that leased it (0: not known)

    @property
    def job_id(self) -> uuid.UUID:
        return self.spec.job_id

    @property
    def ref(self) -> JobRef:
        return JobRef.of(self.spec)


@dataclass(frozen=True)
class Taken:
    """What a pop took, and how long nothing more can be taken (`wait_ms`: 0 not held, -1 paused,
    -2 a concurrency limit is full and a release wakes the workers, > 0 until a rate window frees)."""

    leases: list[Lease]
    wait_ms: int = 0


@dataclass(frozen=True)
class Expired:
    """A lease whose deadline passed, as read: nothing in Redis has moved yet."""

    spec: JobSpec
    token: str

    @property
    def exhausted(self) -> bool:
        """The lost attempt was the job's last."""
        return self.spec.attempt >= self.spec.max_attempts

    @property
    def outcome(self) -> str:
        """'retry' (attempts left) or 'exhausted'."""
        return "exhausted" if self.exhausted else "retry"

    @property
    def lease(self) -> Lease:
        """The dead lease, for a fenced release."""
        return Lease(self.spec, self.token)


@dataclass(frozen=True)
class Forget:
    """Drop the waiting copy of a job, if Redis holds it at `up_to_attempt` or an older attempt."""

    queue: str
    job_id: uuid.UUID
    up_to_attempt: int


KEY_SEP = "\x1f"


def packed_keys(spec: JobSpec) -> str:
    """The job's scheduling keys as the scripts take them ('' when it has none: the plain path)."""
    if spec.fairness_key is None and spec.rate_limit_key is None and spec.concurrency_key is None:
        return ""
    return KEY_SEP.join((spec.fairness_key or "", spec.rate_limit_key or "", spec.concurrency_key or ""))


def by_queue(items: Iterable[T], queue_of: Callable[[T], str]) -> dict[str, list[T]]:
    """Items grouped by queue, in first-seen order."""
    groups: dict[str, list[T]] = {}
    for item in items:
        groups.setdefault(queue_of(item), []).append(item)
    return groups


def flat(raw: Sequence[Any], width: int) -> list[Sequence[Any]]:
    """A script's flat reply cut into records of `width` fields."""
    return [raw[i:i + width] for i in range(0, len(raw), width)]


def owned(leases: Iterable[Lease]) -> list[str]:
    """Script arguments naming leases: pairs of job id, token."""
    return [x for lease in leases for x in (str(lease.job_id), lease.token)]


def lane_aware_scores(head: Sequence[tuple[bytes | str, float]], count: int) -> list[float]:
    """The scores of a ready set's head as jobs: a lane marker (`@<lane>`) stands for a whole lane
    of jobs, so it counts `count` times (else a queue of 20 lanes got at most 20 of every pop)."""
    scores: list[float] = []
    for member, score in head:
        lane = (member[:1] == b"@") if isinstance(member, bytes) else member.startswith("@")
        scores.extend([score] * (count if lane else 1))
        if len(scores) >= count:
            break
    return scores[:count]


def share_out(queues: Sequence[str], head_scores: Sequence[Sequence[float]], count: int) -> list[tuple[str, int]]:
    """How many of `count` jobs to pop from which queue, given the best scores at each ready set's head:
    the best `count` scores of all, ties to the queue named first."""
    ranked = sorted(
        (score, position, queue)
        for position, (queue, scores) in enumerate(zip(queues, head_scores, strict=True))
        for score in scores
    )
    shares: dict[str, int] = {}
    for _, _, queue in ranked[:count]:
        shares[queue] = shares.get(queue, 0) + 1
    return list(shares.items())


class WaitingJob(NamedTuple):
    """A waiting job as Dispatcher.wait_states needs it: where it waits and under which keys."""

    queue: str
    job_id: uuid.UUID
    rate_limit_key: str | None = None
    concurrency_key: str | None = None
