// The shell: sign-in gate, navigation, the live stream and the routes (history API, no hash).
// The API answers index.html for paths under these pages only: keep services/api/http/dashboard.py PAGES in step.
import { lazy, LocationProvider, Route, Router, useLocation } from "preact-iso";
import { useEffect, useMemo, useState } from "preact/hooks";
import { onSignedOut } from "./lib/api";
import { LiveContext } from "./lib/hooks";
import { LiveStream, type LiveState } from "./lib/live";
import { forgetKey, storedKey, storeKey } from "./lib/session";
import { Alerts } from "./pages/Alerts";
import { DeadLetters } from "./pages/DeadLetters";
import { Jobs } from "./pages/Jobs";
import { Overview } from "./pages/Overview";
import { Queues } from "./pages/Queues";
import { Schedules } from "./pages/Schedules";
import { SignIn } from "./pages/SignIn";
import { Workers } from "./pages/Workers";

// uPlot is only needed by the charts: a separate chunk, loaded when that page opens.
const Charts = lazy(() => import("./pages/Charts").then((m) => m.Charts));

const NAV: [string, string][] = [
  ["/", "Overview"], ["/jobs", "Jobs"], ["/queues", "Queues"], ["/dlq", "Dead letters"],
  ["/schedules", "Schedules"], ["/workers", "Workers"], ["/charts", "Charts"], ["/alerts", "Alerts"],
];

function Nav({ state, onSignOut }: { state: LiveState; onSignOut: () => void }) {
  const { path } = useLocation();
  const current = (href: string) => (href === "/" ? path === "/" : path.startsWith(href));
  return (
    <nav aria-label="Main">
      <span class="brand">Conveyor</span>
      <ul>
        {NAV.map(([href, label]) => (
          <li key={href}><a href={href} aria-current={current(href) ? "page" : undefined}>{label}</a></li>
        ))}
      </ul>
      <span class={`live live-${state}`} role="status" aria-label={`Live updates: ${state}`}>● {state}</span>
      <button type="button" class="link" onClick={onSignOut}>Sign out</button>
    </nav>
  );
}

function NotFound() {
  return (
    <div class="page">
      <h1>No such page</h1>
      <p><a href="/">Back to the overview</a></p>
    </div>
  );
}

function Shell({ apiKey, onSignOut }: { apiKey: string; onSignOut: () => void }) {
  const live = useMemo(() => new LiveStream(apiKey), [apiKey]);
  const [state, setState] = useState<LiveState>(live.state);
  useEffect(() => {
    const off = live.onState(setState);
    return () => { off(); live.close(); };
  }, [live]);
  return (
    <LiveContext.Provider value={live}>
      <LocationProvider>
        <Nav state={state} onSignOut={onSignOut} />
        <main id="main">
          <Router>
            <Route path="/" component={Overview} />
            <Route path="/jobs" component={Jobs} />
            <Route path="/jobs/:id" component={Jobs} />
            <Route path="/queues" component={Queues} />
            <Route path="/dlq" component={DeadLetters} />
            <Route path="/schedules" component={Schedules} />
            <Route path="/workers" component={Workers} />
            <Route path="/charts" component={Charts} />
            <Route path="/alerts" component={Alerts} />
            <Route default component={NotFound} />
          </Router>
        </main>
      </LocationProvider>
    </LiveContext.Provider>
  );
}

export function App() {
  const [key, setKey] = useState<string | null>(storedKey());
  useEffect(() => onSignedOut(() => setKey(null)), []);
  if (!key) {
    return <SignIn onSignedIn={(k) => { storeKey(k); setKey(k); }} />;
  }
  return <Shell apiKey={key} onSignOut={() => { forgetKey(); setKey(null); }} />;
}
