// Schedules: cron CRUD with the next fire times previewed as you type, enable/disable, trigger now.
//
// The API has no preview route, so the preview is computed here with croner (5-field cron, in the
// schedule's time zone); the times the server stores are shown in the list once saved.
import { Cron } from "croner";
import { useMemo, useState } from "preact/hooks";
import { ErrorNote, Field, Panel } from "../components/bits";
import { api, ApiError } from "../lib/api";
import { when } from "../lib/format";
import { useResource } from "../lib/hooks";
import type { Schedule } from "../lib/types";

interface Draft {
  name: string;
  cron: string;
  timezone: string;
  queue: string;
  jobType: string;
  payload: string;
  enabled: boolean;
  misfirePolicy: "skip" | "run_once";
}

const NEW: Draft = { name: "", cron: "*/5 * * * *", timezone: "UTC", queue: "default", jobType: "noop", payload: "{}", enabled: true, misfirePolicy: "skip" };

function preview(cron: string, timezone: string): { times: Date[]; error?: string } {
  try {
    if (cron.trim().split(/\s+/).length !== 5) return { times: [], error: "a cron expression has 5 fields: minute hour day month weekday" };
    return { times: new Cron(cron, { timezone, mode: "5-part", paused: true }).nextRuns(5) };
  } catch (error) {
    return { times: [], error: error instanceof Error ? error.message : String(error) };
  }
}

function draftOf(s: Schedule): Draft {
  return {
    name: s.name, cron: s.cron, timezone: s.timezone, queue: s.job.queue, jobType: s.job.jobType,
    payload: JSON.stringify(s.job.payload ?? {}, null, 2), enabled: s.enabled, misfirePolicy: s.misfirePolicy,
  };
}

function ScheduleForm({ initial, id, onDone }: { initial: Draft; id: string | null; onDone: () => void }) {
  const [draft, setDraft] = useState<Draft>(initial);
  const [error, setError] = useState<unknown>(undefined);
  const next = useMemo(() => preview(draft.cron, draft.timezone), [draft.cron, draft.timezone]);
  const fieldError = (name: string) => (error instanceof ApiError ? error.fieldError(name) : undefined);
  const set = (name: keyof Draft) => (e: Event) => {
    const el = e.currentTarget as HTMLInputElement;
    setDraft({ ...draft, [name]: el.type === "checkbox" ? el.checked : el.value });
  };
  const submit = async (e: Event) => {
    e.preventDefault();
    let payload: unknown;
    try {
      payload = JSON.parse(draft.payload || "{}");
    } catch {
      setError(new ApiError(422, "Invalid payload", "the payload is not valid JSON", [{ field: "payload", message: "not valid JSON" }]));
      return;
    }
    try {
      await api(id ? `/scheduled-jobs/${id}` : "/scheduled-jobs", { method: id ? "PATCH" : "POST", body: { ...draft, payload } });
      onDone();
    } catch (reason) {
      setError(reason);
    }
  };
  const text = (name: keyof Draft, label: string) => (
    <Field label={label} id={`s-${name}`} error={fieldError(name)}>
      <input id={`s-${name}`} value={draft[name] as string} onInput={set(name)} aria-invalid={fieldError(name) ? "true" : undefined} />
    </Field>
  );
  return (
    <form class="config-form" aria-label={id ? "Edit schedule" : "New schedule"} onSubmit={submit} noValidate>
      <div class="grid">
        {text("name", "Name")}
        {text("cron", "Cron (5 fields)")}
        {text("timezone", "Time zone")}
        {text("queue", "Queue")}
        {text("jobType", "Job type")}
        <Field label="Misfire policy" id="s-misfire" error={fieldError("misfirePolicy")}>
          <select id="s-misfire" value={draft.misfirePolicy} onChange={set("misfirePolicy")}>
            <option value="skip">skip</option>
            <option value="run_once">run once</option>
          </select>
        </Field>
        <Field label="Enabled" id="s-enabled">
          <input id="s-enabled" type="checkbox" checked={draft.enabled} onChange={set("enabled")} />
        </Field>
      </div>
      <Field label="Payload (JSON)" id="s-payload" error={fieldError("payload")}>
        <textarea id="s-payload" rows={3} value={draft.payload} onInput={set("payload")} />
      </Field>
      <div class="preview" aria-live="polite" aria-label="Next fire times">
        <strong>Next fire times (preview):</strong>{" "}
        {next.error ? <span class="error-text">{next.error}</span> : next.times.map((t) => <span class="chip">{t.toLocaleString(undefined, { hour12: false })}</span>)}
      </div>
      <button type="submit">{id ? "Save" : "Create schedule"}</button>{" "}
      <button type="button" onClick={onDone}>Cancel</button>
      <ErrorNote error={error} />
    </form>
  );
}

