"""`python -m deploy.local` (what `make dev` runs): start the local cluster, stop it on Ctrl-C."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys

from deploy.local.dashboard import ensure_built
from deploy.local.runner import STOP_TIMEOUT_S, Runner, RunnerConfig, RunnerError, clean
from deploy.local.supervisor import SupervisorError
from shared.waiting import first_of, unless

log = logging.getLogger("deploy.local")

_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


async def run(runner: Runner) -> int:
    """Start, wait for a signal, stop within STOP_TIMEOUT_S; a second signal kills everything."""
    loop = asyncio.get_running_loop()
    stop, force = asyncio.Event(), asyncio.Event()

    def on_signal(sig: signal.Signals) -> None:
        if stop.is_set():
            log.warning("%s again: killing everything now", sig.name)
            force.set()
        else:
            log.info("%s: stopping (press Ctrl-C again to force)", sig.name)
            stop.set()

    for sig in _SIGNALS:
        loop.add_signal_handler(sig, on_signal, sig)
    code = 0
    try:
        code = await _run_until_stopped(runner, stop)
        if not await _shutdown(runner, force):
            code = code or 1
    finally:
        for sig in _SIGNALS:
            loop.remove_signal_handler(sig)
    return code


async def _run_until_stopped(runner: Runner, stop: asyncio.Event) -> int:
    try:
        # A signal during startup cancels it (and waits for it to unwind); `_shutdown` cleans up.
        started, _ = await unless(stop, runner.start())
    except (RunnerError, SupervisorError) as error:
        log.error("cannot start the cluster:\n%s", error)
        return 1
    except Exception as error:
        log.error("cannot start the cluster", exc_info=error)
        return 1
    if started:
        print(runner.banner(), flush=True)
        await stop.wait()
    return 0


async def _shutdown(runner: Runner, force: asyncio.Event) -> bool:
    """Stop gracefully; on a second signal or after STOP_TIMEOUT_S, SIGKILL. True if graceful."""
    graceful = asyncio.create_task(runner.stop(), name="stop-cluster")
    # Shielded: when the force or the deadline wins, the graceful stop goes on and reaps the killed.
    await first_of(asyncio.shield(graceful), force.wait(), timeout_s=STOP_TIMEOUT_S)
    clean = graceful.done() and graceful.exception() is None
    if not graceful.done():
        if not force.is_set():
            log.error("not stopped after %.0fs; killing everything", STOP_TIMEOUT_S)
        await asyncio.to_thread(runner.force_kill)
        # The graceful path now finishes quickly and reaps what was killed.
        with contextlib.suppress(Exception):
            await asyncio.wait_for(graceful, 15)
    elif graceful.exception() is not None:
        log.error("stopping failed", exc_info=graceful.exception())
        await asyncio.to_thread(runner.force_kill)
    log.info("stopped")
    return clean


def main(argv: list[str] | None = None) -> int:
    """Entry point: `run` (the default) or `clean`; configuration comes from the environment."""
    parser = argparse.ArgumentParser(prog="python -m deploy.local", description=__doc__)
    parser.add_argument("command", nargs="?", choices=("run", "clean"), default="run",
                        help="run the cluster (default), or delete its data")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s [runner] %(levelname)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per readiness probe
    try:
        config = RunnerConfig.from_env()
        if args.command == "clean":
            clean(config)
            return 0
        runner = Runner(config)
    except RunnerError as exc:
        log.error("%s", exc)
        return 2
    # Before the API starts: it mounts the dashboard only if dist/index.html exists when it starts.
    ensure_built()
    return asyncio.run(run(runner))


if __name__ == "__main__":
    sys.exit(main())
