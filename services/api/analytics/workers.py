"""Items of GET /metrics/workers: the registry's workers (as GET /workers lists them) with what each
finished over the window and how busy it was (worker_stats_minute)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from services.api.analytics.windows import Span


def _started(item: Mapping[str, Any]) -> datetime | None:
    raw = item.get("startedAt")
    if isinstance(raw, datetime):
        return raw
    try:
        return datetime.fromisoformat(raw) if isinstance(raw, str) else None
    except ValueError:
        return None


def utilisation(busy_ms: int, concurrency: int | None, started_at: datetime | None, span: Span) -> float | None:
    """Busy time over the slot time the worker had in the window (from the window's start or its own,
    whichever is later, to now), 0-1; None when its concurrency is unknown (a gone worker)."""
    if not concurrency:
        return None
    since = max(span.start, started_at) if started_at is not None else span.start
    slot_ms = concurrency * max((span.now - since).total_seconds() * 1000, 1.0)
    return round(min(busy_ms / slot_ms, 1.0), 4)


def worker_items(registry: Sequence[Mapping[str, Any]], figures: Mapping[str, Mapping[str, Any]],
                 span: Span) -> list[dict[str, Any]]:
    """Registry workers, plus workers that finished attempts in the window but left the registry (`gone`),
    by id."""
    listed = {str(item["workerId"]): item for item in registry}
    items = []
    for worker_id in sorted(set(listed) | set(figures)):
        item, row = listed.get(worker_id, {}), figures.get(worker_id)
        busy_ms = int(row["busy_ms"]) if row is not None else 0
        concurrency = item.get("concurrency")
        items.append({
            "workerId": worker_id,
            "host": item.get("host"),
            "status": item.get("status", "gone"),
            "concurrency": concurrency,
            "completed": int(row["completed"]) if row is not None else 0,
            "failed": int(row["failed"]) if row is not None else 0,
            "retried": int(row["retried"]) if row is not None else 0,
            "busyMs": busy_ms,
            "utilisation": utilisation(busy_ms, concurrency, _started(item), span),
        })
    return items
