// The analytics windows (DESIGN §5) and how to compare one with the window before it.
import { useEffect, useRef } from "preact/hooks";
import { useLive } from "./hooks";
import type { LiveMessage } from "./types";

export type Window = "15m" | "1h" | "24h" | "7d";
export const WINDOWS: Window[] = ["15m", "1h", "24h", "7d"];

/**
 * The timeline call that holds this window and the one before it: a longer window with a step that
 * divides this one (`points` steps per window). 7d has no longer window: no trend.
 */
export const PREVIOUS: Record<Window, { window: Window; step: string; points: number } | null> = {
  "15m": { window: "1h", step: "1m", points: 15 },
  "1h": { window: "24h", step: "5m", points: 12 },
  "24h": { window: "7d", step: "1h", points: 24 },
  "7d": null,
};

/** Default timeline step of each window for the charts (at most a few hundred points). */
export const STEP: Record<Window, string> = { "15m": "1m", "1h": "1m", "24h": "15m", "7d": "1h" };

// Job events that change the figures; a `queue_stats` message (the notifier's per-queue summary,
// DESIGN §7) will let the overview update its rows without re-reading: it counts as a change today.
const CHANGES = new Set(["job_update", "job_completed", "job_failed", "job_retry", "alert", "queue_stats"]);

/** Call `reload` when live events report changes, at most once every `ms` (the figures are aggregates). */
export function useReloadOnEvents(reload: () => void, ms = 3000, filter: (m: LiveMessage) => boolean = (m) => CHANGES.has(m.type)): void {
  const last = useRef(0);
  const timer = useRef<number | undefined>(undefined);
  const latest = useRef(reload);
  latest.current = reload;
  useEffect(() => () => window.clearTimeout(timer.current), []);
  useLive((batch) => {
    if (!batch.some(filter) || timer.current !== undefined) return;
    const wait = Math.max(0, last.current + ms - Date.now());
    timer.current = window.setTimeout(() => {
      timer.current = undefined;
      last.current = Date.now();
      latest.current();
    }, wait);
  });
}

export function WindowSelect({ value, onChange }: { value: Window; onChange: (w: Window) => void }) {
  return (
    <label class="filter">
      Window
      <select value={value} onChange={(e) => onChange((e.currentTarget as HTMLSelectElement).value as Window)}>
        {WINDOWS.map((w) => <option key={w} value={w}>last {w}</option>)}
      </select>
    </label>
  );
}
