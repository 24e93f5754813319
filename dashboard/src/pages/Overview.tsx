// Overview: open alerts on top, big numbers with trends, then every queue with its figures and health.
// Figures are the analytics routes' (/stats, /metrics/queues, /metrics/jobs/timeline) over the chosen
// window; running counts and pause state come from /queues. Live events re-read them (throttled).
import { useState } from "preact/hooks";
import { ErrorNote, Unavailable } from "../components/bits";
import { api, apiIfOffered } from "../lib/api";
import { count, duration, when } from "../lib/format";
import { isMissingRoute, useResource } from "../lib/hooks";
import type { Alert, Queue, QueueMetrics } from "../lib/types";
import { PREVIOUS, useReloadOnEvents, type Window, WindowSelect } from "../lib/windows";

interface EventCounts { submitted: number; completed: number; failed: number; retried: number; cancelled: number }
interface Stats {
  totals: Record<string, number>;
  queues: { queue: string; counts: EventCounts; throughputPerMin: number; errorRate: number | null }[];
  throughputPerMin: number;
  errorRate: number | null;
}
interface Point { at: string; submitted: number; completed: number; failed: number; retried: number }

export type Health = "good" | "warn" | "bad";
export const HEALTH_RULE =
  "bad: success rate under 90 % or a job waiting over 5 min; warn: success rate under 99 %, a job waiting over 1 min, " +
  "or the queue paused; good otherwise.";

/** The health colour of a queue (the rule is HEALTH_RULE, shown on the page). */
export function health(q: QueueMetrics, paused: boolean): Health {
  const success = q.successRate;
  const oldest = q.oldestWaitingAgeMs ?? 0;
  if ((success !== null && success < 0.9) || oldest > 300_000) return "bad";
  if ((success !== null && success < 0.99) || oldest > 60_000 || paused) return "warn";
  return "good";
}

type Trend = { now: number; before: number } | null;

/** This window's sum of `field` against the window before it, from a timeline holding both. */
function trendOf(points: Point[] | undefined, size: number, field: keyof Omit<Point, "at">): Trend {
  if (!points || points.length < 2 * size) return null;
  const sum = (ps: Point[]) => ps.reduce((n, p) => n + p[field], 0);
  return { now: sum(points.slice(-size)), before: sum(points.slice(-2 * size, -size)) };
}

function TrendNote({ trend, upIsGood }: { trend: Trend; upIsGood: boolean }) {
  if (!trend) return <small class="trend muted">no earlier window</small>;
  const { now, before } = trend;
  if (before === 0) return <small class="trend muted">{now === 0 ? "none before either" : "none in the window before"}</small>;
  const change = (now - before) / before;
  const arrow = change > 0.005 ? "▲" : change < -0.005 ? "▼" : "■";
  const good = change === 0 || (change > 0) === upIsGood;
  return (
    <small class={`trend ${Math.abs(change) < 0.005 ? "muted" : good ? "trend-good" : "trend-bad"}`}>
      {arrow} {(change * 100).toFixed(0)} % vs the window before ({count(before)})
    </small>
  );
}

function BigNumber({ label, value, trend, upIsGood = true }: { label: string; value: string; trend?: Trend; upIsGood?: boolean }) {
  return (
    <div class="bignum" data-figure={label}>
      <span>{label}</span>
      <strong>{value}</strong>
      {trend !== undefined && <TrendNote trend={trend} upIsGood={upIsGood} />}
    </div>
  );
}

function OpenAlerts({ items }: { items: Alert[] }) {
  if (items.length === 0) return null;
  return (
    <section class="panel alerts-open" aria-label="Open alerts">
      <h2>Open alerts ({items.length})</h2>
      <ul>
        {items.slice(0, 10).map((a) => (
          <li key={a.alertId}>
            <span class={`badge severity-${a.severity}`}>{a.severity}</span> {a.kind}
            {a.queue ? ` on ${a.queue}` : ""}{a.jobType ? ` / ${a.jobType}` : ""}, since {when(a.openedAt)}
          </li>
        ))}
      </ul>
      {items.length > 10 && <p><a href="/alerts">All {items.length} open alerts</a></p>}
    </section>
  );
}

