// Dead letters: filters, select and bulk retry, retry everything the filter matches, delete, CSV export.
import { useState } from "preact/hooks";
import { ErrorNote } from "../components/bits";
import { rowWindow } from "../components/VirtualList";
import { api, API, queryString } from "../lib/api";
import { shortId, when } from "../lib/format";
import { useResource } from "../lib/hooks";
import { storedKey } from "../lib/session";
import type { Job, Page } from "../lib/types";

interface Filters {
  queue: string;
  jobType: string;
  errorType: string;
  failedAfter: string;
  failedBefore: string;
}

const EMPTY: Filters = { queue: "", jobType: "", errorType: "", failedAfter: "", failedBefore: "" };

function filterOf(f: Filters): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(f)) {
    if (!value.trim()) continue;
    out[name] = name.startsWith("failed") ? new Date(value).toISOString() : value.trim();
  }
  return out;
}

const ROW_PX = 37;
const VIEW_PX = 600;
const OVERSCAN = 10;

export function DeadLetters() {
  const [filters, setFilters] = useState<Filters>(EMPTY);
  const [applied, setApplied] = useState<Filters>(EMPTY);
  const [selected, setSelected] = useState<Set<string>>(new Set());
  const [pages, setPages] = useState<Job[]>([]);
  const [message, setMessage] = useState("");
  const [top, setTop] = useState(0);
  const [error, setError] = useState<unknown>(undefined);
  const list = useResource(async () => {
    const page = await api<Page<Job>>("/dlq", { query: { ...filterOf(applied), limit: 200 } });
    setPages([]);
    // A reload (after a bulk action, a live update) keeps what the user ticked, minus the jobs gone
    // from the list; a new filter clears it where it is applied, not when its answer lands.
    const listed = new Set(page.items.map((j) => j.jobId));
    setSelected((ticked) => new Set([...ticked].filter((id) => listed.has(id))));
    return page;
  }, [applied]);
  const items = [...(list.data?.items ?? []), ...pages];
  const cursor = pages.length ? null : list.data?.nextCursor;

  const more = async () => {
    const page = await api<Page<Job>>("/dlq", { query: { ...filterOf(applied), limit: 200, cursor } });
    setPages([...pages, ...page.items]);
  };
  const run = async (what: string, path: string, body: unknown) => {
    try {
      const answer = await api<{ retried?: number; deleted?: number }>(path, { method: "POST", body });
      setMessage(`${what}: ${answer.retried ?? answer.deleted ?? 0} jobs.`);
      setError(undefined);
      list.reload();
    } catch (reason) {
      setError(reason);
    }
  };
  const exportCsv = async () => {
    // The export needs the key, which a plain link cannot send: fetch it and hand the browser a blob.
    try {
      const response = await fetch(`${API}/dlq/export.csv${queryString(filterOf(applied))}`, {
        headers: { Authorization: `Bearer ${storedKey() ?? ""}` },
      });
      if (!response.ok) throw new Error(`the export answered ${response.status}`);
      const url = URL.createObjectURL(await response.blob());
      const link = document.createElement("a");
      link.href = url;
      link.download = "dead-letters.csv";
      link.click();
      URL.revokeObjectURL(url);
    } catch (reason) {
      setError(reason);
    }
  };
  const toggle = (id: string) => {
    const next = new Set(selected);
    if (next.has(id)) next.delete(id);
    else next.add(id);
    setSelected(next);
  };
  const set = (name: keyof Filters) => (e: Event) => setFilters({ ...filters, [name]: (e.currentTarget as HTMLInputElement).value });
  const input = (name: keyof Filters, label: string, type: "text" | "datetime-local" = "text") => (
    <label class="filter">
      {label}
      {type === "text" ? <input type="text" name={name} value={filters[name]} onInput={set(name)} /> : <input type="datetime-local" name={name} value={filters[name]} onInput={set(name)} />}
    </label>
  );
  const allSelected = items.length > 0 && selected.size === items.length;
  // Only the rows in view (and a margin) are in the DOM, spacer rows stand for the rest: thousands of
  // dead letters (after "load more") scroll like fifty, and the table keeps its header and semantics.
  const { first, last } = rowWindow(top, VIEW_PX, ROW_PX, items.length, OVERSCAN);
  return (
    <div class="page">
      <h1>Dead letters</h1>
      <form class="filters" role="search" aria-label="Dead-letter filters" onSubmit={(e) => { e.preventDefault(); setSelected(new Set()); setApplied(filters); }}>
        {input("queue", "Queue")}
        {input("jobType", "Job type")}
        {input("errorType", "Error type")}
        {input("failedAfter", "Failed after", "datetime-local")}
        {input("failedBefore", "Failed before", "datetime-local")}
        <button type="submit">Apply</button>
      </form>
      <div class="toolbar">
        <button type="button" disabled={!selected.size} onClick={() => run("Retried", "/dlq/retry", { ids: [...selected] })}>
          Retry selected ({selected.size})
        </button>
        <button type="button" onClick={() => confirm("Retry every dead letter the filter matches?") && run("Retried", "/dlq/retry", { filter: filterOf(applied) })}>
          Retry all matching
        </button>
        <button type="button" class="danger" disabled={!selected.size} onClick={() => confirm(`Delete ${selected.size} jobs?`) && run("Deleted", "/dlq/delete", { ids: [...selected] })}>
          Delete selected
        </button>
        <button type="button" onClick={exportCsv}>Export CSV</button>
        <span role="status">{message}</span>
      </div>
      <ErrorNote error={list.error ?? error} />
      <div class="table-window" style={{ maxHeight: `${VIEW_PX}px` }} role="region" aria-label="Dead letters listed" tabIndex={0}
        onScroll={(e) => setTop((e.currentTarget as HTMLElement).scrollTop)}>
      <table class="windowed">
        <thead>
          <tr>
            <th scope="col">
              <input type="checkbox" aria-label="Select every listed job" checked={allSelected}
                onChange={() => setSelected(allSelected ? new Set() : new Set(items.map((j) => j.jobId)))} />
            </th>
            <th scope="col">Job</th><th scope="col">Queue</th><th scope="col">Type</th><th scope="col">Error</th>
            <th scope="col" class="num">Attempts</th><th scope="col">Failed</th>
          </tr>
        </thead>
        <tbody>
          {first > 0 && <tr aria-hidden="true" style={{ height: `${first * ROW_PX}px` }}><td colSpan={7} /></tr>}
          {items.slice(first, last).map((j) => (
            <tr key={j.jobId} data-job-id={j.jobId} style={{ height: `${ROW_PX}px` }}>
              <td><input type="checkbox" aria-label={`Select job ${j.jobId}`} checked={selected.has(j.jobId)} onChange={() => toggle(j.jobId)} /></td>
              <td><a href={`/jobs/${j.jobId}`} title={j.jobId}>{shortId(j.jobId)}</a></td>
              <td>{j.queue}</td>
              <td>{j.jobType}</td>
              <td>{j.error ? `${j.error.type}: ${j.error.message}` : "—"}</td>
              <td class="num">{j.attempts}</td>
              <td>{when(j.completedAt)}</td>
            </tr>
          ))}
          {last < items.length && <tr aria-hidden="true" style={{ height: `${(items.length - last) * ROW_PX}px` }}><td colSpan={7} /></tr>}
        </tbody>
      </table>
      </div>
      {!list.loading && items.length === 0 && <p class="muted">No dead letters match.</p>}
      {cursor && <button type="button" onClick={more}>Load more</button>}
    </div>
  );
}
