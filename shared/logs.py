"""JSON (or plain text) logs on stderr, one line per record, with the service name."""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Any

import orjson

_RESERVED = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message"}


class JsonFormatter(logging.Formatter):
    """Render a record as one JSON object; `extra=` fields become keys."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _RESERVED and not key.startswith("_"):
                doc[key] = value
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(doc, default=str).decode()


def configure_logging(service: str, level: str = "INFO", fmt: str = "json") -> None:
    """Install the root handler once per process."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter(service))
    else:
        handler.setFormatter(
            logging.Formatter(f"%(asctime)s {service} %(levelname)s %(name)s: %(message)s")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiokafka is chatty about every reconnect; its warnings still show.
    logging.getLogger("aiokafka").setLevel(max(logging.WARNING, root.level))


def job_fields(
    job_id: object = None,
    *,
    queue: str | None = None,
    attempt: int | None = None,
    worker_id: str | None = None,
    traceparent: str | None = None,
) -> dict[str, object]:
    """`extra=` fields that tie a log line to one job's story; absent values are left out.

    Operators filter on these keys (`job_id`, `queue`, `attempt`, `worker_id`, `trace_id`),
    so messages need not repeat them.
    """
    fields: dict[str, object] = {}
    if job_id is not None:
        fields["job_id"] = str(job_id)
    if queue is not None:
        fields["queue"] = queue
    if attempt is not None:
        fields["attempt"] = attempt
    if worker_id is not None:
        fields["worker_id"] = worker_id
    if traceparent:
        # W3C traceparent: version-traceid-spanid-flags; the trace id is what tracing UIs search by.
        parts = traceparent.split("-")
        if len(parts) == 4:
            fields["trace_id"] = parts[1]
    return fields
