"""SQL of reconciliation: the grace cut-off, the one-replica lock, and pages of live rows."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from shared.models import JobStatus

PAGE = 1000
# Any constant works; every scheduler replica must agree on it.
LOCK_KEY = 0x5C4ED_0EC0

CUTOFF = "SELECT now() - make_interval(secs => $1::float8)"
TRY_LOCK = "SELECT pg_try_advisory_lock($1)"
UNLOCK = "SELECT pg_advisory_unlock($1)"

# Blocked rows worth re-deciding: every dependency completed, or one failed, was cancelled or
# does not exist. Rows still waiting on live dependencies are skipped in SQL.
BLOCKED_CANDIDATE = """
  AND NOT EXISTS (
    SELECT 1 FROM (
        SELECT count(*) AS present,
               count(*) FILTER (WHERE d.status = 'completed') AS done,
               count(*) FILTER (WHERE d.status IN ('failed', 'cancelled')) AS dead
        FROM jobs d WHERE d.id = ANY(j.depends_on)
    ) s
    WHERE s.dead = 0 AND s.done < s.present
      AND s.present = (SELECT count(DISTINCT x) FROM unnest(j.depends_on) AS x)
  )"""


def _page_sql(status: JobStatus) -> tuple[str, str]:
    # Only ids, queues and versions: rows are re-read (whole, locked) for the few that need repair.
    # The status is a literal so the planner can use the partial index jobs_live.
    base = (
        "SELECT j.id, j.queue, j.updated_at FROM jobs j"
        f" WHERE j.status = '{status.value}' AND j.updated_at < $1"
    )
    if status is JobStatus.BLOCKED:
        base += BLOCKED_CANDIDATE
    first = f"{base} ORDER BY j.updated_at, j.id LIMIT {PAGE}"
    after = f"{base} AND (j.updated_at, j.id) > ($2, $3) ORDER BY j.updated_at, j.id LIMIT {PAGE}"
    return first, after


PAGES = {status: _page_sql(status) for status in JobStatus}


@dataclass(frozen=True, slots=True)
class Version:
    """A row as the pages see it: id, queue and version (updated_at)."""

    id: uuid.UUID
    queue: str
    updated_at: datetime


async def cutoff(conn: asyncpg.Connection, grace_s: float) -> datetime:
    """The database's now minus the grace period: rows changed since are left alone."""
    moment: datetime = await conn.fetchval(CUTOFF, grace_s)
    return moment


async def try_lock(conn: asyncpg.Connection) -> bool:
    """Take the reconciliation lock on this connection's session; False if another replica holds it."""
    return bool(await conn.fetchval(TRY_LOCK, LOCK_KEY))


async def unlock(conn: asyncpg.Connection) -> None:
    """Give the reconciliation lock back."""
    await conn.execute(UNLOCK, LOCK_KEY)


async def page(
    conn: asyncpg.Connection, status: JobStatus, cutoff_at: datetime, after: Version | None = None
) -> list[Version]:
    """Up to PAGE rows in `status` unchanged since `cutoff_at`, oldest first, after `after`."""
    first, following = PAGES[status]
    if after is None:
        records = await conn.fetch(first, cutoff_at)
    else:
        records = await conn.fetch(following, cutoff_at, after.updated_at, after.id)
    return [Version(r["id"], r["queue"], r["updated_at"]) for r in records]
