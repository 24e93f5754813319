// Charts (uPlot, loaded with this page only): processed over time by queue, success vs failure, the duration
// histogram, submissions by hour of day, recent runs per worker and a batch's dependency graph.
import { useState } from "preact/hooks";
import { Unavailable } from "../components/bits";
import { BatchGraph } from "../charts/BatchGraph";
import { WorkerGantt } from "../charts/Gantt";
import { SubmissionsHeatmap } from "../charts/Heatmap";
import { DurationHistogram } from "../charts/Histogram";
import { ProcessedByQueue, SuccessVsFailure } from "../charts/Timelines";
import { apiIfOffered } from "../lib/api";
import { isMissingRoute, useResource } from "../lib/hooks";
import { useReloadOnEvents, type Window, WindowSelect } from "../lib/windows";

export function Charts() {
  const [window, setWindow] = useState<Window>("1h");
  // Charts redraw from scratch: re-read at most every 10 s while events arrive.
  const [nonce, setNonce] = useState(0);
  useReloadOnEvents(() => setNonce((n) => n + 1), 10_000);
  const probe = useResource(() => apiIfOffered<unknown>("/metrics/jobs/timeline", { query: { window: "15m" } }), []);
  return (
    <div class="page">
      <div class="page-head">
        <h1>Charts</h1>
        <WindowSelect value={window} onChange={setWindow} />
      </div>
      {isMissingRoute(probe.error) ? (
        <Unavailable what="Charts" route="/api/v1/metrics/jobs/timeline" />
      ) : (
        <div class="charts">
          <ProcessedByQueue window={window} nonce={nonce} />
          <SuccessVsFailure window={window} nonce={nonce} />
          <DurationHistogram window={window} nonce={nonce} />
          <WorkerGantt nonce={nonce} />
          <SubmissionsHeatmap nonce={nonce} />
          <BatchGraph nonce={nonce} />
        </div>
      )}
    </div>
  );
}
