"""One evaluation of every anomaly and rule: read the figures, step each condition, store and publish changes.

A tick is one transaction under a transaction-scoped advisory lock (a replica that does not get it
skips the tick), so condition state, alerts and their outbox rows commit together: an alert is stored
first, and published from the outbox after the commit (again after a Kafka outage, by the sweep).
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta

import asyncpg

from services.analytics.alerts import store
from services.analytics.alerts.anomalies import anomaly_readings, learn_minutes
from services.analytics.alerts.documents import alert_message
from services.analytics.alerts.judging import Change, Reading, step
from services.analytics.alerts.rules import KIND as RULE
from services.analytics.alerts.rules import rule_of, rule_reading
from services.analytics.alerts.store import Alert, Condition
from shared.outbox import Outgoing
from shared.settings import AnalyticsSettings

log = logging.getLogger(__name__)

# A minute is taken into the baselines this long after it ended: late events of it have been recorded.
SETTLE = timedelta(seconds=10)
# How far back a baseline catches up on minutes it has not taken in (after a restart, at first start).
LOOKBACK = timedelta(minutes=30)
# dead_letter alerts resolved per tick at most (their jobs were retried or deleted from the DLQ).
DEAD_LETTER_BATCH = 500


class Detector:
    """`tick()` judges everything once and returns the alerts it opened or resolved."""

    def __init__(self, pool: asyncpg.Pool, settings: AnalyticsSettings, hand_off: Callable[[Outgoing], None]) -> None:
        self._pool = pool
        self._s = settings
        self._hand_off = hand_off
        # Minutes before this were taken in at an earlier tick of this replica: most ticks read none.
        # (Each condition also remembers its last minute, so another replica's ticks never count twice.)
        self._learned_until: datetime | None = None

    async def tick(self) -> list[Alert]:
        """One evaluation; nothing when another replica holds the lock."""
        s = self._s
        async with self._pool.acquire(timeout=s.db_command_timeout_s) as conn, conn.transaction():
            if not await store.try_lock(conn):
                return []
            now = await store.db_now(conn)
            minute = now.replace(second=0, microsecond=0)
            closed_before = (now - SETTLE).replace(second=0, microsecond=0)
            window = await store.fetch(conn, store.WINDOW, minute - timedelta(minutes=s.alert_window_minutes - 1))
            since = max(self._learned_until or closed_before - LOOKBACK, closed_before - LOOKBACK)
            minutes = await store.fetch(conn, store.MINUTES, since, closed_before)
            backlog = await store.fetch(conn, store.BACKLOG, now)
            rules = [rule_of(r) for r in await store.fetch(conn, store.RULES)]
            states = await store.conditions(conn)
            opened = await store.open_alerts(conn)

            learn_minutes(minutes, states, set(opened), s)
            readings = anomaly_readings(window, backlog, states, opened, minute, s)
            readings += [rule_reading(rule, window, backlog) for rule in rules]
            changed: list[Alert] = []
            for reading in readings:
                alert = await self._apply(conn, reading, states, opened, now)
                if alert is not None:
                    changed.append(alert)
            live_rules = {rule.key for rule in rules}
            gone = [k for k in states.keys() | opened.keys() if k.startswith(f"{RULE}|") and k not in live_rules]
            for key in gone:
                if key in opened:  # the rule was deleted: its alert has nothing left to watch
                    alert = _resolved(opened[key], now, {"reason": "rule deleted"}, opened[key].webhook_url, [])
                    if await store.resolve_alert(conn, alert):
                        changed.append(alert)
            for alert in await store.cleared_dead_letters(conn, DEAD_LETTER_BATCH):
                done = _resolved(alert, now, {"reason": "the job left the dead-letter queue"}, None, [])
                if await store.resolve_alert(conn, done):
                    changed.append(done)
            await store.save_conditions(conn, [c for k, c in states.items() if k not in gone], gone)
            messages = [alert_message(a) for a in changed]
            ids = await store.add_to_outbox(conn, messages)
        self._learned_until = closed_before
        if changed:
            self._hand_off(Outgoing(ids, messages))
            for a in changed:
                log.info("alert %s %s: %s queue=%s jobType=%s", a.alert_id, a.status, a.kind, a.queue, a.job_type)
        return changed

    async def _apply(self, conn: asyncpg.Connection, reading: Reading, states: dict[str, Condition],
                     opened: dict[str, Alert], now: datetime) -> Alert | None:
        """Step one condition; store the alert it opens or resolves (None when nothing changes)."""
        s = self._s
        state = states.setdefault(reading.key, Condition(reading.key))
        resolve_after = s.alert_rule_resolve_after_s if reading.kind == RULE else s.alert_anomaly_resolve_after_s
        change = step(state, reading.key in opened, reading, now, resolve_after)
        if change is Change.OPEN:
            alert = Alert(
                alert_id=uuid.uuid4(), tenant=reading.tenant, kind=reading.kind, queue=reading.queue,
                job_type=reading.job_type, rule_id=reading.rule_id, condition_key=reading.key, status="open",
                severity=reading.severity, opened_at=now, resolved_at=None, details=reading.details,
                webhook_url=reading.webhook_url, tenants=reading.tenants,
            )
            return alert if await store.insert_alert(conn, alert) else None
        if change is Change.RESOLVE:
            current = opened[reading.key]
            # A rule's alert goes to the rule's URL as it is now; an anomaly has none.
            url = reading.webhook_url if reading.kind == RULE else current.webhook_url
            alert = _resolved(current, now, reading.details, url, reading.tenants)
            return alert if await store.resolve_alert(conn, alert) else None
        return None


def _resolved(alert: Alert, now: datetime, latest: dict[str, object], url: str | None, tenants: list[str]) -> Alert:
    """The alert resolved now: its details as opened, plus what was read when it cleared."""
    return dataclasses.replace(
        alert, status="resolved", resolved_at=now, details={**alert.details, "atResolve": latest},
        webhook_url=url, tenants=sorted(set(alert.tenants) | set(tenants)),
    )
