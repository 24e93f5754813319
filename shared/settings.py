"""Settings every service reads from the environment (and `.conveyor/env` under `make dev`)."""

from __future__ import annotations

import ipaddress
from typing import Any, Self

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:15432/conveyor"
DEFAULT_REDIS_URL = "redis://127.0.0.1:16379/0"
DEFAULT_KAFKA = "127.0.0.1:19092"


def is_loopback(host: str) -> bool:
    """True for `localhost`, 127.0.0.0/8 and ::1: a bind no other machine can reach."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False  # a host name other than localhost may resolve to anything


class CommonSettings(BaseSettings):
    """Connection and tuning settings shared by every service."""

    model_config = SettingsConfigDict(env_file=None, extra="ignore", case_sensitive=False)

    database_url: str = DEFAULT_DATABASE_URL
    redis_url: str = DEFAULT_REDIS_URL
    kafka_bootstrap_servers: str = DEFAULT_KAFKA

    # Isolation knobs: tests run many clusters against one set of servers.
    redis_key_prefix: str = "conveyor"
    kafka_topic_prefix: str = ""

    # Group joins on the embedded broker take ~session/2; 6000/1000 is also valid on real Kafka.
    kafka_session_timeout_ms: int = 6000
    kafka_heartbeat_interval_ms: int = 1000
    kafka_fetch_max_wait_ms: int = 20
    kafka_request_timeout_ms: int = 5000
    # Least time between two consumer batches while events keep coming (fewer, larger fetches).
    kafka_batch_interval_ms: int = 0
    # The embedded broker has no InitProducerId; enable only against real Kafka.
    kafka_enable_idempotence: bool = False
    # The embedded broker's cost is per produce request, not per message: let sends gather.
    kafka_linger_ms: int = 10

    # Outbox rows a live writer has not published by this age are swept (by any replica): it must
    # exceed the writer's publish timeout, or rows are published twice.
    outbox_sweep_after_s: float = 15.0

    db_pool_min: int = 1
    db_pool_max: int = 10
    db_command_timeout_s: float = 10.0
    redis_timeout_s: float = 5.0

    log_level: str = "INFO"
    log_format: str = Field(default="json", pattern="^(json|text)$")
    # `otlp` sends spans over OTLP/HTTP to OTEL_EXPORTER_OTLP_ENDPOINT (the standard OTel variables apply).
    otel_exporter: str = Field(default="none", pattern="^(none|console|otlp)$")

    drain_timeout_s: float = 30.0
    host: str = "127.0.0.1"
    # Secure by default (DESIGN §10): every caller sends an API key. `AUTH_REQUIRED=false` makes a
    # caller without a key the default tenant's admin, so only a loopback bind may turn it off.
    auth_required: bool = True

    @model_validator(mode="after")
    def _auth_off_only_on_loopback(self) -> Self:
        if not self.auth_required and not is_loopback(self.host):
            raise ValueError(
                f"AUTH_REQUIRED=false is allowed only when HOST is a loopback address (127.0.0.0/8, ::1, "
                f"localhost), but HOST={self.host!r}: without a key every caller would be an admin. "
                "Keep AUTH_REQUIRED=true (the default) or set HOST=127.0.0.1"
            )
        return self


class ApiSettings(CommonSettings):
    """The REST API."""

    api_port: int = 8000
    max_body_bytes: int = 1024 * 1024
    max_payload_bytes: int = 256 * 1024
    outbox_batch_size: int = 500
    outbox_sweep_interval_s: float = 1.0
    # Every produce request is a batch the embedded broker stores and rescans on each fetch of
    # `jobs.submitted` (the scheduler fetches it every batch interval): 2 ms sent one request per
    # job at 200 jobs/s; 5 ms gathers about two, for ≤5 ms of latency.
    kafka_linger_ms: int = 5
    dashboard_dir: str = "dashboard/dist"
    # Where the dashboard opens its WebSocket: NOTIFIER_PUBLIC_URL (`ws://host:port`) when the notifier
    # sits behind another address, else the notifier's port on the host the page came from.
    notifier_public_url: str = ""
    notifier_port: int = 8001


class SchedulerSettings(CommonSettings):
    """The scheduler: dispatch, projection, lease requeue and reconciliation."""

    scheduler_port: int = 8010
    # Under load every fetch finds data at once (the batch interval paces them); when idle this
    # is the polling rate (~3 % of a core at 20 ms), and the delay a lone submission may wait.
    kafka_fetch_max_wait_ms: int = 20
    # Each consumer batch is one transaction: batching 40 ms of events roughly halves the
    # scheduler's and Postgres's cost per job at a few hundred jobs/s, for ≤40 ms of latency,
    # and each fetch of `jobs.submitted` costs the embedded broker a rescan of what it stores.
    kafka_batch_interval_ms: int = 40
    # Worker events are fetched at most this often: fewer, fuller fetches and transactions,
    # for at most this much delay on status reads and on releasing dependents.
    projection_interval_ms: int = 200
    promote_interval_s: float = 0.1
    lease_check_interval_s: float = 1.0
    reconcile_interval_s: float = 15.0
    # A row must be this old before reconciliation treats its absence from Redis as a loss.
    reconcile_grace_s: float = 10.0
    # Cron: the leader polls due schedules this often (fire lag p99 < 1 s), holding its Redis lease for
    # cron_lease_ms (renewed every poll; a failover waits at most this long). A fire later than
    # cron_misfire_grace_s is a misfire (downtime), handled by the schedule's misfire policy.
    cron_poll_interval_s: float = 0.25
    cron_lease_ms: int = 3000
    cron_misfire_grace_s: float = 30.0


class WorkerSettings(CommonSettings):
    """A worker process: which queues, how many jobs at once, which handlers."""

    worker_port: int = 8020
    worker_id: str = ""
    worker_queues: str = ""  # comma-separated; empty = every queue
    worker_concurrency: int = 50
    worker_handler_modules: str = ""  # comma-separated import paths registering @handler types
    lease_ms: int = 30_000
    default_timeout_ms: int = 300_000
    queue_refresh_interval_s: float = 1.0
    # Default retry policy per job type, `{"<jobType>": {RetryPolicy JSON}}` (README "Retries"): for
    # jobs that carry none; it wins over a `@handler(..., retry=...)` default and the queue's.
    worker_retry_defaults: dict[str, Any] = Field(default_factory=dict)
    # A job holds its slot until Kafka acked its `started` and its outcome, and the coalescer
    # already sends everything that finished in one loop tick together: the linger is paid twice
    # per job (25 ms capped a worker of 50 slots below 1,000 jobs/s), so keep it short; but every
    # produce request is a batch the embedded broker rescans on each fetch, and 5 ms sent nearly
    # one request per job at 200 jobs/s.
    kafka_linger_ms: int = 10


class AnalyticsSettings(CommonSettings):
    """Audit log and aggregates."""

    analytics_port: int = 8030
    # The audit log is not on the dispatch path: longer fetch waits mean fewer, larger batches.
    kafka_fetch_max_wait_ms: int = 250
    kafka_batch_interval_ms: int = 500
    # Retention by age (0 keeps forever): the audit log by occurred_at, the aggregates by bucket.
    # stats_day is kept (a row per queue, job type and day). README "Analytics" has the figures.
    audit_retention_days: float = Field(default=30.0, ge=0)
    stats_minute_retention_days: float = Field(default=2.0, ge=0)
    stats_hour_retention_days: float = Field(default=90.0, ge=0)
    worker_stats_retention_days: float = Field(default=2.0, ge=0)
    # The cleaner (one replica at a time): a pass every interval, deleting in batches of this
    # many rows with a pause between them, so each statement is short and ingestion is never held.
    retention_interval_s: float = Field(default=300.0, gt=0)
    retention_batch_rows: int = Field(default=5000, gt=0)
    retention_pause_s: float = Field(default=0.05, ge=0)

    # -- alerts: anomaly detection and alert rules (services/analytics/alerts) --------------------
    # How often the detector judges every queue and rule (one replica at a time).
    alert_eval_interval_s: float = Field(default=5.0, gt=0)
    # The recent window: the current minute of stats_minute and the ones before it, this many in all.
    alert_window_minutes: int = Field(default=2, ge=1, le=60)
    # Below this many finished jobs (or timed attempts) in the window a queue is not judged: one
    # failure is not a spike.
    alert_min_volume: int = Field(default=20, ge=1)
    # Weight of each closed minute in the EWMA baselines, and the minutes of history a duration
    # baseline needs before it judges (a queue with no history has a 0 % failure baseline).
    alert_ewma_alpha: float = Field(default=0.2, gt=0, le=1)
    alert_baseline_min_minutes: int = Field(default=3, ge=1)
    # failure_rate: opens at baseline + open delta, clears below baseline + resolve delta.
    alert_failure_open_delta: float = Field(default=0.25, gt=0, le=1)
    alert_failure_resolve_delta: float = Field(default=0.10, ge=0, le=1)
    # duration: window p95 against the baseline p95 (a factor and an absolute floor in ms).
    alert_duration_open_factor: float = Field(default=3.0, gt=1)
    alert_duration_resolve_factor: float = Field(default=1.5, ge=1)
    alert_duration_min_ms: float = Field(default=100.0, ge=0)
    # backlog: waiting jobs against the baseline backlog (a factor and an absolute floor).
    alert_backlog_open_factor: float = Field(default=3.0, gt=1)
    alert_backlog_resolve_factor: float = Field(default=1.5, ge=1)
    alert_backlog_min: int = Field(default=100, ge=1)
    # Hysteresis: an anomaly resolves once it stayed below its resolve level this long; a rule's alert
    # once its condition stayed false this long (DESIGN: a rule resolves within 60 s of clearing).
    alert_anomaly_resolve_after_s: float = Field(default=120.0, ge=0)
    alert_rule_resolve_after_s: float = Field(default=20.0, ge=0, le=50)


class NotifierSettings(CommonSettings):
    """WebSocket fan-out."""

    notifier_port: int = 8001
    # The embedded broker's cost is per fetch and grows with the batches it stores, and the
    # notifier fetches every topic: at 200 jobs/s its fetches every 100 ms were ~a third of the
    # broker's CPU. 200 ms still reads as live on a dashboard (≈100 ms added on average).
    kafka_fetch_max_wait_ms: int = 200
    kafka_batch_interval_ms: int = 200
    client_buffer: int = 1000
