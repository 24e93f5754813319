// The duration histogram (/metrics/job-duration-histogram): log-spaced buckets, drawn evenly spaced so
// the x axis reads as a log scale; each bar is that bucket's own count.
import { useMemo, useState } from "preact/hooks";
import type uPlot from "uplot";
import { ErrorNote } from "../components/bits";
import { apiIfOffered } from "../lib/api";
import { duration } from "../lib/format";
import { useResource } from "../lib/hooks";
import type { Window } from "../lib/windows";
import { bars, Plot } from "./plot";

interface Bucket { le: number | null; count: number }

export function DurationHistogram({ window, nonce }: { window: Window; nonce: number }) {
  const [queue, setQueue] = useState("");
  const histogram = useResource(
    () => apiIfOffered<{ buckets: Bucket[] }>("/metrics/job-duration-histogram", { query: { window, queue: queue.trim() } }),
    [window, queue, nonce],
  );
  const chart = useMemo(() => {
    const buckets = histogram.data?.buckets ?? [];
    // Trim the empty tails so the bars that matter are wide enough to read.
    const first = Math.max(0, buckets.findIndex((b) => b.count > 0) - 1);
    const lastFull = buckets.length - 1 - [...buckets].reverse().findIndex((b) => b.count > 0);
    const shown = buckets.some((b) => b.count > 0) ? buckets.slice(first, Math.min(buckets.length, lastFull + 2)) : [];
    const labels = shown.map((b) => (b.le === null ? "+Inf" : `≤ ${duration(b.le)}`));
    const data: uPlot.AlignedData = [shown.map((_, i) => i), shown.map((b) => b.count)];
    const options: Omit<uPlot.Options, "width" | "height"> = {
      scales: { x: { time: false } },
      series: [{ label: "bucket", value: (_u, i) => (i === null ? "" : labels[i] ?? "") },
        { label: "attempts", stroke: "#1f5fa8", fill: "rgba(31,95,168,0.6)", paths: bars }],
      axes: [{ values: (_u, ticks) => ticks.map((t) => labels[t] ?? ""), label: "duration (bucket upper bound)" }, { label: "attempts" }],
    };
    const total = shown.reduce((n, b) => n + b.count, 0);
    return { data, options, shown, labels, total };
  }, [histogram.data]);
  return (
    <section class="panel chart" aria-label="Duration histogram">
      <div class="panel-head">
        <h2>Duration histogram</h2>
        <label class="filter">Queue<input value={queue} placeholder="every queue" onChange={(e) => setQueue((e.currentTarget as HTMLInputElement).value)} /></label>
      </div>
      <ErrorNote error={histogram.error} />
      {chart.shown.length > 0 ? (
        <>
          <Plot options={chart.options} data={chart.data} label={`Attempt durations over the last ${window}, ${chart.total} attempts`} />
          <details>
            <summary>The buckets as a table</summary>
            <table class="small" aria-label="Duration buckets">
              <thead><tr><th scope="col">Duration</th><th scope="col" class="num">Attempts</th></tr></thead>
              <tbody>{chart.shown.map((b, i) => <tr key={i}><td>{chart.labels[i]}</td><td class="num">{b.count}</td></tr>)}</tbody>
            </table>
          </details>
        </>
      ) : !histogram.loading && <p class="muted">No finished attempts in the last {window}.</p>}
    </section>
  );
}
