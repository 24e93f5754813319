// Alerts: open and resolved (GET /alerts, re-read on `alert` messages), and alert rules CRUD (/alert-rules).
import { useState } from "preact/hooks";
import { ErrorNote, Unavailable } from "../components/bits";
import { api, apiIfOffered } from "../lib/api";
import { when } from "../lib/format";
import { isMissingRoute, useLive, useResource } from "../lib/hooks";
import type { Alert } from "../lib/types";
import { type AlertRule, AlertRuleForm, METRICS } from "./AlertRuleForm";

function details(a: Alert): string {
  if (!a.details || typeof a.details !== "object") return "";
  return Object.entries(a.details as Record<string, unknown>)
    .filter(([, v]) => v !== null && typeof v !== "object")
    .slice(0, 4).map(([k, v]) => `${k}: ${String(v)}`).join(", ");
}

function AlertList() {
  const [status, setStatus] = useState<"open" | "resolved">("open");
  const list = useResource(() => apiIfOffered<{ items: Alert[] }>("/alerts", { query: { status } }), [status]);
  useLive((batch) => {
    if (batch.some((m) => m.type === "alert")) list.reload();
  });
  if (isMissingRoute(list.error)) return <Unavailable what="Alerts" route="/api/v1/alerts" />;
  return (
    <section aria-label="Alerts">
      <div class="toolbar" role="radiogroup" aria-label="Which alerts">
        {(["open", "resolved"] as const).map((s) => (
          <button key={s} type="button" role="radio" aria-checked={status === s} class={status === s ? "on" : ""} onClick={() => setStatus(s)}>
            {s === "open" ? "Open" : "Resolved"}
          </button>
        ))}
      </div>
      <ErrorNote error={list.error} />
      <table aria-label={`${status} alerts`}>
        <thead>
          <tr><th scope="col">Kind</th><th scope="col">Severity</th><th scope="col">Queue</th><th scope="col">Job type</th><th scope="col">Opened</th><th scope="col">Resolved</th><th scope="col">Details</th></tr>
        </thead>
        <tbody>
          {(list.data?.items ?? []).map((a) => (
            <tr key={a.alertId} data-alert-id={a.alertId}>
              <td>{a.kind}</td><td><span class={`badge severity-${a.severity}`}>{a.severity}</span></td><td>{a.queue ?? "every queue"}</td>
              <td>{a.jobType ?? "—"}</td><td>{when(a.openedAt)}</td><td>{when(a.resolvedAt)}</td><td class="muted">{details(a)}</td>
            </tr>
          ))}
        </tbody>
      </table>
      {!list.loading && !list.data?.items.length && <p class="muted">No {status} alerts.</p>}
    </section>
  );
}

const metricWords = (m: string) => METRICS.find(([name]) => name === m)?.[1] ?? m;

function Rules() {
  const rules = useResource(() => apiIfOffered<{ items: AlertRule[] }>("/alert-rules"), []);
  const [editing, setEditing] = useState<AlertRule | "new" | null>(null);
  const [note, setNote] = useState("");
  const [error, setError] = useState<unknown>(null);
  if (isMissingRoute(rules.error)) return <Unavailable what="Alert rules" route="/api/v1/alert-rules" />;
  const remove = async (rule: AlertRule) => {
    if (!window.confirm(`Delete the alert rule ${rule.name}?`)) return;
    try {
      await api(`/alert-rules/${rule.id}`, { method: "DELETE" });
      setNote(`Deleted rule ${rule.name}.`);
      setError(null);
      rules.reload();
    } catch (caught) {
      setError(caught);
    }
  };
  return (
    <section aria-label="Alert rules">
      <div class="panel-head">
        <h2>Rules</h2>
        <button type="button" onClick={() => { setEditing("new"); setNote(""); }}>New rule</button>
      </div>
      <p role="status" class="muted">{note}</p>
      <ErrorNote error={error ?? rules.error} />
      {editing !== null && (
        <AlertRuleForm
          key={editing === "new" ? "new" : editing.id}
          rule={editing === "new" ? null : editing}
          onCancel={() => setEditing(null)}
          onSaved={() => { setNote(editing === "new" ? "Rule created." : "Rule saved."); setEditing(null); rules.reload(); }}
        />
      )}
      <table aria-label="Alert rules">
        <thead>
          <tr><th scope="col">Name</th><th scope="col">Scope</th><th scope="col">Condition</th><th scope="col" class="num">For</th><th scope="col">Webhook</th><th scope="col">Actions</th></tr>
        </thead>
        <tbody>
          {(rules.data?.items ?? []).map((r) => (
            <tr key={r.id} data-rule={r.name}>
              <th scope="row">{r.name}</th>
              <td>{r.queue ?? "every queue"}{r.jobType ? ` / ${r.jobType}` : ""}</td>
              <td>{metricWords(r.metric)} {r.op} {r.threshold}</td>
              <td class="num">{r.forS} s</td>
              <td>{r.webhookUrl ? "yes" : "—"}</td>
              <td class="actions">
                <button type="button" aria-label={`Edit rule ${r.name}`} onClick={() => { setEditing(r); setNote(""); }}>Edit</button>
                <button type="button" class="danger" aria-label={`Delete rule ${r.name}`} onClick={() => void remove(r)}>Delete</button>
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      {!rules.loading && !rules.data?.items.length && <p class="muted">No rules yet.</p>}
    </section>
  );
}

export function Alerts() {
  return (
    <div class="page">
      <h1>Alerts</h1>
      <AlertList />
      <Rules />
    </div>
  );
}
