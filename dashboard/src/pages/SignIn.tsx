// Sign in with an API key: checked against the API before it is kept (session storage only).
import { useState } from "preact/hooks";
import { api, ApiError, describe } from "../lib/api";

export function SignIn({ onSignedIn }: { onSignedIn: (key: string) => void }) {
  const [key, setKey] = useState("");
  const [error, setError] = useState("");
  const [busy, setBusy] = useState(false);
  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setError("");
    try {
      await api("/jobs", { key: key.trim(), query: { limit: 1 } });
      onSignedIn(key.trim());
    } catch (reason) {
      if (reason instanceof ApiError && reason.status === 401) setError("That API key is not valid. Check it and try again.");
      else if (reason instanceof ApiError && reason.status === 403) setError("That API key may not read jobs (it needs the 'read' scope).");
      else setError(describe(reason));
    } finally {
      setBusy(false);
    }
  };
  return (
    <main class="signin">
      <form onSubmit={submit} aria-label="Sign in">
        <h1>Conveyor</h1>
        <p>Sign in with an API key (<code>make dev</code> prints one and writes it to <code>.conveyor/env</code>).</p>
        <label for="api-key">API key</label>
        <input id="api-key" type="password" autoComplete="off" value={key} required
          onInput={(e) => setKey((e.currentTarget as HTMLInputElement).value)}
          aria-invalid={error ? "true" : undefined} aria-describedby={error ? "signin-error" : undefined} />
        <button type="submit" disabled={busy || !key.trim()}>Sign in</button>
        {error && <p id="signin-error" class="error" role="alert">{error}</p>}
      </form>
    </main>
  );
}
