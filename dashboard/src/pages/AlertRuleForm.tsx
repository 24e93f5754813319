// One alert rule, new or edited (POST /alert-rules, PATCH /alert-rules/{id}); a 422's errors show beside their field.
import { useState } from "preact/hooks";
import { ErrorNote, Field } from "../components/bits";
import { api, ApiError } from "../lib/api";

export interface AlertRule {
  id: string;
  name: string;
  queue: string | null;
  jobType: string | null;
  metric: "failure_rate" | "backlog" | "oldest_waiting_age_ms" | "p95_duration_ms";
  op: ">" | "<";
  threshold: number;
  forS: number;
  webhookUrl: string | null;
}

export const METRICS: [AlertRule["metric"], string][] = [
  ["failure_rate", "failure rate (0-1)"], ["backlog", "backlog (jobs)"],
  ["oldest_waiting_age_ms", "oldest waiting age (ms)"], ["p95_duration_ms", "p95 duration (ms)"],
];

type Values = Record<"name" | "queue" | "jobType" | "metric" | "op" | "threshold" | "forS" | "webhookUrl", string>;

function valuesOf(rule: AlertRule | null): Values {
  return {
    name: rule?.name ?? "", queue: rule?.queue ?? "", jobType: rule?.jobType ?? "", metric: rule?.metric ?? "failure_rate",
    op: rule?.op ?? ">", threshold: rule ? String(rule.threshold) : "", forS: rule ? String(rule.forS) : "60",
    webhookUrl: rule?.webhookUrl ?? "",
  };
}

function bodyOf(v: Values): Record<string, unknown> {
  const number = (s: string) => (s.trim() !== "" && Number.isFinite(Number(s)) ? Number(s) : s); // the API names a non-number
  return {
    name: v.name, queue: v.queue.trim() || null, jobType: v.jobType.trim() || null, metric: v.metric, op: v.op,
    threshold: number(v.threshold), forS: number(v.forS), webhookUrl: v.webhookUrl.trim() || null,
  };
}

export function AlertRuleForm({ rule, onSaved, onCancel }: { rule: AlertRule | null; onSaved: () => void; onCancel: () => void }) {
  const [values, setValues] = useState<Values>(() => valuesOf(rule));
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const set = (name: keyof Values) => (e: Event) => setValues({ ...values, [name]: (e.currentTarget as HTMLInputElement).value });
  const fieldError = (name: string) => (error instanceof ApiError ? error.fieldError(name) : undefined);
  const input = (name: keyof Values, label: string, numeric = false) => (
    <Field label={label} id={`rule-${name}`} error={fieldError(name)}>
      <input id={`rule-${name}`} type="text" inputMode={numeric ? "decimal" : undefined} value={values[name]} onInput={set(name)}
        aria-invalid={fieldError(name) ? "true" : undefined} aria-describedby={fieldError(name) ? `rule-${name}-error` : undefined} />
    </Field>
  );
  const save = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    try {
      if (rule) await api(`/alert-rules/${rule.id}`, { method: "PATCH", body: bodyOf(values) });
      else await api("/alert-rules", { method: "POST", body: bodyOf(values) });
      setError(null);
      onSaved();
    } catch (caught) {
      setError(caught);
    } finally {
      setBusy(false);
    }
  };
  const problem = error instanceof ApiError && error.status === 422 ? null : error;
  return (
    <form class="panel config-form" aria-label={rule ? `Edit rule ${rule.name}` : "New alert rule"} onSubmit={save}>
      <h2>{rule ? `Edit rule ${rule.name}` : "New alert rule"}</h2>
      {error instanceof ApiError && error.status === 422 && <p class="error" role="alert">Some fields are not valid: see beside them.</p>}
      <ErrorNote error={problem} />
      <div class="grid">
        {input("name", "Rule name")}
        {input("queue", "Queue (empty: every queue)")}
        {input("jobType", "Job type (empty: every type)")}
        <Field label="Metric" id="rule-metric" error={fieldError("metric")}>
          <select id="rule-metric" value={values.metric} onChange={set("metric")}>
            {METRICS.map(([m, words]) => <option key={m} value={m}>{words}</option>)}
          </select>
        </Field>
        <Field label="Condition" id="rule-op" error={fieldError("op")}>
          <select id="rule-op" value={values.op} onChange={set("op")}>
            <option value=">">above (&gt;)</option>
            <option value="<">below (&lt;)</option>
          </select>
        </Field>
        {input("threshold", "Threshold", true)}
        {input("forS", "For (seconds)", true)}
        {input("webhookUrl", "Webhook URL (optional)")}
      </div>
      <button type="submit" disabled={busy}>{rule ? "Save rule" : "Create rule"}</button>{" "}
      <button type="button" class="link" onClick={onCancel}>Cancel</button>
    </form>
  );
}
