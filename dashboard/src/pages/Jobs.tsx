// Jobs: filters, keyset paging, rows updated live; `/jobs/<id>` opens the job drawer over the list.
import { useLocation } from "preact-iso";
import { useEffect, useMemo, useRef, useState } from "preact/hooks";
import { ErrorNote, Status } from "../components/bits";
import { VirtualList } from "../components/VirtualList";
import { api } from "../lib/api";
import { ago, isoOfLocal, shortId } from "../lib/format";
import { useLive, useTick } from "../lib/hooks";
import { RESYNC } from "../lib/live";
import { STATUSES, type Job, type JobStatus, type LiveMessage, type Page } from "../lib/types";
import { JobDrawer } from "./JobDrawer";

interface Filters {
  queue: string;
  status: string;
  jobType: string;
  tag: string;
  batchId: string;
  createdAfter: string;
  createdBefore: string;
  q: string;
}

const EMPTY: Filters = { queue: "", status: "", jobType: "", tag: "", batchId: "", createdAfter: "", createdBefore: "", q: "" };
const PAGE = 100;
// Live additions beyond this many rows drop the oldest: memory stays flat however long the page is open.
const MAX_ROWS = 2000;
const ROW = 36;

function fromQuery(query: Record<string, string>): Filters {
  const filters = { ...EMPTY };
  for (const name of Object.keys(EMPTY) as (keyof Filters)[]) filters[name] = query[name] ?? "";
  return filters;
}

function apiQuery(f: Filters) {
  return {
    queue: f.queue.trim(), status: f.status, jobType: f.jobType.trim(), tag: f.tag.trim(),
    batchId: f.batchId.trim(), createdAfter: isoOfLocal(f.createdAfter), createdBefore: isoOfLocal(f.createdBefore),
    q: f.q.trim(),
  };
}

// A job's events travel on several topics and can reach the page out of order: a status replaces another
// only if it is newer by (attempt, rank), the scheduler's own staleness rule, so a late `started` never
// turns a completed row back to running.
const RANK: Record<string, number> = {
  pending: 0, blocked: 1, scheduled: 1, queued: 2, running: 3, retrying: 4, completed: 5, failed: 5, cancelled: 5,
};

function supersedes(m: LiveMessage, status: string | undefined, attempt: number | null | undefined): boolean {
  const own = m.attempt ?? attempt ?? 0;
  const other = attempt ?? 0;
  return own !== other ? own > other : (RANK[m.status ?? ""] ?? 0) >= (RANK[status ?? ""] ?? 0);
}

// The newest message of jobs not (yet) listed, for when their submission arrives after a later event.
const EARLY_LIMIT = 2000;

function remember(early: Map<string, LiveMessage>, id: string, m: LiveMessage): void {
  early.delete(id);
  early.set(id, m);
  if (early.size > EARLY_LIMIT) early.delete(early.keys().next().value as string);
}

/** Whether a job announced live belongs in the list: only filters the message can answer may be set. */
function admits(f: Filters, m: LiveMessage): boolean {
  if (f.tag || f.batchId || f.q || f.createdBefore || f.createdAfter) return false;
  return (!f.queue || f.queue === m.queue) && (!f.jobType || f.jobType === m.jobType) && (!f.status || f.status === m.status);
}

function jobOfMessage(m: LiveMessage): Job {
  return {
    jobId: m.jobId ?? "", queue: m.queue ?? "", jobType: m.jobType ?? "", status: m.status ?? "pending",
    priority: 5, payload: null, maxAttempts: 0, attempts: m.attempt ?? 0, createdAt: m.occurredAt ?? new Date().toISOString(),
    startedAt: null, completedAt: null, result: null, error: null, progress: null,
  };
}

