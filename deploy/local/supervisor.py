"""An asyncio process supervisor: `python -m <module>` children, readiness, restarts, shutdown.

Used by `make dev` (deploy/local/runner.py) and by the e2e test cluster. Each child runs in
its own session, so a terminal Ctrl-C reaches only us and we decide the stop order; the
child's whole process group is killed once it has exited, so its own children go with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import os
import signal
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx

from deploy.local import broker_watch
from deploy.local.paths import REPO_ROOT
from deploy.local.servers import KafkaBroker, die_with_parent, tail
from shared.backoff import Backoff
from shared.waiting import first_of

log = logging.getLogger(__name__)

_PROBE_INTERVAL_S = 0.1
_PROBE_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class ServiceSpec:
    """How to run one service: `python -m module` listening on `port`."""

    name: str
    module: str
    port: int
    env: Mapping[str, str] = field(default_factory=dict)
    ready_path: str = "/readyz"

    @property
    def ready_url(self) -> str:
        """The URL that must answer 200 before the service counts as ready."""
        return f"http://127.0.0.1:{self.port}{self.ready_path}"


class SupervisorError(RuntimeError):
    """A supervised service could not be started or controlled."""


class ServiceFailed(SupervisorError):
    """A service exited or timed out before it became ready."""


class State(enum.Enum):
    """Where a supervised service is in its life."""

    IDLE = "idle"  # not wanted (never started, or killed with restart=False)
    STARTING = "starting"
    READY = "ready"
    BACKOFF = "backoff"  # crashed; waiting to restart
    FAILED = "failed"  # died before its first readiness
    STOPPED = "stopped"


class _Service:
    def __init__(self, spec: ServiceSpec) -> None:
        self.spec = spec
        self.state = State.IDLE
        self.changed = asyncio.Condition()
        self.wanted = asyncio.Event()
        self.proc: asyncio.subprocess.Process | None = None
        self.monitor: asyncio.Task[None] | None = None
        self.fail_fast = False  # set by start_service: dying before ready is an error, not a crash
        self.restarts = 0
        self.last_rc: int | None = None

    async def set_state(self, state: State) -> None:
        async with self.changed:
            self.state = state
            self.changed.notify_all()


class Supervisor:
    """Starts, watches, restarts and stops a set of services (and restarts a crashed broker)."""

    def __init__(
        self,
        specs: Sequence[ServiceSpec],
        *,
        log_dir: Path | None = None,
        echo: bool = False,
        base_env: Mapping[str, str] | None = None,
        cwd: Path = REPO_ROOT,
        ready_timeout_s: float = 60.0,
        stop_timeout_s: float = 30.0,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 30.0,
        stable_after_s: float = 30.0,
        output: IO[str] | None = None,
        on_spawn: Callable[[str, int], None] | None = None,
        parallel_stop: bool = False,
    ) -> None:
        self._services = {s.name: _Service(s) for s in specs}
        self.log_dir = log_dir
        self.echo = echo
        self.base_env = dict(os.environ if base_env is None else base_env)
        self.cwd = cwd
        self.ready_timeout_s = ready_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.stable_after_s = stable_after_s
        self._output = output
        self._on_spawn = on_spawn
        self.parallel_stop = parallel_stop  # tests: nobody needs the orderly drain
        self._stopping = asyncio.Event()
        self._stop_task: asyncio.Task[None] | None = None
        self._side_tasks: set[asyncio.Task[Any]] = set()
        self._pumps: set[asyncio.Task[None]] = set()
        self._watchers: set[asyncio.Task[Any]] = set()
        self._http: httpx.AsyncClient | None = None

    # -- queries -------------------------------------------------------------------------

    @property
    def names(self) -> list[str]:
        """Service names in start order."""
        return list(self._services)

    def spec(self, name: str) -> ServiceSpec:
        """The spec of service `name`."""
        return self._svc(name).spec

    def state(self, name: str) -> State:
        """The current state of service `name`."""
        return self._svc(name).state

    def pid(self, name: str) -> int | None:
        """PID of the running process of `name`, or None."""
        proc = self._svc(name).proc
        return proc.pid if proc is not None and proc.returncode is None else None

    def restarts(self, name: str) -> int:
        """How many times `name` was restarted after a crash."""
        return self._svc(name).restarts

    def log_path(self, name: str) -> Path | None:
        """The log file of `name` (None when output is only echoed)."""
        return self.log_dir / f"{name}.log" if self.log_dir is not None else None

    def _svc(self, name: str) -> _Service:
        try:
            return self._services[name]
        except KeyError:
            raise SupervisorError(f"unknown service {name!r}") from None

    # -- starting ------------------------------------------------------------------------

    async def start(self, names: Iterable[str] | None = None, *, parallel: bool = False) -> None:
        """Start services (all by default): in order, each waited ready, or all at once."""
        todo = list(self._services) if names is None else list(names)
        if parallel:
            results = await asyncio.gather(*(self.start_service(n) for n in todo),
                                           return_exceptions=True)
            errors = [r for r in results if isinstance(r, BaseException)]
            if errors:
                raise errors[0]
            return
        for name in todo:
            await self.start_service(name)

    async def start_service(self, name: str, timeout_s: float | None = None) -> None:
        """Start `name` (or let it run again after `kill(restart=False)`) and wait until ready."""
        if self._stopping.is_set():
            raise SupervisorError("supervisor is stopping")
        svc = self._svc(name)
        if svc.state is State.READY and self.pid(name) is not None:
            return
        svc.fail_fast = True
        svc.wanted.set()
        if svc.monitor is None or svc.monitor.done():
            svc.monitor = self._spawn_task(self._monitor(svc), f"supervise-{name}")
        await self.wait_ready(name, timeout_s)

    async def wait_ready(self, name: str, timeout_s: float | None = None) -> None:
        """Wait until `name` answers on its ready URL (or raise `ServiceFailed`)."""
        svc = self._svc(name)
        timeout = self.ready_timeout_s if timeout_s is None else timeout_s
        try:
            async with asyncio.timeout(timeout), svc.changed:
                await svc.changed.wait_for(
                    lambda: svc.state in (State.READY, State.FAILED, State.STOPPED)
                )
        except TimeoutError:
            raise ServiceFailed(self._failure(name, f"not ready after {timeout:.0f}s")) from None
        if svc.state is not State.READY:
            raise ServiceFailed(self._failure(name, f"exited with rc {svc.last_rc}"))

    def _failure(self, name: str, what: str) -> str:
        path = self.log_path(name)
        where = f"; last log lines of {path}:\n{tail(path)}" if path is not None else ""
        return f"service {name} {what} ({self.spec(name).ready_url}){where}"

    async def _monitor(self, svc: _Service) -> None:
        name = svc.spec.name
        # No jitter: one process restarting, and the log says exactly when.
        backoff = Backoff(self.backoff_initial_s, self.backoff_max_s, jitter=False)
        while not self._stopping.is_set():
            await first_of(svc.wanted.wait(), self._stopping.wait())
            if self._stopping.is_set():
                break
            await svc.set_state(State.STARTING)
            started = asyncio.get_running_loop().time()
            rc = await self._run_once(svc)
            svc.last_rc = rc
            if self._stopping.is_set():
                break
            if svc.fail_fast:
                # Never became ready since start_service: report it instead of looping.
                svc.wanted.clear()
                log.error("service %s exited with rc %s before it was ready", name, rc)
                await svc.set_state(State.FAILED)
                continue
            if not svc.wanted.is_set():
                log.info("service %s exited with rc %s; not restarting (on request)", name, rc)
                await svc.set_state(State.IDLE)
                continue
            if asyncio.get_running_loop().time() - started > self.stable_after_s:
                backoff.reset()
            delay = backoff.next_delay()
            log.warning("service %s exited with rc %s; restarting in %.1fs", name, rc, delay)
            svc.restarts += 1
            await svc.set_state(State.BACKOFF)
            await first_of(self._stopping.wait(), timeout_s=delay)
        await svc.set_state(State.STOPPED)

    async def _run_once(self, svc: _Service) -> int | None:
        """One life of the service process; its exit code (None if it could not be spawned)."""
        try:
            proc = await self._spawn(svc)
        except OSError:
            log.exception("service %s could not be spawned", svc.spec.name)
            return None
        probe = self._spawn_task(self._probe(svc, proc), f"probe-{svc.spec.name}")
        if self._stopping.is_set():  # stop() ran while we were spawning
            await self._terminate(svc, proc, self.stop_timeout_s)
        rc = await proc.wait()
        probe.cancel()
        self._kill_group(proc.pid)  # leftovers of the service (e.g. job subprocesses)
        return rc

    async def _spawn(self, svc: _Service) -> asyncio.subprocess.Process:
        spec = svc.spec
        env = {**self.base_env, "PYTHONUNBUFFERED": "1", **spec.env}
        path = self.log_path(spec.name)
        log_file: IO[bytes] | None = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            log_file = path.open("ab")
        # Our own pipe, not asyncio's PIPE: on 3.11, Process.wait() would not return while a
        # grandchild still holds an asyncio-managed pipe open.
        read_fd, write_fd = os.pipe() if self.echo else (-1, -1)
        try:
            stdout: Any = write_fd if self.echo else (log_file or asyncio.subprocess.DEVNULL)
            # Spawned from the event loop's thread: the children die with the supervisor.
            proc = await asyncio.create_subprocess_exec(
                *die_with_parent([sys.executable, "-m", spec.module]),
                stdin=asyncio.subprocess.DEVNULL, stdout=stdout, stderr=asyncio.subprocess.STDOUT,
                env=env, cwd=self.cwd, start_new_session=True,
            )
        except BaseException:
            if self.echo:
                os.close(read_fd)
            if log_file is not None:
                log_file.close()
            raise
        finally:
            if self.echo:
                os.close(write_fd)
        if not self.echo and log_file is not None:
            log_file.close()  # the child has its own copy of the descriptor
        svc.proc = proc
        if self._on_spawn is not None:
            self._on_spawn(spec.name, proc.pid)
        log.info("service %s started (pid %d, port %d)", spec.name, proc.pid, spec.port)
        if self.echo:
            pump = asyncio.create_task(self._pump(spec.name, read_fd, log_file),
                                       name=f"pump-{spec.name}")
            self._pumps.add(pump)
            pump.add_done_callback(self._pumps.discard)
        return proc

    async def _pump(self, name: str, read_fd: int, log_file: IO[bytes] | None) -> None:
        out = self._output or sys.stdout
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=1 << 20)
        transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(read_fd, "rb", buffering=0)
        )
        try:
            while line := await reader.readline():
                if log_file is not None:
                    log_file.write(line)
                    log_file.flush()
                out.write(f"[{name}] {line.decode(errors='replace').rstrip()}\n")
                out.flush()
        finally:
            transport.close()
            if log_file is not None:
                log_file.close()

    async def _probe(self, svc: _Service, proc: asyncio.subprocess.Process) -> None:
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=_PROBE_TIMEOUT_S)
        while proc.returncode is None:
            with contextlib.suppress(httpx.HTTPError):
                response = await self._http.get(svc.spec.ready_url)
                if response.status_code == 200 and proc.returncode is None:
                    svc.fail_fast = False
                    await svc.set_state(State.READY)
                    log.info("service %s ready on port %d", svc.spec.name, svc.spec.port)
                    return
            await asyncio.sleep(_PROBE_INTERVAL_S)

    # -- chaos controls ------------------------------------------------------------------

    async def kill(
        self, name: str, sig: int = signal.SIGKILL, *, restart: bool = True, wait: bool = True
    ) -> int:
        """Send `sig` to `name`; it is restarted (with backoff) unless `restart=False`.

        Waits for the process to exit unless `wait=False` (always so for SIGSTOP/SIGCONT).
        Returns the signalled pid.
        """
        svc = self._svc(name)
        proc = svc.proc
        if proc is None or proc.returncode is not None:
            raise SupervisorError(f"service {name} is not running")
        if not restart:
            svc.wanted.clear()
        svc.fail_fast = False  # a deliberate kill is not a failed start
        proc.send_signal(sig)
        if wait and sig not in (signal.SIGSTOP, signal.SIGCONT):
            async with asyncio.timeout(self.stop_timeout_s):
                await proc.wait()
            # Let the monitor record the exit before the caller looks at state().
            async with svc.changed:
                await svc.changed.wait_for(lambda: svc.state is not State.READY)
        return proc.pid

    def watch_broker(
        self, broker: KafkaBroker, on_restart: Callable[[], None] | None = None
    ) -> None:
        """Restart `broker` (and re-create its topics) whenever it dies unexpectedly."""
        self._watchers.add(self._spawn_task(
            broker_watch.restart_on_crash(broker, on_restart, self.backoff_initial_s, self.backoff_max_s),
            "watch-broker",
        ))

    # -- stopping ------------------------------------------------------------------------

    async def stop(self, timeout_s: float | None = None) -> None:
        """SIGTERM every service in reverse order, SIGKILL what outlives the deadline; idempotent."""
        if self._stop_task is None:
            self._stop_task = asyncio.create_task(
                self._stop(self.stop_timeout_s if timeout_s is None else timeout_s),
                name="supervisor-stop",
            )
        # Shielded: a cancelled caller (second Ctrl-C) must not abandon half-reaped children.
        await asyncio.shield(self._stop_task)

    async def _stop(self, timeout_s: float) -> None:
        self._stopping.set()
        # First, so a broker dying during shutdown is not brought back.
        for task in self._watchers:
            task.cancel()
        await asyncio.gather(*self._watchers, return_exceptions=True)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        running = [(svc, svc.proc) for svc in reversed(list(self._services.values()))
                   if svc.proc is not None and svc.proc.returncode is None]
        if self.parallel_stop:
            await asyncio.gather(*(self._terminate(svc, proc, timeout_s) for svc, proc in running))
        else:
            for svc, proc in running:  # reverse start order: the API stops taking work first
                await self._terminate(svc, proc, max(0.1, deadline - loop.time()))
        monitors = [s.monitor for s in self._services.values() if s.monitor is not None]
        side = [t for t in self._side_tasks if t not in monitors]
        for task in side:
            task.cancel()
        await asyncio.gather(*monitors, *side, return_exceptions=True)
        # The pumps end at EOF, once every process holding the pipe is gone; bounded anyway.
        if self._pumps:
            _, late = await asyncio.wait(set(self._pumps), timeout=2.0)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        if self._http is not None:
            await self._http.aclose()

    async def _terminate(
        self, svc: _Service, proc: asyncio.subprocess.Process, timeout_s: float
    ) -> None:
        name = svc.spec.name
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
            proc.send_signal(signal.SIGCONT)  # a SIGSTOPped (chaos) child must see the TERM
        try:
            async with asyncio.timeout(timeout_s):
                await proc.wait()
        except TimeoutError:
            log.warning("service %s did not stop within %.0fs; killing it", name, timeout_s)
            self._kill_group(proc.pid)
            await proc.wait()
        log.info("service %s stopped (rc %s)", name, proc.returncode)

    def force_kill(self) -> None:
        """SIGKILL every service's process group now (second Ctrl-C); `stop()` still reaps."""
        self._stopping.set()
        for svc in self._services.values():
            if svc.proc is not None and svc.proc.returncode is None:
                self._kill_group(svc.proc.pid)

    @staticmethod
    def _kill_group(pgid: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)

    # -- plumbing ------------------------------------------------------------------------

    def _spawn_task(self, coro: Any, name: str) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = asyncio.create_task(coro, name=name)
        self._side_tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._side_tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("supervisor task %s crashed", task.get_name(), exc_info=task.exception())

    async def __aenter__(self) -> Supervisor:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
