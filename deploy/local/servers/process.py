"""Children of the runner: spawning (in their own session, dying with us), reaping, ports and logs.

Valkey and Tansu run as Popen children in their own session (Ctrl-C reaches only us), each
reaped by one thread so no zombie survives.
"""

from __future__ import annotations

import concurrent.futures
import functools
import logging
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

log = logging.getLogger(__name__)

_CMD_TIMEOUT_S = 60.0
_READY_TIMEOUT_S = 15.0

ExitListener = Callable[[int, bool], None]
"""Called from the reaper thread with (returncode, expected) when a child exits."""


class ServerError(RuntimeError):
    """An embedded server failed to start, stop or answer."""


@functools.cache
def _setpriv() -> str | None:
    path = shutil.which("setpriv")
    if path is None:
        return None
    try:
        usage = subprocess.run([path, "--help"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    return path if "--pdeathsig" in usage else None  # util-linux >= 2.33


def die_with_parent(argv: list[str]) -> list[str]:
    """`argv` prefixed so the child is SIGKILLed when the thread that spawned it dies.

    Without it, a SIGKILLed runner or pytest would leave its servers running (PID 1 does not
    stop them). Falls back to plain `argv` where setpriv lacks --pdeathsig.
    """
    setpriv = _setpriv()
    return [setpriv, "--pdeathsig", "KILL", "--", *argv] if setpriv else argv


def _spawner() -> concurrent.futures.ThreadPoolExecutor:
    # Parent death is per *thread*: spawn from one thread that lives as long as the process,
    # not from an asyncio.to_thread worker that a closing event loop would end.
    global _SPAWNER
    with _SPAWNER_LOCK:
        if _SPAWNER is None:
            _SPAWNER = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="spawner")
        return _SPAWNER


_SPAWNER: concurrent.futures.ThreadPoolExecutor | None = None
_SPAWNER_LOCK = threading.Lock()


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the kernel's pick), never one this process got before.

    The kernel may hand the same ephemeral port to two binds in a row once the first socket is
    closed; callers that pick several ports before starting anything would then share one.
    """
    with _HANDED_OUT_LOCK:
        while True:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.bind((host, 0))
                port = int(s.getsockname()[1])
            if port not in _HANDED_OUT:
                _HANDED_OUT.add(port)
                return port


_HANDED_OUT: set[int] = set()
_HANDED_OUT_LOCK = threading.Lock()


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """True if something already listens on `host:port`."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # SO_REUSEADDR so TIME_WAIT leftovers do not count; a listener still blocks the bind.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


def wait_port_free(port: int, host: str = "127.0.0.1", timeout_s: float = 10.0) -> None:
    """Wait until `host:port` can be bound again, or raise `ServerError`."""
    deadline = time.monotonic() + timeout_s
    while port_in_use(port, host):
        if time.monotonic() > deadline:
            raise ServerError(f"port {port} still in use after {timeout_s:.0f}s")
        time.sleep(0.05)


def tail(path: Path, lines: int = 30) -> str:
    """The last `lines` lines of a log file ('' if it does not exist)."""
    try:
        with path.open("rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - 64 * 1024))
            return b"\n".join(f.read().splitlines()[-lines:]).decode(errors="replace")
    except OSError:
        return ""


class _Child:
    """One Popen child in its own session, reaped by a dedicated thread."""

    def __init__(self, argv: list[str], log_path: Path, on_exit: Iterable[ExitListener]) -> None:
        self.log_path = log_path
        self.expected = False  # set before we signal it, so listeners can tell crash from stop
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as out:
            self.proc = _spawner().submit(
                subprocess.Popen, die_with_parent(argv), stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True,
            ).result()
        self.exited = threading.Event()
        self._listeners = list(on_exit)
        threading.Thread(target=self._reap, name=f"reap-{self.proc.pid}", daemon=True).start()

    def _reap(self) -> None:
        rc = self.proc.wait()
        self.exited.set()
        for listener in self._listeners:
            try:
                listener(rc, self.expected)
            except Exception:
                log.exception("exit listener failed")

    def alive(self) -> bool:
        return not self.exited.is_set()

    def signal(self, sig: int) -> None:
        if self.alive():
            try:
                self.proc.send_signal(sig)
            except ProcessLookupError:
                pass

    def terminate(self, grace_s: float) -> None:
        """SIGTERM, then SIGKILL after `grace_s`; returns once the child is reaped."""
        self.expected = True
        self.signal(signal.SIGTERM)
        if not self.exited.wait(grace_s):
            self.signal(signal.SIGKILL)
            self.exited.wait(_CMD_TIMEOUT_S)

    def kill(self, expected: bool) -> None:
        self.expected = expected
        self.signal(signal.SIGKILL)
        self.exited.wait(_CMD_TIMEOUT_S)


class _ChildServer:
    """Start/stop/kill/restart plumbing shared by the Popen-based servers."""

    name = "server"
    stop_grace_s = 5.0

    def __init__(self, port: int, host: str, log_path: Path) -> None:
        self.port = port
        self.host = host
        self.log_path = log_path
        self._child: _Child | None = None
        self._lock = threading.RLock()
        self._listeners: list[ExitListener] = []

    def _argv(self) -> list[str]:
        raise NotImplementedError

    def _wait_ready(self, child: _Child, log_offset: int) -> bool:
        raise NotImplementedError

    @property
    def pid(self) -> int | None:
        """PID of the running server process, if any."""
        child = self._child
        return child.proc.pid if child and child.alive() else None

    def add_exit_listener(self, listener: ExitListener) -> None:
        """Call `listener(returncode, expected)` from a thread whenever the process exits."""
        self._listeners.append(listener)

    def remove_exit_listener(self, listener: ExitListener) -> None:
        """Undo `add_exit_listener`."""
        if listener in self._listeners:
            self._listeners.remove(listener)

    def is_running(self) -> bool:
        """True while the server process is alive."""
        return self._child is not None and self._child.alive()

    def start(self) -> None:
        """Start the server and wait until it answers; a no-op when it already runs."""
        with self._lock:
            if self.is_running():
                return
            # A previous process on this port may still be closing (Tansu panics on AddrInUse).
            wait_port_free(self.port, self.host)
            offset = self.log_path.stat().st_size if self.log_path.exists() else 0
            child = _Child(self._argv(), self.log_path, [self._on_exit])
            self._child = child
            if not self._wait_ready(child, offset):
                child.kill(expected=True)
                raise ServerError(
                    f"{self.name} on port {self.port} did not become ready "
                    f"(rc={child.proc.returncode}); log {self.log_path}:\n{tail(self.log_path)}"
                )
            log.info("%s ready on %s:%d (pid %d)", self.name, self.host, self.port, child.proc.pid)

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after a grace period); idempotent."""
        with self._lock:
            if self._child is not None:
                self._child.terminate(self.stop_grace_s)
                self._child = None

    def kill(self, *, expected: bool = False) -> None:
        """SIGKILL the server: as a crash would, unless `expected` (then no watcher restarts it)."""
        with self._lock:
            if self._child is not None:
                self._child.kill(expected=expected)

    def restart(self) -> None:
        """Stop (if running) and start again on the same port."""
        with self._lock:
            self.stop()
            self.start()

    def _on_exit(self, rc: int, expected: bool) -> None:
        if not expected:
            log.warning("%s (port %d) exited unexpectedly with rc %s", self.name, self.port, rc)
        for listener in list(self._listeners):
            listener(rc, expected)


def _await(check: Callable[[], bool], child: _Child, timeout_s: float = _READY_TIMEOUT_S) -> bool:
    deadline = time.monotonic() + timeout_s
    while child.alive() and time.monotonic() < deadline:
        if check():
            return True
        child.exited.wait(0.01)
    return False
