// Overview: open alerts on top, big numbers, then every queue with its figures and a health colour.
// The figures come from /stats and /metrics/queues (the analytics routes); until those answer, the
// queue table falls back to /queues and says what is missing.
import { ErrorNote, Unavailable } from "../components/bits";
import { api, apiIfOffered } from "../lib/api";
import { count, duration } from "../lib/format";
import { isMissingRoute, useResource } from "../lib/hooks";
import type { Alert, Queue, QueueMetrics } from "../lib/types";

interface Stats {
  totals: Record<string, number>;
  throughputPerMin: number;
  errorRate: number;
}

function health(q: QueueMetrics): "good" | "warn" | "bad" {
  if (q.successRate !== null && q.successRate < 0.9) return "bad";
  if ((q.oldestWaitingAgeMs ?? 0) > 60_000 || (q.successRate !== null && q.successRate < 0.99)) return "warn";
  return "good";
}

export function Overview() {
  const stats = useResource(() => apiIfOffered<Stats>("/stats"), []);
  const metrics = useResource(() => apiIfOffered<{ items: QueueMetrics[] }>("/metrics/queues", { query: { window: "1h" } }), []);
  const alerts = useResource(() => apiIfOffered<{ items: Alert[] }>("/alerts", { query: { status: "open" } }), []);
  const queues = useResource(() => api<{ items: Queue[] }>("/queues"), []);
  return (
    <div class="page">
      <h1>Overview</h1>
      {alerts.data && alerts.data.items.length > 0 && (
        <section class="panel alerts-open" aria-label="Open alerts">
          <h2>Open alerts</h2>
          <ul>
            {alerts.data.items.map((a) => (
              <li key={a.alertId}><strong>{a.severity}</strong> {a.kind} {a.queue ?? ""}</li>
            ))}
          </ul>
        </section>
      )}
      {isMissingRoute(stats.error) ? (
        <Unavailable what="Totals" route="/api/v1/stats" />
      ) : (
        <>
          <ErrorNote error={stats.error} />
          {stats.data && (
            <div class="bignums">
              <div class="bignum"><span>Throughput</span><strong>{stats.data.throughputPerMin.toFixed(1)}/min</strong></div>
              <div class="bignum"><span>Error rate</span><strong>{(stats.data.errorRate * 100).toFixed(2)} %</strong></div>
              {Object.entries(stats.data.totals).map(([status, n]) => (
                <div class="bignum"><span>{status}</span><strong>{count(n)}</strong></div>
              ))}
            </div>
          )}
        </>
      )}
      {isMissingRoute(metrics.error) ? (
        <>
          <Unavailable what="Queue metrics (p95, success rate, workers needed)" route="/api/v1/metrics/queues" />
          <ErrorNote error={queues.error} />
          <table aria-label="Queues now">
            <thead>
              <tr><th scope="col">Queue</th><th scope="col" class="num">Waiting</th><th scope="col" class="num">Running</th><th scope="col" class="num">Completed</th><th scope="col" class="num">Failed</th><th scope="col" class="num">Oldest waiting</th><th scope="col" class="num">Per min</th></tr>
            </thead>
            <tbody>
              {(queues.data?.items ?? []).map((q) => (
                <tr key={q.name}>
                  <th scope="row">{q.name}{q.paused ? " (paused)" : ""}</th>
                  <td class="num">{count((q.counts.pending ?? 0) + (q.counts.queued ?? 0) + (q.counts.retrying ?? 0))}</td>
                  <td class="num">{count(q.counts.running ?? 0)}</td>
                  <td class="num">{count(q.counts.completed ?? 0)}</td>
                  <td class="num">{count(q.counts.failed ?? 0)}</td>
                  <td class="num">{duration(q.oldestWaitingAgeMs)}</td>
                  <td class="num">{q.throughputPerMin.toFixed(1)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </>
      ) : (
        <>
          <ErrorNote error={metrics.error} />
          <table aria-label="Queues in the last hour">
            <thead>
              <tr><th scope="col">Queue</th><th scope="col">Health</th><th scope="col" class="num">Backlog</th><th scope="col" class="num">Completed</th><th scope="col" class="num">Failed</th><th scope="col" class="num">Per min</th><th scope="col" class="num">p95</th><th scope="col" class="num">Oldest waiting</th><th scope="col" class="num">Workers needed</th></tr>
            </thead>
            <tbody>
              {(metrics.data?.items ?? []).map((q) => (
                <tr key={q.queue}>
                  <th scope="row">{q.queue}</th>
                  <td><span class={`health health-${health(q)}`}>{health(q)}</span></td>
                  <td class="num">{count(q.backlog)}</td>
                  <td class="num">{count(q.counts.completed ?? 0)}</td>
                  <td class="num">{count(q.counts.failed ?? 0)}</td>
                  <td class="num">{q.throughputPerMin.toFixed(1)}</td>
                  <td class="num">{duration(q.durationMs.p95)}</td>
                  <td class="num">{duration(q.oldestWaitingAgeMs)}</td>
                  <td class="num">{q.workersNeeded ?? "—"}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </>
      )}
    </div>
  );
}
