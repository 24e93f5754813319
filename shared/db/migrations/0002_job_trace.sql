-- The W3C traceparent a job was submitted under, so every later event of the job joins its trace.
ALTER TABLE jobs ADD COLUMN trace_parent text;
