"""The notifier's settings: the shared NotifierSettings plus what only the notifier reads."""

from __future__ import annotations

from pydantic import Field

from shared.settings import NotifierSettings


class NotifierServiceSettings(NotifierSettings):
    """NotifierSettings + stream tuning (env: SSE_KEEPALIVE_S, ...); `auth_required` is the shared one."""

    # Event-to-client within 250 ms at p99 (issue 10): a record waits up to one batch interval plus one
    # fetch before the fan-out sees it, so both stay well under that. The bench's websocketFanout at
    # 500 events/s: 200/200 gave p99 258 ms, 100/50 87 ms, for ~4% more of a core in the broker.
    kafka_fetch_max_wait_ms: int = 100
    kafka_batch_interval_ms: int = 50
    sse_keepalive_s: float = Field(default=15.0, gt=0)
    # How long closing a socket may wait for the peer (a stuck client cannot take the close frame).
    ws_close_timeout_s: float = Field(default=10.0, gt=0)
    max_subscriptions: int = Field(default=1000, ge=1)
    # Resume (DESIGN §7): the replica keeps its last `event_ring` events in delivery order (~40 s at
    # 500 events/s, well past the audit log's lag); older ones come from the audit log.
    event_ring: int = Field(default=20_000, ge=100)
    resume_max_events: int = Field(default=20_000, ge=1)
    resume_timeout_s: float = Field(default=5.0, gt=0)
    # The ring holds what came after the replica began reading (the newest offsets at its start); what
    # came before is the audit log's, which analytics writes ~0.5-1 s behind. A resume through the audit
    # log in a replica's first seconds waits until this long after it began reading, so nothing falls
    # between the two.
    resume_settle_s: float = Field(default=3.0, ge=0)
    max_batch_jobs: int = Field(default=100_000, ge=1)
    # queue_stats: at most one message per queue per interval (DESIGN §7: at most once a second).
    queue_stats_interval_s: float = Field(default=1.0, ge=1.0)
    queue_stats_enabled: bool = True

    # Webhooks (DESIGN §5). At most this many requests in flight per replica, each bounded by the
    # timeout, so a receiver that hangs holds one slot for a while, never the notifier.
    webhook_concurrency: int = Field(default=16, ge=1)
    webhook_timeout_s: float = Field(default=10.0, gt=0)
    # Retry n waits a uniform draw from [0, min(base * 2^(n-1), max)] (full jitter): with the defaults
    # the first retry comes within 30 s and ten tries span about an hour. Tests shorten the base.
    webhook_retry_base_s: float = Field(default=30.0, gt=0)
    webhook_retry_max_s: float = Field(default=1800.0, gt=0)
    webhook_max_attempts: int = Field(default=10, ge=1)
    # How often a replica looks for due deliveries it was not woken for (others' retries, leases).
    webhook_poll_s: float = Field(default=1.0, gt=0)
    # Comma-separated host names callbacks may go to (`*.example.com` covers subdomains); empty: any.
    webhook_allowed_hosts: str = ""
    # Finished deliveries (delivered or failed) are deleted this many days after their last try (0:
    # kept), in batches of `webhook_retention_batch_rows`, one pass every `webhook_retention_interval_s`.
    webhook_retention_days: int = Field(default=30, ge=0)
    webhook_retention_interval_s: float = Field(default=3600.0, gt=0)
    webhook_retention_batch_rows: int = Field(default=5000, ge=1)
