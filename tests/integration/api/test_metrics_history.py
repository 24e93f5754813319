"""bench/seed_history.py writes aggregates that agree with its jobs, and the metrics routes read them back."""

from __future__ import annotations

from bench.seed_history import seed
from shared.analytics.histogram import percentile
from tests.integration.api.conftest import Api


async def test_seeded_history_agrees_with_its_jobs(api: Api) -> None:
    figures = await seed(api.settings.database_url, jobs=3000, days=0.5)
    assert figures["jobs"] == 3000 and await api.count("jobs") == 3000
    assert await api.count("job_attempts") == figures["attempts"]
    by_status = dict(await api.pool.fetch("SELECT status, count(*) FROM jobs GROUP BY status"))
    stats = (await api.client.get("/api/v1/stats", params={"window": "24h"})).json()
    assert {k: stats["totals"][k] for k in by_status} == by_status
    counts = {q["queue"]: q["counts"] for q in stats["queues"]}
    direct = await api.pool.fetch("""
        SELECT j.queue, count(DISTINCT j.id) AS submitted, count(*) FILTER (WHERE a.attempt IS NOT NULL) AS started,
               count(*) FILTER (WHERE a.status = 'failed' AND a.attempt < j.max_attempts) AS retried
        FROM jobs j LEFT JOIN job_attempts a ON a.job_id = j.id GROUP BY j.queue""")
    for row in direct:
        assert (counts[row["queue"]]["submitted"], counts[row["queue"]]["started"],
                counts[row["queue"]]["retried"]) == (row["submitted"], row["started"], row["retried"])
    # Hour and day rows add up to the minute rows.
    for table in ("stats_hour", "stats_day"):
        assert await api.pool.fetchval(f"SELECT sum(completed) FROM {table}") == \
            await api.pool.fetchval("SELECT sum(completed) FROM stats_minute")
    busy = await api.pool.fetchval("SELECT sum(busy_ms) FROM worker_stats_minute")
    assert busy == await api.pool.fetchval("SELECT sum(duration_ms_sum) FROM stats_minute")
    hist = (await api.client.get("/api/v1/metrics/job-duration-histogram", params={"window": "24h"})).json()
    counts_only = [b["count"] for b in hist["buckets"]]
    assert sum(counts_only) == figures["attempts"] and percentile(counts_only, 0.5) is not None
