"""Span exporters: OTLP over HTTP to the standard endpoint variable, imported only when chosen.

Each case runs in a fresh interpreter: a tracer provider can be installed once per process.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run_python(code: str, **env: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), **env}, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture
def collector() -> Iterator[tuple[str, list[tuple[str, str, int]]]]:
    """An HTTP endpoint that records (path, content type, body size) of each POST, like an OTel collector."""
    received: list[tuple[str, str, int]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((self.path, self.headers["Content-Type"], len(body)))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", received
    server.shutdown()
    server.server_close()


def test_otlp_sends_spans_to_the_standard_endpoint(collector: tuple[str, list[tuple[str, str, int]]]) -> None:
    endpoint, received = collector
    run_python(
        "from opentelemetry import trace\n"
        "from shared.telemetry import setup_tracing, tracer\n"
        "setup_tracing('api', 'otlp')\n"
        "with tracer('t').start_as_current_span('submit'): pass\n"
        "trace.get_tracer_provider().shutdown()\n",
        OTEL_EXPORTER_OTLP_ENDPOINT=endpoint,
    )
    assert [(path, kind) for path, kind, _ in received] == [("/v1/traces", "application/x-protobuf")]
    assert received[0][2] > 0


@pytest.mark.parametrize("exporter", ["none", "console"])
def test_the_otlp_exporter_is_not_imported_unless_chosen(exporter: str) -> None:
    out = run_python(
        "import sys\n"
        "from shared.telemetry import setup_tracing\n"
        f"setup_tracing('api', {exporter!r})\n"
        "print(any(m.startswith('opentelemetry.exporter') for m in sys.modules))\n"
    )
    assert out.strip() == "False"
