// Queues: figures by status, pause/resume, and each queue's config form.
import { useState } from "preact/hooks";
import { ErrorNote, Panel } from "../components/bits";
import { api } from "../lib/api";
import { count, duration } from "../lib/format";
import { useLive, useResource } from "../lib/hooks";
import type { Queue } from "../lib/types";
import { QueueForm } from "./QueueForm";

const SHOWN = ["pending", "queued", "running", "retrying", "scheduled", "blocked", "completed", "failed", "cancelled"];
const REFRESH_MS = 2000;

/** The queue's limits in a few words ("50 per 1 s, 20 at once, max 10,000"). */
function limits(q: Queue): string {
  const c = q.config;
  const parts = [
    c.rateLimit && `${c.rateLimit.limit} per ${duration(c.rateLimit.periodMs)}`,
    c.concurrency !== null && `${c.concurrency} at once`,
    c.maxLength !== null && `max ${count(c.maxLength)}`,
    c.retry && `retry ${c.retry.strategy}`,
  ].filter(Boolean);
  return parts.length ? parts.join(", ") : "no limits";
}

export function Queues() {
  const queues = useResource(() => api<{ items: Queue[] }>("/queues"), []);
  const [editing, setEditing] = useState<string | null>(null);
  const [error, setError] = useState<unknown>(undefined);
  const [lastLoad, setLastLoad] = useState(0);
  // Counts change with every job event: re-read at most every REFRESH_MS while events flow.
  useLive(() => {
    if (Date.now() - lastLoad > REFRESH_MS) {
      setLastLoad(Date.now());
      queues.reload();
    }
  });
  const toggle = async (q: Queue) => {
    try {
      await api(`/queues/${encodeURIComponent(q.name)}/${q.paused ? "resume" : "pause"}`, { method: "POST" });
      setError(undefined);
      queues.reload();
    } catch (reason) {
      setError(reason);
    }
  };
  const items = queues.data?.items ?? [];
  const selected = items.find((q) => q.name === editing);
  return (
    <div class="page">
      <h1>Queues</h1>
      <ErrorNote error={queues.error ?? error} />
      <table>
        <thead>
          <tr>
            <th scope="col">Queue</th><th scope="col">State</th><th scope="col">Limits</th>
            {SHOWN.map((s) => <th scope="col" class="num">{s}</th>)}
            <th scope="col" class="num">Oldest waiting</th><th scope="col" class="num">Per min</th><th scope="col">Actions</th>
          </tr>
        </thead>
        <tbody>
          {items.map((q) => (
            <tr key={q.name} data-queue={q.name}>
              <th scope="row">{q.name}</th>
              <td>{q.paused ? <span class="badge status-failed">paused</span> : <span class="badge status-completed">running</span>}</td>
              <td>{limits(q)}</td>
              {SHOWN.map((s) => <td class="num">{count(q.counts[s] ?? 0)}</td>)}
              <td class="num">{duration(q.oldestWaitingAgeMs)}</td>
              <td class="num">{q.throughputPerMin.toFixed(1)}</td>
              <td class="actions">
                <button type="button" onClick={() => toggle(q)} aria-label={`${q.paused ? "Resume" : "Pause"} queue ${q.name}`}>
                  {q.paused ? "Resume" : "Pause"}
                </button>
                <button type="button" onClick={() => setEditing(editing === q.name ? null : q.name)} aria-label={`Configure queue ${q.name}`}>
                  Configure
                </button>
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      {!queues.loading && items.length === 0 && <p class="muted">No queues yet: a queue appears with its first job or config.</p>}
      {selected && (
        <Panel title={`Config of ${selected.name}`}>
          <QueueForm key={selected.name} queue={selected} onSaved={() => queues.reload()} />
        </Panel>
      )}
    </div>
  );
}
