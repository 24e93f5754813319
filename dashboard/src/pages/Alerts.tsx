// Alerts: open and resolved (GET /alerts). Rules CRUD lands with the analytics routes (/alert-rules).
import { useState } from "preact/hooks";
import { ErrorNote, Unavailable } from "../components/bits";
import { apiIfOffered } from "../lib/api";
import { when } from "../lib/format";
import { isMissingRoute, useLive, useResource } from "../lib/hooks";
import type { Alert } from "../lib/types";

export function Alerts() {
  const [status, setStatus] = useState<"open" | "resolved">("open");
  const list = useResource(() => apiIfOffered<{ items: Alert[] }>("/alerts", { query: { status } }), [status]);
  const rules = useResource(() => apiIfOffered<{ items: { id: string; name: string; metric: string; op: string; threshold: number }[] }>("/alert-rules"), []);
  useLive((batch) => {
    if (batch.some((m) => m.type === "alert")) list.reload();
  });
  return (
    <div class="page">
      <h1>Alerts</h1>
      {isMissingRoute(list.error) ? (
        <Unavailable what="Alerts" route="/api/v1/alerts" />
      ) : (
        <>
          <label class="filter">
            Show
            <select value={status} onChange={(e) => setStatus((e.currentTarget as HTMLSelectElement).value as "open" | "resolved")}>
              <option value="open">open</option>
              <option value="resolved">resolved</option>
            </select>
          </label>
          <ErrorNote error={list.error} />
          <table>
            <thead>
              <tr><th scope="col">Kind</th><th scope="col">Severity</th><th scope="col">Queue</th><th scope="col">Opened</th><th scope="col">Resolved</th></tr>
            </thead>
            <tbody>
              {(list.data?.items ?? []).map((a) => (
                <tr key={a.alertId}><td>{a.kind}</td><td>{a.severity}</td><td>{a.queue ?? "—"}</td><td>{when(a.openedAt)}</td><td>{when(a.resolvedAt)}</td></tr>
              ))}
            </tbody>
          </table>
          {!list.loading && !list.data?.items.length && <p class="muted">No {status} alerts.</p>}
        </>
      )}
      <h2>Rules</h2>
      {isMissingRoute(rules.error) ? (
        <Unavailable what="Alert rules" route="/api/v1/alert-rules" />
      ) : (
        <>
          <ErrorNote error={rules.error} />
          <ul>
            {(rules.data?.items ?? []).map((r) => <li key={r.id}>{r.name}: {r.metric} {r.op} {r.threshold}</li>)}
          </ul>
        </>
      )}
    </div>
  );
}
