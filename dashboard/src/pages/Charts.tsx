// Charts: processed over time (uPlot, loaded with this page only), from /metrics/jobs/timeline.
import { useEffect, useRef } from "preact/hooks";
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";
import { ErrorNote, Unavailable } from "../components/bits";
import { apiIfOffered } from "../lib/api";
import { isMissingRoute, useResource } from "../lib/hooks";

interface Point {
  at: string;
  submitted: number;
  completed: number;
  failed: number;
  retried: number;
}

function Timeline({ items }: { items: Point[] }) {
  const box = useRef<HTMLDivElement>(null);
  useEffect(() => {
    if (!box.current) return;
    const data: uPlot.AlignedData = [
      items.map((p) => new Date(p.at).getTime() / 1000),
      items.map((p) => p.submitted), items.map((p) => p.completed), items.map((p) => p.failed),
    ];
    const plot = new uPlot({
      width: Math.min(900, box.current.clientWidth || 900), height: 280,
      series: [{}, { label: "submitted", stroke: "#1f5fa8" }, { label: "completed", stroke: "#1d7a3a" }, { label: "failed", stroke: "#b3261e" }],
    }, data, box.current);
    return () => plot.destroy();
  }, [items]);
  return <div ref={box} role="img" aria-label="Jobs processed over time" />;
}

export function Charts() {
  const timeline = useResource(() => apiIfOffered<{ items: Point[] }>("/metrics/jobs/timeline", { query: { window: "1h", step: "1m" } }), []);
  return (
    <div class="page">
      <h1>Charts</h1>
      {isMissingRoute(timeline.error) ? (
        <Unavailable what="Processed over time" route="/api/v1/metrics/jobs/timeline" />
      ) : (
        <>
          <ErrorNote error={timeline.error} />
          {timeline.data && <Timeline items={timeline.data.items} />}
        </>
      )}
    </div>
  );
}
