"""The alert detector on real Postgres, driven by stats_minute rows written directly (as the aggregates
would) and by jobs rows: anomalies open and resolve with hysteresis, rules hold `forS`, nothing flaps."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime
from typing import Any

import asyncpg
import orjson
import pytest

from services.analytics.alerts.detector import Detector
from services.analytics.alerts.store import Alert
from shared.outbox import Outgoing
from shared.settings import AnalyticsSettings
from tests.fixtures.resources import SettingsFactory

UPSERT_MINUTE = """
INSERT INTO stats_minute (tenant, queue, job_type, bucket, completed, failed)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (tenant, queue, job_type, bucket) DO UPDATE SET completed = excluded.completed, failed = excluded.failed
"""
INSERT_JOB = """
INSERT INTO jobs (id, tenant, queue, job_type, status, priority, payload, max_attempts)
VALUES ($1, $2, $3, 'send', 'queued', 5, '{}', 3)
"""


class Probe:
    """A detector on the test's database, and what it handed to its (absent) relay."""

    def __init__(self, pool: asyncpg.Pool, settings: AnalyticsSettings) -> None:
        self.pool = pool
        self.published: list[dict[str, Any]] = []
        self.detector = Detector(pool, settings, self._hand_off)

    def _hand_off(self, outgoing: Outgoing) -> None:
        self.published.extend(orjson.loads(m.value) for m in outgoing.messages)

    async def tick(self) -> list[Alert]:
        return await self.detector.tick()

    async def minute(self) -> datetime:
        now: datetime = await self.pool.fetchval("SELECT date_trunc('minute', now())")
        return now

    async def alerts(self) -> list[asyncpg.Record]:
        return list(await self.pool.fetch("SELECT * FROM alerts ORDER BY opened_at"))


def settings_for(service_settings: SettingsFactory, **overrides: Any) -> AnalyticsSettings:
    # A three-minute window: a bucket written at the start stays in it for the whole test.
    return service_settings(AnalyticsSettings, alert_window_minutes=3, **overrides)


async def test_forty_failures_after_twenty_successes_open_a_failure_rate_alert_then_it_resolves(
    db_pool: asyncpg.Pool, service_settings: SettingsFactory,
) -> None:
    probe = Probe(db_pool, settings_for(service_settings, alert_anomaly_resolve_after_s=1.0))
    bucket = await probe.minute()
    await db_pool.execute(UPSERT_MINUTE, "acme", "mail", "send", bucket, 20, 0)
    assert await probe.tick() == []
    await db_pool.execute(UPSERT_MINUTE, "acme", "mail", "send", bucket, 20, 40)
    [opened] = await probe.tick()
    assert (opened.kind, opened.queue, opened.job_type, opened.status, opened.tenant) == (
        "failure_rate", "mail", "send", "open", None)
    assert opened.details["failureRate"] == pytest.approx(40 / 60, abs=1e-3) and opened.details["baseline"] == 0
    assert await probe.tick() == []  # one alert per condition, not one per tick
    [doc] = probe.published
    assert doc["alertId"] == str(opened.alert_id) and doc["status"] == "open" and doc["tenants"] == ["acme"]
    assert set(doc) >= {"alertId", "kind", "queue", "jobType", "status", "severity", "openedAt", "resolvedAt",
                        "details"}

    # Recovery: plenty of successes bring the window's rate below the resolve level; it must stay there.
    await db_pool.execute(UPSERT_MINUTE, "acme", "mail", "send", bucket, 2000, 40)
    assert await probe.tick() == []  # cleared, but not for long enough yet
    await asyncio.sleep(1.2)
    [resolved] = await probe.tick()
    assert resolved.alert_id == opened.alert_id and resolved.status == "resolved"
    rows = await probe.alerts()
    assert len(rows) == 1 and rows[0]["status"] == "resolved" and rows[0]["resolved_at"] is not None
    assert [d["status"] for d in probe.published] == ["open", "resolved"]
    assert await db_pool.fetchval("SELECT count(*) FROM outbox WHERE topic = 'alerts'") == 2


async def test_one_failure_is_not_a_spike_and_a_rate_between_the_levels_neither_opens_nor_resolves(
    db_pool: asyncpg.Pool, service_settings: SettingsFactory,
) -> None:
    probe = Probe(db_pool, settings_for(service_settings, alert_anomaly_resolve_after_s=0.0))
    bucket = await probe.minute()
    await db_pool.execute(UPSERT_MINUTE, "acme", "thin", "send", bucket, 0, 5)  # 100 %, but 5 jobs
    await db_pool.execute(UPSERT_MINUTE, "acme", "mail", "send", bucket, 99, 1)
    assert await probe.tick() == []
    # Around the open level (25 %) and back to between the levels (10 %..25 %): one alert, never resolved.
    for completed, failed in ((70, 30), (80, 20), (70, 30), (85, 15), (74, 26), (82, 18)):
        await db_pool.execute(UPSERT_MINUTE, "acme", "mail", "send", bucket, completed, failed)
        await probe.tick()
    rows = await probe.alerts()
    assert [(r["kind"], r["queue"], r["status"]) for r in rows] == [("failure_rate", "mail", "open")]
    assert [d["status"] for d in probe.published] == ["open"]


async def test_a_rule_opens_after_for_s_and_resolves_once_clear(
    db_pool: asyncpg.Pool, service_settings: SettingsFactory,
) -> None:
    probe = Probe(db_pool, settings_for(service_settings, alert_rule_resolve_after_s=0.5))
    rule_id = uuid.uuid4()
    await db_pool.execute(
        "INSERT INTO alert_rules (id, tenant, name, queue, metric, op, threshold, for_s, webhook_url)"
        " VALUES ($1, 'acme', 'deep', 'reports', 'backlog', '>', 2, 1, 'http://127.0.0.1:9/hook')", rule_id)
    jobs = [uuid.uuid4() for _ in range(3)]
    for job in jobs:
        await db_pool.execute(INSERT_JOB, job, "acme", "reports")
    await db_pool.execute(INSERT_JOB, uuid.uuid4(), "other", "reports")  # another tenant's: not counted
    assert await probe.tick() == []  # holds, not yet for 1 s
    await asyncio.sleep(1.1)
    [opened] = await probe.tick()
    assert (opened.kind, opened.tenant, opened.rule_id, opened.queue) == ("rule", "acme", rule_id, "reports")
    assert opened.details["value"] == 3 and opened.webhook_url == "http://127.0.0.1:9/hook"
    assert probe.published[0]["tenant"] == "acme"

    await db_pool.execute("UPDATE jobs SET status = 'completed' WHERE id = $1", jobs[0])
    assert await probe.tick() == []
    await asyncio.sleep(0.6)
    [resolved] = await probe.tick()
    assert resolved.status == "resolved" and resolved.details["atResolve"]["value"] == 2
    # Deleting a rule forgets its state; a new breach of another rule is a new alert.
    await db_pool.execute("DELETE FROM alert_rules WHERE id = $1", rule_id)
    await probe.tick()
    assert await db_pool.fetchval("SELECT count(*) FROM alert_conditions WHERE condition_key LIKE 'rule|%'") == 0
