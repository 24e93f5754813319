// Processed over time by queue (one line per queue) and success vs failure (bars), from /metrics/jobs/timeline.
import { useMemo } from "preact/hooks";
import type uPlot from "uplot";
import { ErrorNote } from "../components/bits";
import { apiIfOffered } from "../lib/api";
import { useResource } from "../lib/hooks";
import type { QueueMetrics } from "../lib/types";
import { STEP, type Window } from "../lib/windows";
import { bars, PALETTE, Plot, seconds } from "./plot";

export interface Point { at: string; submitted: number; completed: number; failed: number; retried: number }
const MAX_QUEUES = 8; // the busiest; more lines than this cannot be told apart

export function ProcessedByQueue({ window, nonce }: { window: Window; nonce: number }) {
  const series = useResource(async () => {
    const metrics = await apiIfOffered<{ items: QueueMetrics[] }>("/metrics/queues", { query: { window } });
    const finished = (q: QueueMetrics) => (q.counts.completed ?? 0) + (q.counts.failed ?? 0);
    const busiest = [...metrics.items].sort((a, b) => finished(b) - finished(a))
      .slice(0, MAX_QUEUES);
    return Promise.all(busiest.map(async (q) => ({
      queue: q.queue,
      items: (await apiIfOffered<{ items: Point[] }>("/metrics/jobs/timeline", { query: { queue: q.queue, window, step: STEP[window] } })).items,
    })));
  }, [window, nonce]);
  const chart = useMemo(() => {
    const lines = series.data ?? [];
    if (lines.length === 0) return null;
    const data: uPlot.AlignedData = [
      (lines[0]?.items ?? []).map((p) => seconds(p.at)),
      ...lines.map((l) => l.items.map((p) => p.completed + p.failed)),
    ];
    const options = {
      series: [{}, ...lines.map((l, i) => ({ label: l.queue, stroke: PALETTE[i % PALETTE.length] ?? "#333", width: 2 }))],
      axes: [{}, { label: "jobs finished per step" }],
    };
    return { data, options, lines };
  }, [series.data]);
  return (
    <section class="panel chart" aria-label="Processed over time by queue">
      <h2>Processed over time by queue</h2>
      <ErrorNote error={series.error} />
      {chart ? (
        <>
          <Plot options={chart.options} data={chart.data} label={`Jobs finished per ${STEP[window]} by queue over the last ${window}`} />
          <p class="muted sr-summary">
            Finished in the window: {chart.lines.map((l) => `${l.queue} ${l.items.reduce((n, p) => n + p.completed + p.failed, 0)}`).join(", ")}.
          </p>
        </>
      ) : !series.loading && <p class="muted">No queue had jobs in the last {window}.</p>}
    </section>
  );
}

export function SuccessVsFailure({ window, nonce }: { window: Window; nonce: number }) {
  const timeline = useResource(() => apiIfOffered<{ items: Point[] }>("/metrics/jobs/timeline", { query: { window, step: STEP[window] } }), [window, nonce]);
  const chart = useMemo(() => {
    const items = timeline.data?.items ?? [];
    const data: uPlot.AlignedData = [
      items.map((p) => seconds(p.at)), items.map((p) => p.completed), items.map((p) => p.failed), items.map((p) => p.retried),
    ];
    const options = {
      series: [
        {},
        { label: "completed", stroke: "#1d7a3a", fill: "rgba(29,122,58,0.55)", paths: bars },
        { label: "failed", stroke: "#b3261e", fill: "rgba(179,38,30,0.7)", paths: bars },
        { label: "retried", stroke: "#8a5a00", width: 2 },
      ],
      axes: [{}, { label: "per step" }],
    };
    const sum = (k: keyof Omit<Point, "at">) => items.reduce((n, p) => n + p[k], 0);
    return { data, options, completed: sum("completed"), failed: sum("failed"), retried: sum("retried") };
  }, [timeline.data]);
  return (
    <section class="panel chart" aria-label="Success vs failure">
      <h2>Success vs failure</h2>
      <ErrorNote error={timeline.error} />
      {timeline.data && (
        <>
          <Plot options={chart.options} data={chart.data} label={`Completed, failed and retried per ${STEP[window]} over the last ${window}`} />
          <p class="muted">In the window: {chart.completed} completed, {chart.failed} failed, {chart.retried} retried.</p>
        </>
      )}
    </section>
  );
}
