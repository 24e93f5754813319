// One job: payload, result, error, attempts with timings, progress, logs, audit trail, why it waits; retry, cancel.
import { useEffect, useRef, useState } from "preact/hooks";
import { ErrorNote, Json, Status } from "../components/bits";
import { api } from "../lib/api";
import { between, when } from "../lib/format";
import { useLive, useResource } from "../lib/hooks";
import { RESYNC } from "../lib/live";
import type { Envelope, Job } from "../lib/types";

const TERMINAL = new Set(["completed", "failed", "cancelled"]);
const RETRYABLE = new Set(["failed", "cancelled"]);
const RELOAD_MS = 150;

function progressText(progress: unknown): string | null {
  if (progress === null || progress === undefined) return null;
  if (typeof progress === "number") return `${Math.round(progress)} %`;
  if (typeof progress === "object" && progress && "percent" in progress) return `${String((progress as { percent: unknown }).percent)} %`;
  return JSON.stringify(progress);
}

export function JobDrawer({ id, onClose }: { id: string; onClose: () => void }) {
  const job = useResource(() => api<Job>(`/jobs/${id}`), [id]);
  const events = useResource(() => api<{ items: Envelope[] }>(`/jobs/${id}/events`), [id]);
  const [actionError, setActionError] = useState<unknown>(undefined);
  const [busy, setBusy] = useState(false);
  const heading = useRef<HTMLHeadingElement>(null);

  useEffect(() => heading.current?.focus(), [id]);
  useEffect(() => {
    const onKey = (e: KeyboardEvent) => e.key === "Escape" && onClose();
    window.addEventListener("keydown", onKey);
    return () => window.removeEventListener("keydown", onKey);
  }, [onClose]);
  // The job changed: read it again, at most every RELOAD_MS however many events (progress) come.
  const pendingReload = useRef<number | undefined>(undefined);
  useEffect(() => () => window.clearTimeout(pendingReload.current), []);
  useLive((batch) => {
    if (pendingReload.current === undefined && batch.some((m) => m.jobId === id || m.type === RESYNC)) {
      pendingReload.current = window.setTimeout(() => {
        pendingReload.current = undefined;
        job.reload();
        events.reload();
      }, RELOAD_MS);
    }
  });

  const act = async (method: string, path: string) => {
    setBusy(true);
    setActionError(undefined);
    try {
      await api(path, { method });
      job.reload();
      events.reload();
    } catch (error) {
      setActionError(error);
    } finally {
      setBusy(false);
    }
  };

  const j = job.data;
  return (
    <div class="drawer" role="dialog" aria-modal="false" aria-labelledby="drawer-title">
      <header class="drawer-head">
        <h2 id="drawer-title" tabIndex={-1} ref={heading}>
          Job <code>{id}</code>
        </h2>
        <button type="button" onClick={onClose} aria-label="Close the job">
          ✕
        </button>
      </header>
      <ErrorNote error={job.error} />
      {j && (
        <div class="drawer-body">
          <p>
            <Status status={j.status} /> {j.jobType} on <strong>{j.queue}</strong>, attempt {j.attempts} of {j.maxAttempts},
            priority {j.priority}
          </p>
          {j.waitingReason && (
            <p class="waiting" data-code={j.waitingReason.code}>
              <strong>Why it waits:</strong> {j.waitingReason.message}
            </p>
          )}
          <div class="job-actions">
            {RETRYABLE.has(j.status) && (
              <button type="button" disabled={busy} onClick={() => act("POST", `/jobs/${id}/retry`)}>
                Retry
              </button>
            )}
            {!TERMINAL.has(j.status) && (
              <button type="button" class="danger" disabled={busy} onClick={() => act("DELETE", `/jobs/${id}`)}>
                Cancel
              </button>
            )}
          </div>
          <ErrorNote error={actionError} />
          <dl class="facts">
            <dt>Created</dt><dd>{when(j.createdAt)}</dd>
            <dt>Started</dt><dd>{when(j.startedAt)}</dd>
            <dt>Finished</dt><dd>{when(j.completedAt)}</dd>
            <dt>Ran for</dt><dd>{between(j.startedAt, j.completedAt)}</dd>
            {progressText(j.progress) && (<><dt>Progress</dt><dd>{progressText(j.progress)}</dd></>)}
            {j.tags && j.tags.length > 0 && (<><dt>Tags</dt><dd>{j.tags.join(", ")}</dd></>)}
            {j.batchId && (<><dt>Batch</dt><dd><a href={`/jobs?batchId=${j.batchId}`}>{j.batchId}</a></dd></>)}
            {j.cancelReason && (<><dt>Cancel reason</dt><dd>{j.cancelReason}</dd></>)}
          </dl>
          {j.error && (
            <section aria-label="Error">
              <h3>Error</h3>
              <p class="error-text">
                <strong>{j.error.type}</strong>: {j.error.message} {j.error.retryable ? "(retryable)" : "(not retryable)"}
              </p>
            </section>
          )}
          <h3>Payload</h3>
          <Json value={j.payload} label="Payload" />
          <h3>Result</h3>
          <Json value={j.result} label="Result" />
          <h3>Attempts</h3>
          <table class="small">
            <thead>
              <tr><th scope="col">#</th><th scope="col">Status</th><th scope="col">Worker</th><th scope="col">Started</th><th scope="col">Took</th><th scope="col">Error</th></tr>
            </thead>
            <tbody>
              {(j.attemptHistory ?? []).map((a) => (
                <tr key={a.attempt}>
                  <td>{a.attempt}</td>
                  <td>{a.status}</td>
                  <td>{a.workerId ?? "—"}</td>
                  <td>{when(a.startedAt)}</td>
                  <td>{between(a.startedAt, a.endedAt)}</td>
                  <td>{a.error ? `${a.error.type}: ${a.error.message}` : ""}</td>
                </tr>
              ))}
            </tbody>
          </table>
          <h3>Logs</h3>
          <Json value={Array.isArray(j.logs) && j.logs.length === 0 ? null : j.logs} label="Logs" />
          <h3>Audit trail</h3>
          <ErrorNote error={events.error} />
          <ol class="events">
            {(events.data?.items ?? []).map((e) => (
              <li key={e.eventId}>
                <time dateTime={e.occurredAt}>{when(e.occurredAt)}</time> <strong>{e.type}</strong>
                {e.attempt !== null && ` (attempt ${e.attempt})`}
              </li>
            ))}
          </ol>
        </div>
      )}
    </div>
  );
}
