"""The local cluster of `make dev`: embedded servers, then the five services, in dependency order.

Postgres -> database + migrations -> Valkey -> Kafka + topics -> scheduler, worker, analytics,
notifier, api (each waited ready) -> dev API key and webhook secret -> `.conveyor/env`. Stop is the reverse.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import shlex
import shutil
import signal
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from deploy.keys import write_secret
from deploy.local.paths import CONVEYOR_DIR
from deploy.local.servers import (
    KafkaBroker,
    PostgresServer,
    ValkeyServer,
    default_topics,
    port_in_use,
)
from deploy.local.supervisor import ServiceSpec, Supervisor

log = logging.getLogger(__name__)

SERVICE_ORDER = ("scheduler", "worker", "analytics", "notifier", "api")
PORT_VARS = {
    "postgres": "POSTGRES_PORT", "redis": "REDIS_PORT", "kafka": "KAFKA_PORT",
    "api": "API_PORT", "notifier": "NOTIFIER_PORT", "scheduler": "SCHEDULER_PORT",
    "worker": "WORKER_PORT", "analytics": "ANALYTICS_PORT",
}
DEFAULT_PORTS = {
    "postgres": 15432, "redis": 16379, "kafka": 19092, "api": 8000, "notifier": 8001,
    "scheduler": 8010, "worker": 8020, "analytics": 8030,
}
DATABASE = "conveyor"
STOP_TIMEOUT_S = 60.0
# Services drain for up to DRAIN_TIMEOUT_S (30 s by default); servers need the rest of the 60 s.
SERVICE_STOP_TIMEOUT_S = 40.0


class RunnerError(RuntimeError):
    """The local cluster cannot start; the message says what to change."""


def service_specs(
    ports: Mapping[str, int], env: Mapping[str, str], names: Iterable[str] = SERVICE_ORDER
) -> list[ServiceSpec]:
    """Specs for `python -m services.<name>`, each told every service port (its own also as
    SERVICE_PORT)."""
    port_env = {PORT_VARS[n]: str(ports[n]) for n in SERVICE_ORDER if n in ports}
    return [
        ServiceSpec(name, f"services.{name}", ports[name],
                    {**port_env, "SERVICE_PORT": str(ports[name]), **env})
        for name in names
    ]


@dataclass
class RunnerConfig:
    """What `python -m deploy.local` runs, read from the environment."""

    home: Path = CONVEYOR_DIR
    ports: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_PORTS))
    database_url: str | None = None  # external servers when set
    redis_url: str | None = None
    kafka_bootstrap: str | None = None
    topic_prefix: str = ""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ, home: Path = CONVEYOR_DIR
                 ) -> RunnerConfig:
        """Ports from POSTGRES_PORT..ANALYTICS_PORT, external servers from DATABASE_URL,
        REDIS_URL and KAFKA_BOOTSTRAP_SERVERS, the data folder from CONVEYOR_HOME."""
        ports = {}
        for name, var in PORT_VARS.items():
            raw = environ.get(var, str(DEFAULT_PORTS[name]))
            if not raw.isdigit() or not 0 < int(raw) < 65536:
                raise RunnerError(f"{var}={raw!r} is not a TCP port")
            ports[name] = int(raw)
        by_port: dict[int, list[str]] = {}
        for name, port in ports.items():
            by_port.setdefault(port, []).append(PORT_VARS[name])
        shared = [f"{', '.join(names)} share port {port}; give each its own port"
                  for port, names in by_port.items() if len(names) > 1]
        if shared:
            raise RunnerError("\n".join(shared))
        return cls(
            home=Path(environ["CONVEYOR_HOME"]) if environ.get("CONVEYOR_HOME") else home,
            ports=ports,
            database_url=environ.get("DATABASE_URL") or None,
            redis_url=environ.get("REDIS_URL") or None,
            kafka_bootstrap=environ.get("KAFKA_BOOTSTRAP_SERVERS") or None,
            topic_prefix=environ.get("KAFKA_TOPIC_PREFIX", ""),
        )

    def embedded(self) -> list[str]:
        """The servers we start ourselves (those without an external URL)."""
        external = {"postgres": self.database_url, "redis": self.redis_url,
                    "kafka": self.kafka_bootstrap}
        return [name for name, url in external.items() if url is None]


def check_ports(ports: Mapping[str, int], names: Iterable[str]) -> None:
    """Fail early, naming every busy port and the variable that moves it."""
    busy = [f"port {ports[n]} ({n}) is already in use; set {PORT_VARS[n]}=<port> to use another"
            for n in names if port_in_use(ports[n])]
    if busy:
        raise RunnerError("\n".join(busy))


class Runner:
    """Owns the servers and the supervisor of one local cluster."""

    def __init__(self, config: RunnerConfig) -> None:
        self.config = config
        home = config.home
        self.logs = home / "logs"
        self.env_file = home / "env"
        self._pids_file = home / "run" / "pids.json"
        self._pids: dict[str, list[object]] = {}
        embedded = config.embedded()
        p = config.ports
        self.pg = PostgresServer(home / "pgdata", p["postgres"]) if "postgres" in embedded else None
        self.valkey = ValkeyServer(home / "valkey", p["redis"]) if "redis" in embedded else None
        self.kafka = (KafkaBroker(p["kafka"], self.logs / "kafka.log")
                      if "kafka" in embedded else None)
        self.database_url = config.database_url or (self.pg.dsn(DATABASE) if self.pg else "")
        self.redis_url = config.redis_url or (self.valkey.url if self.valkey else "")
        self.kafka_bootstrap = config.kafka_bootstrap or (self.kafka.bootstrap if self.kafka else "")
        self.api_key = ""
        self.webhook_secret = ""
        self._lock: int | None = None
        self.supervisor = Supervisor(
            service_specs(p, self._service_env()), log_dir=self.logs, echo=True,
            stop_timeout_s=SERVICE_STOP_TIMEOUT_S, on_spawn=self._record_pid,
        )

    def _service_env(self) -> dict[str, str]:
        env = {"DATABASE_URL": self.database_url, "REDIS_URL": self.redis_url,
               "KAFKA_BOOTSTRAP_SERVERS": self.kafka_bootstrap,
               "KAFKA_TOPIC_PREFIX": self.config.topic_prefix}
        # Defaults a developer may override from the shell. The services require the printed dev
        # key by default, as in production (AUTH_REQUIRED=false opts out: the bind is loopback).
        for key, value in {"WORKER_CONCURRENCY": "50", "LOG_FORMAT": "text"}.items():
            env[key] = os.environ.get(key, value)
        return env

    async def start(self) -> None:
        """Bring everything up in dependency order; `.conveyor/env` appears only at the end."""
        self._lock = hold_lock(self.config.home)
        self.env_file.unlink(missing_ok=True)
        _kill_stale(self._pids_file)  # safe: holding the lock, no other runner is alive
        busy = [n for n in self.config.embedded() if n != "postgres"] + list(SERVICE_ORDER)
        if self.pg is not None and not await asyncio.to_thread(self.pg.is_running):
            busy.append("postgres")  # else it is ours, left by a run that was killed
        check_ports(self.config.ports, busy)

        from shared.auth.keys import ensure_dev_key
        from shared.auth.principal import DEFAULT_TENANT
        from shared.db.migrate import apply_migrations
        from shared.webhooks import ensure_secret_at

        if self.pg is not None:
            await asyncio.to_thread(self.pg.start)
            await asyncio.to_thread(self.pg.create_database, DATABASE, exist_ok=True)
        applied = await apply_migrations(self.database_url)
        log.info("database ready (%d migrations applied now)", len(applied))
        if self.valkey is not None:
            await asyncio.to_thread(self.valkey.start)
            self._record_pid("valkey", self.valkey.pid)
        topics = default_topics(self.config.topic_prefix)
        if self.kafka is not None:
            await asyncio.to_thread(self.kafka.start)
            await asyncio.to_thread(self.kafka.create_topics, topics)
            kafka = self.kafka
            self._record_pid("kafka", kafka.pid)
            self.supervisor.watch_broker(kafka, lambda: self._record_pid("kafka", kafka.pid))
        else:
            await ensure_topics(self.kafka_bootstrap, topics)
        await self.supervisor.start()
        self.api_key = await ensure_dev_key(self.database_url, self._previous_key())
        self.webhook_secret = await ensure_secret_at(self.database_url, DEFAULT_TENANT)
        self._write_env()

    def _previous_key(self) -> str | None:
        path = self.config.home / "dev_api_key"
        if not path.exists():
            return None
        return path.read_text().strip() or None

    def _write_env(self) -> None:
        write_secret(self.config.home / "dev_api_key", self.api_key + "\n")
        p = self.config.ports
        values = {
            "DATABASE_URL": self.database_url, "REDIS_URL": self.redis_url,
            "KAFKA_BOOTSTRAP_SERVERS": self.kafka_bootstrap,
            "KAFKA_TOPIC_PREFIX": self.config.topic_prefix,
            "API_URL": f"http://127.0.0.1:{p['api']}",
            "NOTIFIER_URL": f"http://127.0.0.1:{p['notifier']}",
            "CONVEYOR_API_KEY": self.api_key,
            # Signs the default tenant's webhooks (DESIGN §5): receivers verify Conveyor-Signature with it.
            "CONVEYOR_WEBHOOK_SECRET": self.webhook_secret,
        }
        # It holds an admin key: owner-only, and atomic (readers never see half a file).
        write_secret(self.env_file, "".join(f"{k}={shlex.quote(v)}\n" for k, v in values.items()))

    def banner(self) -> str:
        """What the developer needs once the cluster is up."""
        p = self.config.ports
        api = f"http://127.0.0.1:{p['api']}"
        return "\n".join([
            "", "Conveyor is running.",
            f"  Dashboard  {api}/  (sign in with the API key below)",
            f"  API        {api}/api/v1", f"  API docs   {api}/docs",
            f"  Notifier   ws://127.0.0.1:{p['notifier']}/ws",
            f"  Postgres   {self.database_url}", f"  Redis      {self.redis_url}",
            f"  Kafka      {self.kafka_bootstrap}",
            f"  API key    {self.api_key}",
            f"  Env file   {self.env_file}  (source it: set -a; . {self.env_file}; set +a)",
            f"  Logs       {self.logs}", "Ctrl-C to stop.", "",
        ])

    async def stop(self) -> None:
        """Services first (reverse order), then the servers; idempotent."""
        if self._lock is None:
            return  # never started, or another runner owns these servers
        self.env_file.unlink(missing_ok=True)
        await self.supervisor.stop()
        for server in (self.kafka, self.valkey, self.pg):
            if server is not None:
                await asyncio.to_thread(server.stop)
                log.info("%s stopped", type(server).__name__)
        self._pids_file.unlink(missing_ok=True)
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None

    def force_kill(self) -> None:
        """SIGKILL everything we started, now (a second Ctrl-C); Postgres stops `immediate`."""
        if self._lock is None:
            return
        self.supervisor.force_kill()
        for server in (self.kafka, self.valkey):
            if server is not None:
                server.kill(expected=True)
        if self.pg is not None:
            self.pg.stop("immediate")

    def _record_pid(self, name: str, pid: int | None) -> None:
        # Lets the next run kill what a SIGKILLed runner left behind (they hold our ports).
        if pid is None:
            return
        servers = {"valkey": "valkey-server", "kafka": "tansu"}
        marker = servers[name] if name in servers else self.supervisor.spec(name).module
        self._pids[name] = [pid, marker]
        self._pids_file.parent.mkdir(parents=True, exist_ok=True)
        # Replaced whole, never rewritten in place: a reader (the next run, a tool) sees the old or the new list.
        fresh = self._pids_file.with_suffix(".tmp")
        fresh.write_text(json.dumps(self._pids))
        fresh.replace(self._pids_file)


def clean(config: RunnerConfig) -> None:
    """Delete the local cluster's data: `.conveyor/` and a Postgres data dir moved out of it."""
    lock = hold_lock(config.home)
    _kill_stale(config.home / "run" / "pids.json")
    if "postgres" in config.embedded():
        pg = PostgresServer(config.home / "pgdata", config.ports["postgres"])
        pg.destroy()  # stops a server left running, and removes a relocated data dir
    shutil.rmtree(config.home, ignore_errors=True)
    os.close(lock)
    log.info("removed %s", config.home)


