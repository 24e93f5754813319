// Submissions by hour of day over the last 7 days (/metrics/jobs/timeline, step 1h): a table of coloured
// cells, one row a day, one column an hour (local time), shaded from the quietest hour to the busiest. Each cell
// holds its number, so it reads without colour.
import { useMemo } from "preact/hooks";
import { ErrorNote } from "../components/bits";
import { apiIfOffered } from "../lib/api";
import { useResource } from "../lib/hooks";
import type { Point } from "./Timelines";

const HOURS = Array.from({ length: 24 }, (_, h) => h);

/** Light to dark blue; the text is black or white, whichever contrasts more (WCAG luminance). */
function cellStyle(share: number): { background: string; color: string } {
  const from = [240, 245, 251];
  const to = [11, 61, 122];
  const rgb = from.map((f, i) => Math.round(f + ((to[i] ?? 0) - f) * share));
  const lin = rgb.map((c) => { const s = c / 255; return s <= 0.03928 ? s / 12.92 : ((s + 0.055) / 1.055) ** 2.4; });
  const luminance = 0.2126 * (lin[0] ?? 0) + 0.7152 * (lin[1] ?? 0) + 0.0722 * (lin[2] ?? 0);
  const onBlack = (luminance + 0.05) / 0.05;
  const onWhite = 1.05 / (luminance + 0.05);
  return { background: `rgb(${rgb.join(",")})`, color: onBlack >= onWhite ? "#000" : "#fff" };
}

export function SubmissionsHeatmap({ nonce }: { nonce: number }) {
  const timeline = useResource(() => apiIfOffered<{ items: Point[] }>("/metrics/jobs/timeline", { query: { window: "7d", step: "1h" } }), [nonce]);
  const grid = useMemo(() => {
    const days = new Map<string, number[]>();
    let max = 0;
    for (const p of timeline.data?.items ?? []) {
      const at = new Date(p.at);
      const day = at.toLocaleDateString(undefined, { weekday: "short", month: "short", day: "numeric" });
      const row = days.get(day) ?? new Array<number>(24).fill(0);
      row[at.getHours()] = (row[at.getHours()] ?? 0) + p.submitted;
      days.set(day, row);
      max = Math.max(max, row[at.getHours()] ?? 0);
    }
    const counts = [...days.values()].flat().filter((n) => n > 0);
    return { days: [...days.entries()], max, min: counts.length ? Math.min(...counts) : 0 };
  }, [timeline.data]);
  return (
    <section class="panel chart wide" aria-label="Submissions by hour of day">
      <h2>Submissions by hour of day (last 7 days)</h2>
      <ErrorNote error={timeline.error} />
      {timeline.data && (
        <div class="heatmap-wrap" tabIndex={0} role="region" aria-label="Submissions heatmap (scrolls sideways)">
          <table class="heatmap" aria-label="Jobs submitted per hour, one row a day, local time">
            <thead>
              <tr><th scope="col">Day</th>{HOURS.map((h) => <th key={h} scope="col" class="num">{String(h).padStart(2, "0")}</th>)}</tr>
            </thead>
            <tbody>
              {grid.days.map(([day, row]) => (
                <tr key={day}>
                  <th scope="row">{day}</th>
                  {row.map((n, h) => (
                    <td key={h} class="num" style={cellStyle(n && grid.max > grid.min ? 0.15 + (0.85 * (n - grid.min)) / (grid.max - grid.min) : n ? 1 : 0)} title={`${day} ${h}:00: ${n} submitted`}>{n || ""}</td>
                  ))}
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}
