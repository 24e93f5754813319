"""OpenTelemetry tracing with W3C trace context carried in Kafka headers."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from opentelemetry import context, propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

Headers = list[tuple[str, bytes]]


def setup_tracing(service: str, exporter: str = "none") -> None:
    """Install a tracer provider for this process; `console` prints finished spans."""
    provider = TracerProvider(resource=Resource.create({"service.name": f"conveyor-{service}"}))
    if exporter == "console":
        provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    trace.set_tracer_provider(provider)


def tracer(name: str) -> trace.Tracer:
    """A tracer for a module."""
    return trace.get_tracer(name)


def inject_headers() -> Headers:
    """The current trace context as Kafka headers (empty when no span is active)."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return [(k, v.encode()) for k, v in carrier.items()]


def headers_to_dict(headers: Sequence[tuple[str, bytes]] | None) -> dict[str, str]:
    """Kafka headers as a text carrier."""
    return {k: v.decode(errors="replace") for k, v in headers or ()}


@contextmanager
def continued_span(
    name: str, headers: Sequence[tuple[str, bytes]] | None, kind: trace.SpanKind
) -> Iterator[trace.Span]:
    """A span that continues the trace whose context arrived in `headers`."""
    parent = propagate.extract(headers_to_dict(headers))
    token = context.attach(parent)
    try:
        with trace.get_tracer("conveyor").start_as_current_span(name, kind=kind) as span:
            yield span
    finally:
        context.detach(token)
