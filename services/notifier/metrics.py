"""Prometheus metrics of the notifier (default registry, served on /metrics)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

CLIENTS = Gauge("conveyor_notifier_clients", "Connected stream clients", ["transport"])
EVENTS_IN = Counter("conveyor_notifier_events_total", "Records consumed from Kafka, by outgoing message type", ["type"])
MESSAGES_QUEUED = Counter(
    "conveyor_notifier_messages_queued_total", "Messages queued for clients (one per recipient)", ["type"]
)
PROGRESS_COALESCED = Counter(
    "conveyor_notifier_progress_coalesced_total", "Progress messages replaced by a newer one before being sent"
)
SLOW_DISCONNECTS = Counter(
    "conveyor_notifier_slow_disconnects_total", "Clients disconnected because their buffer overflowed"
)
UNDECODABLE = Counter("conveyor_notifier_records_undecodable_total", "Kafka records that could not be parsed")
AUTH_REJECTED = Counter("conveyor_notifier_auth_rejected_total", "Stream handshakes refused", ["reason"])
WEBHOOKS_EXPIRED = Counter(
    "conveyor_notifier_webhook_deliveries_expired_total",
    "Finished webhook deliveries deleted by the retention pass (WEBHOOK_RETENTION_DAYS)",
)
