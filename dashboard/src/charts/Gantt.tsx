// Recent job runs per worker: the attempts of the latest jobs (GET /jobs items carry attemptHistory with
// workerId, startedAt, endedAt), one lane per worker, drawn as bars on a uPlot time axis.
import { useMemo } from "preact/hooks";
import type uPlot from "uplot";
import { ErrorNote } from "../components/bits";
import { api } from "../lib/api";
import { useResource } from "../lib/hooks";
import type { Job, Page } from "../lib/types";
import { Plot } from "./plot";

interface Run { worker: string; start: number; end: number; status: string; label: string }
const RECENT = 300;
const COLOURS: Record<string, string> = { completed: "#1d7a3a", failed: "#b3261e", retrying: "#8a5a00", running: "#1f5fa8" };

function runsOf(jobs: Job[], now: number): Run[] {
  const runs: Run[] = [];
  for (const job of jobs) {
    for (const a of job.attemptHistory ?? []) {
      if (!a.workerId || !a.startedAt) continue;
      runs.push({
        worker: a.workerId, start: new Date(a.startedAt).getTime() / 1000,
        end: (a.endedAt ? new Date(a.endedAt).getTime() : now) / 1000,
        status: a.endedAt ? (a.error ? "failed" : "completed") : "running", label: `${job.jobType} #${a.attempt}`,
      });
    }
  }
  return runs;
}

export function WorkerGantt({ nonce }: { nonce: number }) {
  const recent = useResource(() => api<Page<Job>>("/jobs", { query: { limit: RECENT } }), [nonce]);
  const chart = useMemo(() => {
    const runs = runsOf(recent.data?.items ?? [], Date.now());
    if (runs.length === 0) return null;
    const workers = [...new Set(runs.map((r) => r.worker))].sort();
    const lane = new Map(workers.map((w, i) => [w, i]));
    const from = Math.min(...runs.map((r) => r.start));
    const to = Math.max(...runs.map((r) => r.end));
    const draw = (u: uPlot) => {
      const ctx = u.ctx;
      const laneHeight = Math.abs(u.valToPos(0, "y", true) - u.valToPos(1, "y", true));
      ctx.save();
      for (const run of runs) {
        const x0 = u.valToPos(run.start, "x", true);
        const x1 = Math.max(x0 + 2, u.valToPos(run.end, "x", true));
        const y = u.valToPos(lane.get(run.worker) ?? 0, "y", true);
        ctx.fillStyle = COLOURS[run.status] ?? "#4d5560";
        ctx.fillRect(x0, y - laneHeight * 0.35, x1 - x0, laneHeight * 0.7);
      }
      ctx.restore();
    };
    const options: Omit<uPlot.Options, "width" | "height"> = {
      scales: { y: { range: [-0.5, workers.length - 0.5] } },
      series: [{}, { label: "runs", show: false }],
      axes: [{}, { values: (_u, ticks) => ticks.map((t) => (Number.isInteger(t) ? (workers[t] ?? "").slice(0, 14) : "")), size: 110, label: "worker" }],
      hooks: { draw: [draw] },
      legend: { show: false },
    };
    const data: uPlot.AlignedData = [[from, to], [null, null]];
    const byWorker = workers.map((w) => ({ worker: w, runs: runs.filter((r) => r.worker === w) }));
    return { options, data, byWorker, height: Math.max(160, 48 + workers.length * 34) };
  }, [recent.data]);
  return (
    <section class="panel chart" aria-label="Recent job runs per worker">
      <h2>Recent job runs per worker</h2>
      <p class="muted">The attempts of the latest {RECENT} jobs; green completed, red failed, blue still running.</p>
      <ErrorNote error={recent.error} />
      {chart ? (
        <>
          <Plot options={chart.options} data={chart.data} height={chart.height} label={`Job runs on ${chart.byWorker.length} workers over time`} />
          <details>
            <summary>Runs per worker as text</summary>
            <ul>
              {chart.byWorker.map((w) => (
                <li key={w.worker}>{w.worker}: {w.runs.length} runs, {w.runs.filter((r) => r.status === "failed").length} failed</li>
              ))}
            </ul>
          </details>
        </>
      ) : !recent.loading && <p class="muted">No recent runs.</p>}
    </section>
  );
}
