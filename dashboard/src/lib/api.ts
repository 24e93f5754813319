// The REST client: Bearer key on every call, RFC 9457 problems turned into an error that reads well.
import { offers } from "./capabilities";
import { forgetKey, storedKey } from "./session";

export const API = "/api/v1";

export interface FieldError {
  field: string;
  message: string;
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly title: string,
    readonly detail: string,
    readonly errors: FieldError[] = [],
  ) {
    super(detail || title);
  }

  /** The message for one field (`retry.baseDelayMs`), or undefined. */
  fieldError(field: string): string | undefined {
    return this.errors.find((e) => e.field === field || e.field.endsWith(`.${field}`))?.message;
  }
}

/** An error in words for the page: the problem's detail, else what went wrong with the request. */
export function describe(error: unknown): string {
  if (error instanceof ApiError) {
    const fields = error.errors.map((e) => `${e.field}: ${e.message}`).join("; ");
    return `${error.title} (${error.status}): ${error.detail}${fields ? ` (${fields})` : ""}`;
  }
  if (error instanceof Error) return `The request failed: ${error.message}`;
  return "The request failed.";
}

type Query = Record<string, string | number | boolean | null | undefined | (string | number)[]>;

export function queryString(query: Query): string {
  const params = new URLSearchParams();
  for (const [name, value] of Object.entries(query)) {
    if (value === undefined || value === null || value === "") continue;
    for (const v of Array.isArray(value) ? value : [value]) params.append(name, String(v));
  }
  const text = params.toString();
  return text ? `?${text}` : "";
}

// A 401 anywhere means the key stopped working: the app listens and shows the sign-in form.
const signedOut = new Set<() => void>();
export function onSignedOut(listener: () => void): () => void {
  signedOut.add(listener);
  return () => signedOut.delete(listener);
}

export interface RequestOptions {
  method?: string;
  body?: unknown;
  query?: Query;
  key?: string;
  signal?: AbortSignal;
}

async function problemOf(response: Response): Promise<ApiError> {
  const type = response.headers.get("content-type") ?? "";
  if (type.includes("json")) {
    try {
      const p = (await response.json()) as { title?: string; detail?: string; errors?: FieldError[] };
      return new ApiError(response.status, p.title ?? response.statusText, p.detail ?? "", p.errors ?? []);
    } catch {
      // fall through to the status line
    }
  }
  return new ApiError(response.status, response.statusText || "Error", `the server answered ${response.status}`);
}

/** Call `path` only if the API offers it; else reject with the 404 it would answer (no request, no console noise). */
export async function apiIfOffered<T>(path: string, options: RequestOptions = {}): Promise<T> {
  if (!(await offers(`${API}${path}`))) throw new ApiError(404, "Not Found", `this API has no ${API}${path}`);
  return api<T>(path, options);
}

/** Call the API; resolves to the JSON body (undefined for 204), rejects with an ApiError. */
export async function api<T>(path: string, options: RequestOptions = {}): Promise<T> {
  const key = options.key ?? storedKey();
  const headers: Record<string, string> = { Accept: "application/json" };
  if (key) headers.Authorization = `Bearer ${key}`;
  if (options.body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(`${API}${path}${queryString(options.query ?? {})}`, {
    method: options.method ?? "GET",
    headers,
    body: options.body === undefined ? undefined : JSON.stringify(options.body),
    signal: options.signal,
  });
  if (!response.ok) {
    const error = await problemOf(response);
    if (response.status === 401 && options.key === undefined) {
      forgetKey();
      signedOut.forEach((listener) => listener());
    }
    throw error;
  }
  if (response.status === 204) return undefined as T;
  return (await response.json()) as T;
}
