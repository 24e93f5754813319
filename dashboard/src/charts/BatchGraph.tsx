// The dependency graph of a batch (GET /job-batches/{id}, its jobs' dependsOn from GET /jobs?batchId=):
// a layered layout (a job's column = the longest chain of dependencies before it) drawn on a canvas,
// with the same graph as a table for screen readers and keyboards.
import { useEffect, useMemo, useRef, useState } from "preact/hooks";
import { ErrorNote, Status } from "../components/bits";
import { api } from "../lib/api";
import { shortId } from "../lib/format";
import { useResource } from "../lib/hooks";
import type { Job, Page } from "../lib/types";

interface Batch { batchId: string; status?: string; counts: Record<string, number> }
type Node = Job & { dependsOn?: string[] | null; layer: number; row: number };
const MAX_JOBS = 500;
const NODE_W = 150, NODE_H = 34, GAP_X = 60, GAP_Y = 12, PAD = 10;
const FILL: Record<string, string> = { completed: "#dcefe1", failed: "#f8dedc", running: "#dde8f7", cancelled: "#e9ecf0" };

/** Columns by longest dependency chain, rows in order within a column. */
export function layered(jobs: (Job & { dependsOn?: string[] | null })[]): Node[] {
  const byId = new Map(jobs.map((j) => [j.jobId, j]));
  const layer = new Map<string, number>();
  const depth = (id: string, seen: Set<string>): number => {
    const known = layer.get(id);
    if (known !== undefined) return known;
    if (seen.has(id)) return 0; // a cycle cannot be submitted; guard anyway
    seen.add(id);
    const deps = (byId.get(id)?.dependsOn ?? []).filter((d) => byId.has(d));
    const value = deps.length ? 1 + Math.max(...deps.map((d) => depth(d, seen))) : 0;
    layer.set(id, value);
    return value;
  };
  const rows = new Map<number, number>();
  return jobs.map((j) => {
    const l = depth(j.jobId, new Set());
    const row = rows.get(l) ?? 0;
    rows.set(l, row + 1);
    return { ...j, layer: l, row };
  });
}

function GraphCanvas({ nodes }: { nodes: Node[] }) {
  const canvas = useRef<HTMLCanvasElement>(null);
  const layers = Math.max(...nodes.map((n) => n.layer)) + 1;
  const rows = Math.max(...nodes.map((n) => n.row)) + 1;
  const width = PAD * 2 + layers * NODE_W + (layers - 1) * GAP_X;
  const height = PAD * 2 + rows * NODE_H + (rows - 1) * GAP_Y;
  useEffect(() => {
    const ctx = canvas.current?.getContext("2d");
    if (!ctx || !canvas.current) return;
    const scale = window.devicePixelRatio || 1;
    canvas.current.width = width * scale;
    canvas.current.height = height * scale;
    ctx.scale(scale, scale);
    const at = new Map(nodes.map((n) => [n.jobId, { x: PAD + n.layer * (NODE_W + GAP_X), y: PAD + n.row * (NODE_H + GAP_Y) }]));
    ctx.strokeStyle = "#7d8793";
    ctx.lineWidth = 1.2;
    for (const n of nodes) {
      const to = at.get(n.jobId);
      for (const d of n.dependsOn ?? []) {
        const from = at.get(d);
        if (!from || !to) continue;
        ctx.beginPath();
        ctx.moveTo(from.x + NODE_W, from.y + NODE_H / 2);
        ctx.bezierCurveTo(from.x + NODE_W + GAP_X / 2, from.y + NODE_H / 2, to.x - GAP_X / 2, to.y + NODE_H / 2, to.x, to.y + NODE_H / 2);
        ctx.stroke();
      }
    }
    ctx.font = "12px system-ui, sans-serif";
    for (const n of nodes) {
      const p = at.get(n.jobId);
      if (!p) continue;
      ctx.fillStyle = FILL[n.status] ?? "#f3f5f8";
      ctx.strokeStyle = "#8a94a1";
      ctx.fillRect(p.x, p.y, NODE_W, NODE_H);
      ctx.strokeRect(p.x, p.y, NODE_W, NODE_H);
      ctx.fillStyle = "#1b1f24";
      ctx.fillText(`${n.jobType} ${shortId(n.jobId)}`.slice(0, 22), p.x + 6, p.y + 14);
      ctx.fillStyle = "#4d5560";
      ctx.fillText(n.status, p.x + 6, p.y + 28);
    }
  }, [nodes, width, height]);
  return <canvas ref={canvas} style={{ width: `${width}px`, height: `${height}px` }} role="img"
    aria-label={`Dependency graph: ${nodes.length} jobs in ${layers} layers; the table below lists each job's dependencies`} />;
}

