"""An alert rule's webhookUrl (DESIGN §5): the detector's alert, published on `alerts`, reaches the rule's
receiver through the notifier's durable deliveries, signed with the tenant's secret, on open and on resolve."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import orjson

from services.analytics.alerts.detector import Detector
from shared.kafka.producer import EventProducer, OutgoingMessage
from shared.outbox import Outgoing
from shared.settings import AnalyticsSettings
from shared.webhooks import ensure_secret, verify
from tests.fixtures.polling import eventually
from tests.fixtures.resources import SettingsFactory
from tests.fixtures.webhook_receiver import running_receiver
from tests.integration.notifier.conftest import NotifierFactory

INSERT_JOB = """
INSERT INTO jobs (id, tenant, queue, job_type, status, priority, payload, max_attempts)
VALUES ($1, 'acme', 'reports', 'build', 'queued', 5, '{}', 3)
"""
INSERT_RULE = """
INSERT INTO alert_rules (id, tenant, name, queue, metric, op, threshold, for_s, webhook_url)
VALUES ($1, 'acme', 'any backlog', 'reports', 'backlog', '>', 0, 0, $2)
"""


async def test_a_rule_alert_is_posted_signed_when_it_opens_and_when_it_resolves(
    start_notifier: NotifierFactory, producer: EventProducer, db_pool: asyncpg.Pool,
    service_settings: SettingsFactory,
) -> None:
    outgoing: list[OutgoingMessage] = []

    def hand_off(rows: Outgoing) -> None:
        outgoing.extend(rows.messages)

    detector = Detector(db_pool, service_settings(AnalyticsSettings, alert_rule_resolve_after_s=0.0), hand_off)
    async with running_receiver() as receiver, start_notifier(webhook_poll_s=0.2, auth_required=False) as notifier:
        assert notifier.webhook_consumer is not None
        await asyncio.wait_for(notifier.webhook_consumer.assigned.wait(), 30)
        await db_pool.execute(INSERT_RULE, uuid.uuid4(), receiver.url("/alert"))
        job = uuid.uuid4()
        await db_pool.execute(INSERT_JOB, job)
        [opened] = await detector.tick()
        await producer.publish(outgoing)  # what the analytics relay does after the commit

        [first] = await eventually(lambda: receiver.to("/alert"), timeout_s=20)
        secret = await ensure_secret(db_pool, "acme")
        assert first.event == "alert" and verify(secret, first.signature, first.body)
        body = orjson.loads(first.body)
        assert (body["alertId"], body["status"], body["kind"], body["tenant"]) == (
            str(opened.alert_id), "open", "rule", "acme")

        await db_pool.execute("UPDATE jobs SET status = 'completed' WHERE id = $1", job)
        [resolved] = await detector.tick()
        assert resolved.alert_id == opened.alert_id
        await producer.publish(outgoing[1:])
        calls = await eventually(lambda: receiver.to("/alert"), lambda c: len(c) == 2, timeout_s=20)
        second = calls[1]
        assert verify(secret, second.signature, second.body) and second.delivery != first.delivery
        assert orjson.loads(second.body)["status"] == "resolved"
        rows = await db_pool.fetch("SELECT * FROM webhook_deliveries ORDER BY created_at")
        assert [(r["event_type"], r["job_id"], r["batch_id"], r["tenant"]) for r in rows] == [
            ("alert", None, None, "acme")] * 2
