// Which routes this API offers, read once from its OpenAPI document: a page skips a route the API
// does not have (yet) and shows a "not available" panel, instead of a 404 in the console.
let paths: Promise<Set<string>> | null = null;

function load(): Promise<Set<string>> {
  paths ??= fetch("/openapi.json", { headers: { Accept: "application/json" } })
    .then((r) => (r.ok ? (r.json() as Promise<{ paths?: Record<string, unknown> }>) : { paths: undefined }))
    .then((doc) => new Set(Object.keys(doc.paths ?? {})))
    .catch(() => new Set<string>());
  return paths;
}

/** True when the API documents `path` (e.g. `/api/v1/stats`); unknown when the document is missing: true. */
export async function offers(path: string): Promise<boolean> {
  const known = await load();
  return known.size === 0 || known.has(path);
}