export function Jobs({ id }: { id?: string }) {
  const { query, route } = useLocation();
  const [filters, setFilters] = useState<Filters>(() => fromQuery(query));
  const [applied, setApplied] = useState<Filters>(filters);
  const [jobs, setJobs] = useState<Job[]>([]);
  const [cursor, setCursor] = useState<string | null>(null);
  const [error, setError] = useState<unknown>(undefined);
  const [loading, setLoading] = useState(false);
  const generation = useRef(0);
  const trimmed = useRef(false);
  const early = useRef(new Map<string, LiveMessage>());
  const now = useTick(5000);

  // Text filters apply after a short pause in typing; selects and dates at once.
  useEffect(() => {
    const same = (a: Filters) => (Object.keys(EMPTY) as (keyof Filters)[]).every((k) => a[k] === filters[k]);
    const timer = window.setTimeout(() => setApplied((old) => (same(old) ? old : filters)), 250);
    return () => window.clearTimeout(timer);
  }, [filters]);

  const load = (after: string | null) => {
    const mine = after ? generation.current : ++generation.current;
    if (!after) trimmed.current = false;
    setLoading(true);
    api<Page<Job>>("/jobs", { query: { ...apiQuery(applied), limit: PAGE, cursor: after } }).then(
      (page) => {
        if (mine !== generation.current) return;
        setJobs((old) => (after ? [...old, ...page.items] : page.items));
        setCursor(page.nextCursor ?? null);
        setError(undefined);
        setLoading(false);
      },
      (reason: unknown) => {
        if (mine !== generation.current) return;
        setError(reason);
        setLoading(false);
      },
    );
  };
  useEffect(() => {
    load(null);
    const params = new URLSearchParams(Object.entries(applied).filter(([, v]) => v));
    const search = params.toString();
    history.replaceState(history.state, "", `${location.pathname}${search ? `?${search}` : ""}`);
  }, [applied]);

  useLive((batch) => {
    if (batch.some((m) => m.type === RESYNC)) {
      load(null);
      return;
    }
    const updates = new Map<string, LiveMessage>();
    for (const m of batch) {
      if (!m.jobId || !m.status) continue;
      const seen = updates.get(m.jobId);
      if (!seen || supersedes(m, seen.status, seen.attempt ?? 0)) updates.set(m.jobId, m);
    }
    if (!updates.size) return;
    setJobs((old) => {
      const next = old.map((job) => {
        const m = updates.get(job.jobId);
        if (!m) return job;
        updates.delete(job.jobId);
        if (!supersedes(m, job.status, job.attempts)) return job;
        return { ...job, status: m.status as JobStatus, attempts: Math.max(job.attempts, m.attempt ?? 0) };
      });
      // A job announced by a job_update of this batch joins the list with the newest status known of it: a
      // fast job's submitted and completed events often arrive in the same frame, or completed first.
      const announced = new Set(batch.filter((m) => m.type === "job_update").map((m) => m.jobId));
      const added: Job[] = [];
      for (const m of updates.values()) {
        const id = m.jobId ?? "";
        const before = early.current.get(id);
        const latest = before && supersedes(before, m.status, m.attempt ?? 0) ? before : m;
        if (!announced.has(id)) {
          remember(early.current, id, latest);
        } else if (admits(applied, latest)) {
          early.current.delete(id);
          added.push(jobOfMessage(latest));
        }
      }
      if (!added.length) return next;
      const grown = [...added.reverse(), ...next];
      if (grown.length <= MAX_ROWS) return grown;
      trimmed.current = true; // the keyset position of the dropped tail is gone: no "load more" after it
      return grown.slice(0, MAX_ROWS);
    });
  });

  const set = (name: keyof Filters) => (event: Event) =>
    setFilters({ ...filters, [name]: (event.currentTarget as HTMLInputElement).value });
  // A select or a date is one deliberate change: it applies at once, without the typing pause.
  const setAtOnce = (name: keyof Filters) => (event: Event) => {
    const next = { ...filters, [name]: (event.currentTarget as HTMLInputElement).value };
    setFilters(next);
    setApplied(next);
  };
  const input = (name: keyof Filters, label: string, type: "text" | "datetime-local" = "text") => (
    <label class="filter">
      {label}
      {type === "text" ? <input type="text" name={name} value={filters[name]} onInput={set(name)} /> : <input type="datetime-local" name={name} value={filters[name]} onInput={setAtOnce(name)} />}
    </label>
  );
  const open = (jobId: string) => route(`/jobs/${jobId}${location.search}`);
  const rows = useMemo(() => jobs, [jobs]);
  const more = trimmed.current ? null : cursor;

  return (
    <div class="page">
      <h1>Jobs</h1>
      <form class="filters" role="search" aria-label="Job filters" onSubmit={(e) => e.preventDefault()}>
        {input("q", "Search")}
        {input("queue", "Queue")}
        <label class="filter">
          Status
          <select name="status" value={filters.status} onChange={setAtOnce("status")}>
            <option value="">any</option>
            {STATUSES.map((s) => (
              <option value={s}>{s}</option>
            ))}
          </select>
        </label>
        {input("jobType", "Job type")}
        {input("tag", "Tag")}
        {input("batchId", "Batch id")}
        {input("createdAfter", "Created after", "datetime-local")}
        {input("createdBefore", "Created before", "datetime-local")}
        <button type="button" onClick={() => setFilters({ ...EMPTY })}>
          Clear
        </button>
      </form>
      <ErrorNote error={error} />
      <div class="table jobs-table">
        <div class="thead" aria-hidden="true">
          <span>Job</span><span>Queue</span><span>Type</span><span>Status</span><span>Attempts</span><span>Created</span>
        </div>
        <VirtualList
          items={rows}
          rowHeight={ROW}
          height={560}
          label="Jobs"
          onEnd={() => more && !loading && load(more)}
          render={(job) => (
            <div role="listitem" class={`row${job.jobId === id ? " selected" : ""}`} key={job.jobId} data-job-id={job.jobId}>
              <a href={`/jobs/${job.jobId}`} onClick={(e) => { e.preventDefault(); open(job.jobId); }} title={job.jobId}>
                {shortId(job.jobId)}
              </a>
              <span>{job.queue}</span>
              <span>{job.jobType}</span>
              <Status status={job.status} />
              <span>{job.attempts}</span>
              <span>{ago(job.createdAt, now)}</span>
            </div>
          )}
        />
      </div>
      <p class="muted" aria-live="polite">
        {loading ? "Loading…" : `${jobs.length.toLocaleString()} jobs shown${more ? "; scroll for more" : ""}`}
        {trimmed.current && " (the oldest rows were dropped to keep the page light: change a filter to page from the top)"}
        {more && !loading && (
          <button type="button" class="link" onClick={() => load(more)}>
            Load more
          </button>
        )}
      </p>
      {id && <JobDrawer id={id} onClose={() => route(`/jobs${location.search}`)} />}
    </div>
  );
}
