// Small shared pieces: error notices, the "not available yet" panel, formatted JSON, status badges.
import type { ComponentChildren } from "preact";
import { describe } from "../lib/api";
import { pretty } from "../lib/format";

export function ErrorNote({ error }: { error: unknown }) {
  if (!error) return null;
  return (
    <p class="error" role="alert">
      {describe(error)}
    </p>
  );
}

export function Unavailable({ what, route }: { what: string; route: string }) {
  return (
    <section class="panel unavailable" aria-label={`${what} not available`}>
      <h2>{what}: not available</h2>
      <p>
        This API does not answer <code>{route}</code> yet. The panel fills in once the analytics routes are
        deployed.
      </p>
    </section>
  );
}

export function Json({ value, label }: { value: unknown; label: string }) {
  if (value === undefined || value === null) return <p class="muted">No {label.toLowerCase()}.</p>;
  return (
    <pre class="json" aria-label={label} tabIndex={0}>
      {pretty(value)}
    </pre>
  );
}

export function Status({ status }: { status: string }) {
  return <span class={`badge status-${status}`}>{status}</span>;
}

export function Panel({ title, children, actions }: { title: string; children: ComponentChildren; actions?: ComponentChildren }) {
  return (
    <section class="panel" aria-label={title}>
      <header class="panel-head">
        <h2>{title}</h2>
        {actions}
      </header>
      {children}
    </section>
  );
}

export function Field({ label, error, children, id }: { label: string; error?: string | undefined; children: ComponentChildren; id: string }) {
  return (
    <div class={`field${error ? " invalid" : ""}`}>
      <label for={id}>{label}</label>
      {children}
      {error && (
        <span class="field-error" id={`${id}-error`} role="alert">
          {error}
        </span>
      )}
    </div>
  );
}
