// Workers: id, host, queues, concurrency, running jobs, last heartbeat, uptime; live on worker events.
import { useEffect } from "preact/hooks";
import { ErrorNote, Status } from "../components/bits";
import { api } from "../lib/api";
import { ago, duration } from "../lib/format";
import { useLive, useResource, useTick } from "../lib/hooks";
import type { Worker } from "../lib/types";

export function Workers() {
  const list = useResource(() => api<{ items: Worker[] }>("/workers"), []);
  const now = useTick(5000);
  // Heartbeats have no event of their own: read the registry again every few seconds.
  useEffect(() => {
    const timer = window.setInterval(list.reload, 5000);
    return () => window.clearInterval(timer);
  }, [list.reload]);
  useLive((batch) => {
    if (batch.some((m) => m.type === "worker_started" || m.type === "worker_stopped")) list.reload();
  });
  const items = list.data?.items ?? [];
  return (
    <div class="page">
      <h1>Workers</h1>
      <ErrorNote error={list.error} />
      <table>
        <thead>
          <tr>
            <th scope="col">Worker</th><th scope="col">Host</th><th scope="col">Status</th><th scope="col">Queues</th>
            <th scope="col" class="num">Concurrency</th><th scope="col" class="num">Running</th>
            <th scope="col">Last heartbeat</th><th scope="col">Uptime</th>
          </tr>
        </thead>
        <tbody>
          {items.map((w) => (
            <tr key={w.workerId}>
              <th scope="row">{w.workerId}</th>
              <td>{w.host} (pid {w.pid})</td>
              <td><Status status={w.status} /></td>
              <td>{w.queues.length && !w.queues.includes("*") ? w.queues.join(", ") : "every queue"}</td>
              <td class="num">{w.concurrency}</td>
              <td class="num">{w.running.length}</td>
              <td>{ago(w.lastHeartbeatAt, now)}</td>
              <td>{w.status === "gone" ? "—" : duration(now - new Date(w.startedAt).getTime())}</td>
            </tr>
          ))}
        </tbody>
      </table>
      {!list.loading && items.length === 0 && !list.error && <p class="muted">No workers have registered.</p>}
      <button type="button" onClick={list.reload}>Refresh</button>
    </div>
  );
}