export function Schedules() {
  const list = useResource(() => api<{ items: Schedule[] }>("/scheduled-jobs"), []);
  const [editing, setEditing] = useState<Schedule | "new" | null>(null);
  const [message, setMessage] = useState("");
  const [error, setError] = useState<unknown>(undefined);
  const act = async (what: () => Promise<string>) => {
    try {
      setMessage(await what());
      setError(undefined);
      list.reload();
    } catch (reason) {
      setError(reason);
    }
  };
  const trigger = (s: Schedule) => act(async () => `Triggered ${s.name}: job ${(await api<{ jobId: string }>(`/scheduled-jobs/${s.id}/trigger`, { method: "POST" })).jobId}`);
  const toggle = (s: Schedule) => act(async () => { await api(`/scheduled-jobs/${s.id}`, { method: "PATCH", body: { enabled: !s.enabled } }); return `${s.name} ${s.enabled ? "disabled" : "enabled"}.`; });
  const remove = (s: Schedule) => confirm(`Delete schedule ${s.name}?`) && act(async () => { await api(`/scheduled-jobs/${s.id}`, { method: "DELETE" }); return `Deleted ${s.name}.`; });
  const done = () => { setEditing(null); list.reload(); };
  return (
    <div class="page">
      <h1>Schedules</h1>
      <div class="toolbar">
        <button type="button" onClick={() => setEditing("new")}>New schedule</button>
        <span role="status">{message}</span>
      </div>
      <ErrorNote error={list.error ?? error} />
      {editing && (
        <Panel title={editing === "new" ? "New schedule" : `Edit ${editing.name}`}>
          <ScheduleForm initial={editing === "new" ? NEW : draftOf(editing)} id={editing === "new" ? null : editing.id} onDone={done} />
        </Panel>
      )}
      <table>
        <thead>
          <tr>
            <th scope="col">Name</th><th scope="col">Cron</th><th scope="col">Job</th><th scope="col">Enabled</th>
            <th scope="col">Next fires</th><th scope="col">Last fired</th><th scope="col">Actions</th>
          </tr>
        </thead>
        <tbody>
          {(list.data?.items ?? []).map((s) => (
            <tr key={s.id} data-schedule={s.name}>
              <th scope="row">{s.name}</th>
              <td><code>{s.cron}</code> {s.timezone}</td>
              <td>{s.job.jobType} on {s.job.queue}</td>
              <td>{s.enabled ? "yes" : "no"}</td>
              <td>{s.nextFireTimes.slice(0, 2).map(when).join(", ")}</td>
              <td>{when(s.lastFiredAt)}</td>
              <td class="actions">
                <button type="button" onClick={() => trigger(s)} aria-label={`Trigger now: ${s.name}`}>Trigger now</button>
                <button type="button" onClick={() => toggle(s)}>{s.enabled ? "Disable" : "Enable"}</button>
                <button type="button" onClick={() => setEditing(s)} aria-label={`Edit ${s.name}`}>Edit</button>
                <button type="button" class="danger" onClick={() => remove(s)} aria-label={`Delete ${s.name}`}>Delete</button>
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      {!list.loading && !list.data?.items.length && <p class="muted">No schedules yet.</p>}
    </div>
  );
}