export function Overview() {
  const [window, setWindow] = useState<Window>("1h");
  const previous = PREVIOUS[window];
  const stats = useResource(() => apiIfOffered<Stats>("/stats", { query: { window } }), [window]);
  const metrics = useResource(() => apiIfOffered<{ items: QueueMetrics[] }>("/metrics/queues", { query: { window } }), [window]);
  const timeline = useResource(
    () => (previous ? apiIfOffered<{ items: Point[] }>("/metrics/jobs/timeline", { query: { window: previous.window, step: previous.step } })
      : Promise.resolve({ items: [] as Point[] })),
    [window],
  );
  const alerts = useResource(() => apiIfOffered<{ items: Alert[] }>("/alerts", { query: { status: "open" } }), []);
  const queues = useResource(() => api<{ items: Queue[] }>("/queues"), []);
  // The hook for the notifier's `queue_stats` messages (DESIGN §7, at most 1/s per queue): once they carry a
  // queue's backlog, running and rates, patch that queue's row from the message here instead of re-reading.
  // Until then every change (queue_stats included) re-reads the figures, at most every 3 s.
  useReloadOnEvents(() => { stats.reload(); metrics.reload(); queues.reload(); timeline.reload(); alerts.reload(); });

  const now = queues.data ? new Map(queues.data.items.map((q) => [q.name, q])) : new Map<string, Queue>();
  const size = previous?.points ?? 0;
  const trend = (field: keyof Omit<Point, "at">) => (previous ? trendOf(timeline.data?.items, size, field) : null);
  const windowCounts = (stats.data?.queues ?? []).reduce(
    (sum, q) => ({ submitted: sum.submitted + q.counts.submitted, completed: sum.completed + q.counts.completed, failed: sum.failed + q.counts.failed }),
    { submitted: 0, completed: 0, failed: 0 },
  );
  const totals = stats.data?.totals ?? {};
  const waiting = (totals.pending ?? 0) + (totals.queued ?? 0) + (totals.retrying ?? 0);

  return (
    <div class="page">
      <div class="page-head">
        <h1>Overview</h1>
        <WindowSelect value={window} onChange={setWindow} />
      </div>
      <OpenAlerts items={alerts.data?.items ?? []} />
      {isMissingRoute(stats.error) ? (
        <Unavailable what="Totals" route="/api/v1/stats" />
      ) : (
        <>
          <ErrorNote error={stats.error} />
          {stats.data && (
            <div class="bignums" aria-label={`Totals over the last ${window}`} role="group">
              <BigNumber label="Submitted" value={count(windowCounts.submitted)} trend={trend("submitted")} />
              <BigNumber label="Completed" value={count(windowCounts.completed)} trend={trend("completed")} />
              <BigNumber label="Failed" value={count(windowCounts.failed)} trend={trend("failed")} upIsGood={false} />
              <BigNumber label="Throughput" value={`${stats.data.throughputPerMin.toFixed(1)}/min`} />
              <BigNumber label="Error rate" value={stats.data.errorRate === null ? "—" : `${(stats.data.errorRate * 100).toFixed(2)} %`} />
              <BigNumber label="Waiting now" value={count(waiting)} />
              <BigNumber label="Running now" value={count(totals.running ?? 0)} />
            </div>
          )}
        </>
      )}
      {isMissingRoute(metrics.error) ? (
        <Unavailable what="Queue metrics (p95, success rate, workers needed)" route="/api/v1/metrics/queues" />
      ) : (
        <>
          <ErrorNote error={metrics.error ?? queues.error} />
          <table aria-label={`Queues over the last ${window}`} class="overview-queues">
            <caption class="muted">Completed, failed, per min and p95 over the last {window}; waiting, running and oldest waiting now. Health: {HEALTH_RULE}</caption>
            <thead>
              <tr>
                <th scope="col">Queue</th><th scope="col">Health</th><th scope="col" class="num">Waiting</th>
                <th scope="col" class="num">Running</th><th scope="col" class="num">Completed</th><th scope="col" class="num">Failed</th>
                <th scope="col" class="num">Per min</th><th scope="col" class="num">p95</th><th scope="col" class="num">Oldest waiting</th>
                <th scope="col" class="num">Workers needed</th>
              </tr>
            </thead>
            <tbody>
              {(metrics.data?.items ?? []).map((q) => {
                const current = now.get(q.queue);
                const h = health(q, current?.paused ?? false);
                return (
                  <tr key={q.queue} data-queue={q.queue}>
                    <th scope="row"><a href={`/jobs?queue=${encodeURIComponent(q.queue)}`}>{q.queue}</a>{current?.paused ? " (paused)" : ""}</th>
                    <td><span class={`health health-${h}`}><span aria-hidden="true">● </span>{h}</span></td>
                    <td class="num" data-col="waiting">{count(q.backlog)}</td>
                    <td class="num" data-col="running">{count(current?.counts.running ?? 0)}</td>
                    <td class="num" data-col="completed">{count(q.counts.completed ?? 0)}</td>
                    <td class="num" data-col="failed">{count(q.counts.failed ?? 0)}</td>
                    <td class="num" data-col="throughput">{q.throughputPerMin.toFixed(1)}</td>
                    <td class="num" data-col="p95">{duration(q.durationMs.p95)}</td>
                    <td class="num" data-col="oldest">{duration(q.oldestWaitingAgeMs)}</td>
                    <td class="num" data-col="workers">{q.workersNeeded ?? "—"}</td>
                  </tr>
                );
              })}
            </tbody>
          </table>
          {metrics.data && metrics.data.items.length === 0 && <p class="muted">No queue had jobs in the last {window}.</p>}
        </>
      )}
    </div>
  );
}