export function BatchGraph({ nonce }: { nonce: number }) {
  const [typed, setTyped] = useState("");
  const [batchId, setBatchId] = useState("");
  // Without a batch id, the latest batch among recent jobs.
  const latest = useResource(async () => {
    const page = await api<Page<Job>>("/jobs", { query: { limit: 200 } });
    return page.items.find((j) => j.batchId)?.batchId ?? null;
  }, [nonce]);
  const id = batchId || latest.data || "";
  const graph = useResource(async () => {
    if (!id) return null;
    const [batch, jobs] = await Promise.all([
      api<Batch>(`/job-batches/${encodeURIComponent(id)}`),
      api<Page<Job & { dependsOn?: string[] | null }>>("/jobs", { query: { batchId: id, limit: MAX_JOBS } }),
    ]);
    return { batch, nodes: layered([...jobs.items].reverse()) };
  }, [id, nonce]);
  const short = useMemo(() => new Map((graph.data?.nodes ?? []).map((n) => [n.jobId, `${n.jobType} ${shortId(n.jobId)}`])), [graph.data]);
  return (
    <section class="panel chart wide" aria-label="Dependency graph of a batch">
      <div class="panel-head">
        <h2>Dependency graph of a batch</h2>
        <form class="toolbar" onSubmit={(e) => { e.preventDefault(); setBatchId(typed.trim()); }}>
          <label class="filter">Batch id<input value={typed} placeholder={latest.data ?? "batch id"} onInput={(e) => setTyped((e.currentTarget as HTMLInputElement).value)} /></label>
          <button type="submit">Show</button>
        </form>
      </div>
      <ErrorNote error={graph.error ?? latest.error} />
      {!id && !latest.loading && <p class="muted">No recent batch; submit one with POST /job-batches or enter its id.</p>}
      {graph.data && (
        <>
          <p>
            Batch <code>{graph.data.batch.batchId}</code>{graph.data.batch.status ? ` (${graph.data.batch.status})` : ""}:{" "}
            {Object.entries(graph.data.batch.counts).map(([k, v]) => `${k} ${v}`).join(", ")}
          </p>
          {graph.data.nodes.length > 0 && <div class="graph-wrap" tabIndex={0} role="region" aria-label="Dependency graph (scrolls sideways)"><GraphCanvas nodes={graph.data.nodes} /></div>}
          <details>
            <summary>The graph as a table</summary>
            <table class="small" aria-label="Jobs of the batch and their dependencies">
              <thead><tr><th scope="col">Job</th><th scope="col">Status</th><th scope="col">Layer</th><th scope="col">Depends on</th></tr></thead>
              <tbody>
                {graph.data.nodes.map((n) => (
                  <tr key={n.jobId}>
                    <th scope="row"><a href={`/jobs/${n.jobId}`}>{short.get(n.jobId)}</a></th><td><Status status={n.status} /></td><td>{n.layer}</td>
                    <td>{(n.dependsOn ?? []).map((d) => short.get(d) ?? shortId(d)).join(", ") || "—"}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </details>
        </>
      )}
    </section>
  );
}
