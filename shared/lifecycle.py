"""Run one service under signals: start, wait for SIGTERM/SIGINT or a crashed task, then drain."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable
from typing import Protocol, TypeVar

import uvloop

from shared.logs import configure_logging
from shared.settings import CommonSettings
from shared.telemetry import setup_tracing
from shared.waiting import first_of

log = logging.getLogger(__name__)

S = TypeVar("S", bound=CommonSettings)


class Service(Protocol):
    """What the lifecycle needs: start, stop (idempotent, bounded) and a failure signal."""

    name: str

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    @property
    def failed(self) -> asyncio.Event: ...


async def run_service(service: Service, *, drain_timeout_s: float, handle_signals: bool = True) -> int:
    """Run until a stop signal or a crash; returns the process exit code."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    installed: list[signal.Signals] = []
    if handle_signals:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)
    code = 0
    try:
        await service.start()
        log.info("%s started", service.name)
        await first_of(stop.wait(), service.failed.wait())
        if service.failed.is_set():
            log.error("%s stopping because a task crashed", service.name)
            code = 1
        else:
            log.info("%s stopping (signal)", service.name)
    except Exception:
        log.exception("%s failed to start", service.name)
        code = 1
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
        try:
            # A second signal during the drain is the operator insisting: let it kill us.
            await asyncio.wait_for(service.stop(), timeout=drain_timeout_s + 10)
        except TimeoutError:
            log.error("%s did not stop within %.0fs", service.name, drain_timeout_s + 10)
            code = code or 1
        log.info("%s stopped", service.name)
    return code


def main(service_name: str, settings: S, build: Callable[[S], Service]) -> None:
    """Entry point body of `python -m services.<name>`: logging, tracing, run, exit code."""
    configure_logging(service_name, settings.log_level, settings.log_format)
    setup_tracing(service_name, settings.otel_exporter)

    async def _run() -> int:
        return await run_service(build(settings), drain_timeout_s=settings.drain_timeout_s)

    # uvloop roughly halves the event loop's own cost per socket operation, which dominates here.
    with contextlib.suppress(KeyboardInterrupt), asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        raise SystemExit(runner.run(_run()))
