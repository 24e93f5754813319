// The live stream: one WebSocket to the notifier, reconnecting with backoff and catching up with `since`.
//
// Messages are handed to listeners once per animation frame, in batches, so a burst of 1,000 events a
// second costs the page one render per frame, not one per event. Event ids already seen are dropped,
// so a catch-up that overlaps what arrived live never doubles a row.
import type { LiveMessage } from "./types";

export type LiveState = "connecting" | "live" | "offline";
type Listener = (batch: LiveMessage[]) => void;

const MAX_BACKOFF_MS = 10_000;
/** The message a page gets when the stream could not catch up: what it shows may be stale, read it again. */
export const RESYNC = "resync";
const SEEN_LIMIT = 5_000;

interface Config {
  notifierUrl: string | null;
  notifierPort: number;
}

async function streamUrl(): Promise<string> {
  const response = await fetch("/config.json", { headers: { Accept: "application/json" } });
  const config = (await response.json()) as Config;
  if (config.notifierUrl) return `${config.notifierUrl.replace(/\/$/, "")}/ws`;
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  return `${scheme}://${location.hostname}:${config.notifierPort}/ws`;
}

export class LiveStream {
  state: LiveState = "connecting";
  private socket: WebSocket | null = null;
  private lastEventId: string | null = null;
  private readonly seen = new Set<string>();
  private readonly listeners = new Set<Listener>();
  private readonly stateListeners = new Set<(state: LiveState) => void>();
  private pending: LiveMessage[] = [];
  private frame = 0;
  private failures = 0;
  private timer: number | undefined;
  private closed = false;

  constructor(private readonly key: string) {
    void this.open();
  }

  /** Receive batches of messages (at most one batch per animation frame); returns the unsubscribe. */
  subscribe(listener: Listener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  onState(listener: (state: LiveState) => void): () => void {
    this.stateListeners.add(listener);
    return () => this.stateListeners.delete(listener);
  }

  close(): void {
    this.closed = true;
    window.clearTimeout(this.timer);
    this.socket?.close(1000, "signed out");
  }

  private setState(state: LiveState): void {
    this.state = state;
    this.stateListeners.forEach((listener) => listener(state));
  }

  private async open(): Promise<void> {
    if (this.closed) return;
    this.setState("connecting");
    let url: string;
    try {
      url = await streamUrl();
    } catch {
      this.retry();
      return;
    }
    // Browsers cannot set headers on a WebSocket: the notifier takes the key as `?token=` on the handshake.
    const socket = new WebSocket(`${url}?token=${encodeURIComponent(this.key)}`);
    this.socket = socket;
    socket.onopen = () => {
      this.failures = 0;
      const subscribe: Record<string, unknown> = { type: "subscribe", all: true };
      if (this.lastEventId) subscribe.since = this.lastEventId;
      socket.send(JSON.stringify(subscribe));
    };
    socket.onmessage = (event: MessageEvent<string>) => this.receive(event.data);
    socket.onclose = () => {
      if (this.socket === socket) this.retry();
    };
  }

  private retry(): void {
    if (this.closed) return;
    this.setState("offline");
    // Full jitter over an exponential step, so many pages never reconnect in step.
    const ceiling = Math.min(MAX_BACKOFF_MS, 500 * 2 ** this.failures);
    this.failures += 1;
    this.timer = window.setTimeout(() => void this.open(), Math.random() * ceiling + 100);
  }

  private receive(text: string): void {
    let message: LiveMessage;
    try {
      message = JSON.parse(text) as LiveMessage;
    } catch {
      return;
    }
    // Live only once the notifier confirmed the subscription: events before that would be missed.
    if (message.type === "subscribed") this.setState("live");
    if (message.type === "error" && (message.code === "unknown_since" || message.code === "since_too_old")) {
      // The notifier cannot replay from our last event: take the stream from now, and have the pages
      // read their state again (RESYNC) instead of showing rows that missed updates.
      this.lastEventId = null;
      this.socket?.send(JSON.stringify({ type: "subscribe", all: true }));
      message = { type: RESYNC };
    }
    const id = message.eventId;
    if (typeof id === "string") {
      if (this.seen.has(id)) return;
      this.seen.add(id);
      if (this.seen.size > SEEN_LIMIT) this.seen.delete(this.seen.values().next().value as string);
      this.lastEventId = id;
    }
    this.pending.push(message);
    if (!this.frame) this.frame = requestAnimationFrame(() => this.flush());
  }

  private flush(): void {
    this.frame = 0;
    const batch = this.pending;
    this.pending = [];
    this.listeners.forEach((listener) => listener(batch));
  }
}
