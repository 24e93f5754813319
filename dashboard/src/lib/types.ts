// Shapes of the REST API (DESIGN §5), as far as the dashboard reads them.
export type JobStatus =
  | "pending" | "blocked" | "scheduled" | "queued" | "running"
  | "retrying" | "completed" | "failed" | "cancelled";

export const STATUSES: JobStatus[] = [
  "pending", "blocked", "scheduled", "queued", "running", "retrying", "completed", "failed", "cancelled",
];

export interface JobError {
  type: string;
  message: string;
  retryable?: boolean;
}

export interface Attempt {
  attempt: number;
  status: string;
  workerId: string | null;
  startedAt: string | null;
  endedAt: string | null;
  error: JobError | null;
}

export interface WaitingReason {
  code: string;
  message: string;
  [detail: string]: unknown;
}

export interface Job {
  jobId: string;
  queue: string;
  jobType: string;
  status: JobStatus;
  priority: number;
  payload: unknown;
  maxAttempts: number;
  attempts: number;
  attemptHistory?: Attempt[];
  createdAt: string;
  updatedAt?: string;
  scheduledFor?: string | null;
  startedAt: string | null;
  completedAt: string | null;
  result: unknown;
  error: JobError | null;
  progress: unknown;
  tags?: string[];
  batchId?: string | null;
  logs?: unknown;
  cancelReason?: string | null;
  waitingReason?: WaitingReason | null;
}

export interface Page<T> {
  items: T[];
  nextCursor?: string | null;
}

export interface Envelope {
  eventId: string;
  type: string;
  occurredAt: string;
  attempt: number | null;
  data: Record<string, unknown>;
}

export interface Limit {
  limit: number;
  periodMs: number;
}

export interface RetryPolicy {
  strategy: "exponential" | "linear" | "fixed" | "none";
  baseDelayMs?: number;
  maxDelayMs?: number;
  factor?: number;
  jitter?: boolean;
}

export interface QueueConfig {
  rateLimit: Limit | null;
  keyRateLimit: Limit | null;
  concurrency: number | null;
  keyConcurrency: number | null;
  maxLength: number | null;
  retry: RetryPolicy | null;
  maxAttempts: number | null;
  aging: { everyMs: number; step: number } | null;
  fairnessWeights: Record<string, number> | null;
}

export interface Queue {
  name: string;
  paused: boolean;
  config: QueueConfig;
  counts: Record<string, number>;
  oldestWaitingAgeMs: number | null;
  throughputPerMin: number;
}

export interface Schedule {
  id: string;
  name: string;
  cron: string;
  timezone: string;
  enabled: boolean;
  misfirePolicy: "skip" | "run_once";
  nextFireTimes: string[];
  lastFiredAt: string | null;
  job: { queue: string; jobType: string; payload?: unknown; [field: string]: unknown };
}

export interface Worker {
  workerId: string;
  host: string;
  pid: number;
  queues: string[];
  concurrency: number;
  running: string[];
  status: "active" | "draining" | "gone";
  startedAt: string;
  lastHeartbeatAt: string;
}

export interface QueueMetrics {
  queue: string;
  counts: Record<string, number>;
  successRate: number | null;
  durationMs: { p50: number | null; p95: number | null; p99: number | null };
  backlog: number;
  oldestWaitingAgeMs: number | null;
  throughputPerMin: number;
  workersNeeded: number | null;
}

export interface Alert {
  alertId: string;
  kind: string;
  queue: string | null;
  jobType?: string | null;
  status: "open" | "resolved";
  severity: string;
  openedAt: string;
  resolvedAt?: string | null;
  details: unknown;
}

/** A message of the notifier's stream (DESIGN §7). */
export interface LiveMessage {
  type: string;
  eventId?: string;
  jobId?: string;
  queue?: string;
  jobType?: string;
  status?: JobStatus;
  attempt?: number | null;
  occurredAt?: string;
  data?: Record<string, unknown>;
  [field: string]: unknown;
}