def hold_lock(home: Path) -> int:
    """An exclusive lock on `home` for this process's lifetime (the kernel drops it if we die)."""
    path = home / "run" / "lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 32).decode().strip() or "?"
        os.close(fd)
        raise RunnerError(
            f"another local cluster (pid {holder}) is using {home}; stop it first"
        ) from None
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    return fd


def _kill_stale(pids_file: Path) -> None:
    try:
        recorded = json.loads(pids_file.read_text())
    except (OSError, ValueError):
        return
    for name, (pid, marker) in recorded.items():
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if marker in cmdline:  # the pid was not reused by something else
            log.warning("killing %s (pid %d) left over by a previous run", name, pid)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
    pids_file.unlink(missing_ok=True)


async def ensure_topics(bootstrap: str, names: list[str], partitions: int = 4) -> None:
    """Create topics on an external Kafka; existing ones are fine."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    await asyncio.wait_for(admin.start(), 30)
    try:
        response = await asyncio.wait_for(
            admin.create_topics([NewTopic(n, partitions, 1) for n in names]), 30
        )
        for topic, code, *_ in getattr(response, "topic_errors", []):
            if code not in (0, 36):  # 36: already exists
                raise RunnerError(f"creating topic {topic} failed with Kafka error {code}")
    finally:
        await admin.close()
