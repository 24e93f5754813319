// Numbers, times and durations as an operator reads them.

export function when(iso: string | null | undefined): string {
  if (!iso) return "—";
  const date = new Date(iso);
  return date.toLocaleString(undefined, { hour12: false });
}

export function ago(iso: string | null | undefined, now = Date.now()): string {
  if (!iso) return "—";
  return `${duration(now - new Date(iso).getTime())} ago`;
}

export function duration(ms: number | null | undefined): string {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return "—";
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(s < 10 ? 1 : 0)} s`;
  const m = s / 60;
  if (m < 60) return `${Math.floor(m)} min ${Math.round(s % 60)} s`;
  const h = m / 60;
  if (h < 48) return `${Math.floor(h)} h ${Math.round(m % 60)} min`;
  return `${Math.floor(h / 24)} d ${Math.round(h % 24)} h`;
}

export function between(start: string | null | undefined, end: string | null | undefined): string {
  if (!start || !end) return "—";
  return duration(new Date(end).getTime() - new Date(start).getTime());
}

export function count(n: number | null | undefined): string {
  if (n === null || n === undefined) return "—";
  return n.toLocaleString();
}

export function pretty(value: unknown): string {
  return value === undefined ? "" : JSON.stringify(value, null, 2);
}

/** `datetime-local` input value (local time) → ISO string, or undefined when empty. */
export function isoOfLocal(value: string): string | undefined {
  return value ? new Date(value).toISOString() : undefined;
}

export function shortId(id: string): string {
  return id.slice(0, 8);
}
