// A queue's config (PUT /queues/{name}): empty fields clear a limit; the 422's errors show next to their field.
import { useState } from "preact/hooks";
import { ErrorNote, Field } from "../components/bits";
import { api, ApiError } from "../lib/api";
import type { Queue, QueueConfig } from "../lib/types";

// Form fields by their path in the config, as the API names them in its errors.
const NUMBERS: [string, string][] = [
  ["rateLimit.limit", "Rate limit: starts"], ["rateLimit.periodMs", "Rate limit: per (ms)"],
  ["keyRateLimit.limit", "Per-key rate limit: starts"], ["keyRateLimit.periodMs", "Per-key rate limit: per (ms)"],
  ["concurrency", "Concurrency"], ["keyConcurrency", "Per-key concurrency"], ["maxLength", "Max length (backlog)"],
  ["maxAttempts", "Max attempts"], ["retry.baseDelayMs", "Retry base delay (ms)"], ["retry.maxDelayMs", "Retry max delay (ms)"],
  ["retry.factor", "Retry factor"], ["aging.everyMs", "Aging: every (ms)"], ["aging.step", "Aging: step"],
];

type Values = Record<string, string>;

function valuesOf(config: QueueConfig): Values {
  const values: Values = {};
  const flat = config as unknown as Record<string, unknown>;
  for (const [path] of NUMBERS) {
    const [head, tail] = path.split(".") as [string, string | undefined];
    const top = flat[head];
    const value = tail ? (top as Record<string, unknown> | null)?.[tail] : top;
    values[path] = value === null || value === undefined ? "" : String(value);
  }
  values["retry.strategy"] = config.retry?.strategy ?? "";
  values["retry.jitter"] = String(config.retry?.jitter ?? true);
  return values;
}

function num(value: string | undefined): number | string | null {
  if (value === undefined || value.trim() === "") return null;
  const n = Number(value);
  return Number.isFinite(n) ? n : value; // the API names the field when it is no number
}

/** The PUT body: a group whose fields are all empty is cleared (null). */
function bodyOf(v: Values): Record<string, unknown> {
  const group = (...fields: string[]) => {
    if (fields.every((f) => !v[f]?.trim())) return null;
    return Object.fromEntries(fields.map((f) => [f.split(".")[1] as string, num(v[f])]));
  };
  const retry = v["retry.strategy"]
    ? {
        strategy: v["retry.strategy"],
        ...Object.fromEntries(["baseDelayMs", "maxDelayMs", "factor"].filter((f) => v[`retry.${f}`]).map((f) => [f, num(v[`retry.${f}`])])),
        jitter: v["retry.jitter"] !== "false",
      }
    : null;
  return {
    rateLimit: group("rateLimit.limit", "rateLimit.periodMs"),
    keyRateLimit: group("keyRateLimit.limit", "keyRateLimit.periodMs"),
    concurrency: num(v.concurrency), keyConcurrency: num(v.keyConcurrency), maxLength: num(v.maxLength),
    maxAttempts: num(v.maxAttempts), retry, aging: group("aging.everyMs", "aging.step"),
  };
}

export function QueueForm({ queue, onSaved }: { queue: Queue; onSaved: (q: Queue) => void }) {
  const [values, setValues] = useState<Values>(() => valuesOf(queue.config));
  const [error, setError] = useState<unknown>(undefined);
  const [saved, setSaved] = useState(false);
  const fieldError = (path: string) => (error instanceof ApiError ? error.fieldError(path) : undefined);
  const set = (path: string) => (e: Event) => {
    setSaved(false);
    setValues({ ...values, [path]: (e.currentTarget as HTMLInputElement).value });
  };
  const submit = async (e: Event) => {
    e.preventDefault();
    try {
      const updated = await api<Queue>(`/queues/${encodeURIComponent(queue.name)}`, { method: "PUT", body: bodyOf(values) });
      setError(undefined);
      setSaved(true);
      onSaved(updated);
    } catch (reason) {
      setError(reason);
    }
  };
  const id = (path: string) => `q-${path.replace(".", "-")}`;
  return (
    <form class="config-form" aria-label={`Config of queue ${queue.name}`} onSubmit={submit} noValidate>
      <div class="grid">
        {NUMBERS.map(([path, label]) => (
          <Field label={label} id={id(path)} error={fieldError(path)}>
            <input
              id={id(path)} name={path} inputMode="decimal" value={values[path]} onInput={set(path)}
              aria-invalid={fieldError(path) ? "true" : undefined}
              aria-describedby={fieldError(path) ? `${id(path)}-error` : undefined}
            />
          </Field>
        ))}
        <Field label="Retry strategy" id="q-retry-strategy" error={fieldError("retry.strategy") ?? fieldError("retry")}>
          <select id="q-retry-strategy" value={values["retry.strategy"]} onChange={set("retry.strategy")}>
            <option value="">(job type's or default)</option>
            {["exponential", "linear", "fixed", "none"].map((s) => <option value={s}>{s}</option>)}
          </select>
        </Field>
        <Field label="Retry jitter" id="q-retry-jitter">
          <select id="q-retry-jitter" value={values["retry.jitter"]} onChange={set("retry.jitter")}>
            <option value="true">on</option>
            <option value="false">off</option>
          </select>
        </Field>
      </div>
      <button type="submit">Save config</button> {saved && <span role="status">Saved.</span>}
      {error instanceof ApiError && error.errors.length > 0 ? (
        <p class="error" role="alert">{error.title}: {error.detail}</p>
      ) : (
        <ErrorNote error={error} />
      )}
    </form>
  );
}
