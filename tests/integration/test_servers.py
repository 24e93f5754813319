"""The embedded servers, the process supervisor and the runner's port checks, for real."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from redis.asyncio import Redis

from deploy.local.paths import REPO_ROOT
from deploy.local.runner import SERVICE_ORDER, RunnerConfig, RunnerError, check_ports
from deploy.local.servers import (
    KafkaBroker,
    PostgresServer,
    ValkeyServer,
    free_port,
    port_in_use,
)
from deploy.local.supervisor import ServiceFailed, ServiceSpec, State, Supervisor
from shared.auth.keys import resolve_key
from shared.auth.principal import ALL_SCOPES, Principal
from shared.dispatch.protocol import Dispatcher
from shared.events import CLUSTER_TOPICS, Envelope, EventType
from shared.kafka.producer import EventProducer
from shared.settings import WorkerSettings
from tests.fixtures.cluster import ClusterFactory
from tests.fixtures.polling import eventually, wait_until
from tests.fixtures.resources import JobEventTap, SettingsFactory
from tests.fixtures.servers import TEMPLATE_DB

DUMMY = "tests.fixtures.dummy_service"


def alive(pid: int) -> bool:
    """True if `pid` runs; a zombie counts as dead (PID 1 here reaps orphans late)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    state = next(line for line in status.splitlines() if line.startswith("State:"))
    return "Z" not in state.split()[1]


def dummy(name: str, **env: str) -> ServiceSpec:
    port = free_port()
    return ServiceSpec(name, DUMMY, port, {"DUMMY_PORT": str(port), **env})


# -- PostgreSQL --------------------------------------------------------------------------


async def test_postgres_accepts_queries(pg_server: PostgresServer) -> None:
    conn = await asyncpg.connect(pg_server.dsn(), timeout=10)
    try:
        assert await conn.fetchval("SELECT 40 + 2") == 42
        assert (await conn.fetchval("SHOW server_version")).startswith("18.")
        assert await conn.fetchval("SHOW max_connections") == "200"
    finally:
        await conn.close()


async def test_each_test_gets_a_migrated_database_of_its_own(database_url: str) -> None:
    assert database_url.rsplit("/", 1)[1].startswith("t_")
    conn = await asyncpg.connect(database_url, timeout=10)
    try:
        assert await conn.fetchval("SELECT count(*) FROM schema_migrations") >= 1
        assert await conn.fetchval("SELECT current_database()") != TEMPLATE_DB
    finally:
        await conn.close()


def test_postgres_start_and_stop_are_idempotent_and_data_survives(tmp_path: Path) -> None:
    server = PostgresServer(tmp_path / "pg", free_port(), fast=True)
    try:
        server.stop()  # before start: nothing to do
        server.start()
        server.start()  # already running: reused
        server.create_database("kept")
        server.stop()
        server.stop()
        assert not server.is_running()
        server.start()  # the initialized data dir is reused
        assert server.database_exists("kept")
    finally:
        server.destroy()
    assert not server.data_dir.exists()


def test_database_names_are_checked(pg_server: PostgresServer) -> None:
    with pytest.raises(ValueError):
        pg_server.create_database('x"; DROP DATABASE postgres; --')


# -- Valkey ------------------------------------------------------------------------------


async def test_valkey_answers_ping(redis_server: ValkeyServer, redis_url: str) -> None:
    assert redis_server.ping()
    client = Redis.from_url(redis_url, socket_timeout=5)
    try:
        assert await client.ping()
    finally:
        await client.aclose()


def test_valkey_kill_and_restart(tmp_path: Path) -> None:
    server = ValkeyServer(tmp_path / "valkey", free_port())
    server.start()
    try:
        pid = server.pid
        assert pid is not None
        server.kill()
        assert not server.is_running()
        assert not alive(pid)  # reaped: no zombie left behind
        server.restart()
        assert server.ping()
        assert server.pid != pid
    finally:
        server.stop()
    assert not server.ping()


# -- Tansu -------------------------------------------------------------------------------


async def test_kafka_produce_and_consume(kafka_broker: KafkaBroker, kafka_topics: dict[str, str]
                                         ) -> None:
    topic = kafka_topics["jobs.submitted"]
    assert topic in kafka_broker.list_topics()
    producer = AIOKafkaProducer(bootstrap_servers=kafka_broker.bootstrap, request_timeout_ms=5000)
    await asyncio.wait_for(producer.start(), 10)
    try:
        meta = await asyncio.wait_for(
            producer.send_and_wait(topic, b"hello", key=b"job-1", headers=[("k", b"v")]), 10
        )
    finally:
        await producer.stop()
    # No group: assign the partition directly, so no (slow) group join is involved.
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka_broker.bootstrap, group_id=None,
                                auto_offset_reset="earliest", fetch_max_wait_ms=50)
    await asyncio.wait_for(consumer.start(), 10)
    try:
        consumer.assign([TopicPartition(topic, meta.partition)])
        message = await asyncio.wait_for(consumer.getone(), 10)
    finally:
        await consumer.stop()
    assert (message.key, message.value, list(message.headers)) == (b"job-1", b"hello", [("k", b"v")])


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[KafkaBroker]:
    """A broker of this test's own, free to crash."""
    broker = KafkaBroker(free_port(), tmp_path / "kafka.log", partitions=2)
    broker.start()
    yield broker
    broker.stop()


def test_broker_restart_recreates_topics(own_broker: KafkaBroker) -> None:
    own_broker.create_topics(["a.one", "a.two"])
    own_broker.create_topics(["a.one"])  # already there: fine
    pid = own_broker.pid
    own_broker.restart()
    assert own_broker.pid != pid
    assert own_broker.list_topics() == ["a.one", "a.two"]
    own_broker.kill()
    own_broker.start()
    assert own_broker.list_topics() == ["a.one", "a.two"]


async def test_watcher_restarts_a_crashed_broker_but_not_a_stopped_one(
    own_broker: KafkaBroker,
) -> None:
    own_broker.create_topics(["w.one"])
    async with Supervisor([]) as supervisor:
        supervisor.watch_broker(own_broker)
        pid = own_broker.pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)  # a crash, as the watcher sees it
        await eventually(lambda: own_broker.pid not in (None, pid))
        assert await asyncio.to_thread(own_broker.list_topics) == ["w.one"]
        await asyncio.to_thread(own_broker.stop)  # deliberate (an outage test): left down
        await asyncio.sleep(0.5)  # the behaviour under test: nothing restarts it meanwhile
        assert not own_broker.is_running()


# -- Supervisor --------------------------------------------------------------------------


async def test_supervisor_restarts_a_crashed_service_and_leaves_nothing_behind(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "deploy.local.supervisor")
    crashy = dummy("crashy", DUMMY_CRASH_MARKER=str(tmp_path / "crashed"),
                   DUMMY_EXIT_AFTER_S="0.3", DUMMY_CHILD_PIDFILE=str(tmp_path / "child"))
    steady = dummy("steady", DUMMY_READY_AFTER_S="0.3")
    supervisor = Supervisor([steady, crashy], log_dir=tmp_path / "logs", backoff_initial_s=0.1)
    await supervisor.start()
    first_pid = supervisor.pid("crashy")
    first_child = int((tmp_path / "child").read_text())
    await eventually(lambda: supervisor.restarts("crashy") == 1)
    await supervisor.wait_ready("crashy")
    second_pid = supervisor.pid("crashy")
    assert second_pid not in (None, first_pid)
    assert not alive(first_child)  # the crashed service's own child went with it
    assert "service crashy exited with rc 3; restarting in 0.1s" in caplog.text
    pids = [p for p in (supervisor.pid("steady"), second_pid) if p is not None]
    pids.append(int((tmp_path / "child").read_text()))
    started = time.monotonic()
    await supervisor.stop()
    await supervisor.stop()  # idempotent
    assert time.monotonic() - started < 5
    assert [pid for pid in pids if alive(pid)] == []
    assert supervisor.state("steady") is State.STOPPED


async def test_stop_kills_a_service_that_ignores_sigterm(tmp_path: Path) -> None:
    stubborn = dummy("stubborn", DUMMY_IGNORE_SIGTERM="1")
    supervisor = Supervisor([stubborn], log_dir=tmp_path, stop_timeout_s=1.0)
    await supervisor.start()
    pid = supervisor.pid("stubborn")
    assert pid is not None
    started = time.monotonic()
    await supervisor.stop()
    assert 0.9 < time.monotonic() - started < 5
    assert not alive(pid)


async def test_kill_without_restart_then_start_again(tmp_path: Path) -> None:
    supervisor = Supervisor([dummy("svc")], log_dir=tmp_path)
    async with supervisor:
        await supervisor.start()
        pid = await supervisor.kill("svc", signal.SIGTERM, restart=False)
        assert not alive(pid)
        assert supervisor.state("svc") is State.IDLE
        assert supervisor.pid("svc") is None
        await supervisor.start_service("svc")
        assert supervisor.pid("svc") not in (None, pid)
        again = await supervisor.kill("svc")  # SIGKILL, restarted with backoff
        await supervisor.wait_ready("svc")
        assert supervisor.pid("svc") not in (None, again)
        assert supervisor.restarts("svc") == 1


async def test_a_service_that_dies_at_start_is_reported_with_its_log(tmp_path: Path) -> None:
    async with Supervisor([dummy("broken", DUMMY_FAIL_START="1")], log_dir=tmp_path) as sup:
        with pytest.raises(ServiceFailed, match="failing at start as asked"):
            await sup.start()
        assert sup.state("broken") is State.FAILED


async def test_echoed_output_is_prefixed_and_logged(tmp_path: Path) -> None:
    out = tmp_path / "out.txt"
    with out.open("w") as stream:
        async with Supervisor([dummy("echoer")], log_dir=tmp_path, echo=True,
                              output=stream) as sup:
            await sup.start()
    assert "[echoer] dummy: listening on" in out.read_text()
    assert "dummy: stopped" in (tmp_path / "echoer.log").read_text()


# -- Runner ------------------------------------------------------------------------------


def test_port_in_use_is_detected_and_names_the_variable() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert port_in_use(port)
        with pytest.raises(RunnerError, match=f"port {port} \\(api\\).*API_PORT"):
            check_ports({"api": port, "worker": free_port()}, ["api", "worker"])
    assert not port_in_use(port)


def test_two_port_variables_with_one_port_are_refused_by_name() -> None:
    with pytest.raises(RunnerError, match="KAFKA_PORT, API_PORT share port 4100; give each its own port"):
        RunnerConfig.from_env({"KAFKA_PORT": "4100", "API_PORT": "4100"})


def test_free_port_never_hands_out_the_same_port_twice() -> None:
    picked = [free_port() for _ in range(200)]
    assert len(set(picked)) == len(picked)


def test_the_runner_refuses_to_start_on_a_busy_port(tmp_path: Path) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        busy = listener.getsockname()[1]
        env = {**os.environ, "CONVEYOR_HOME": str(tmp_path), "API_PORT": str(busy),
               **{var: str(free_port()) for var in ("POSTGRES_PORT", "REDIS_PORT", "KAFKA_PORT")}}
        proc = subprocess.run([sys.executable, "-m", "deploy.local"], env=env, cwd=REPO_ROOT,
                              capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 1
    assert f"port {busy} (api) is already in use; set API_PORT" in proc.stderr
    assert not (tmp_path / "env").exists()


PORT_VARS = ("POSTGRES_PORT", "REDIS_PORT", "KAFKA_PORT", "API_PORT", "NOTIFIER_PORT",
             "SCHEDULER_PORT", "WORKER_PORT", "ANALYTICS_PORT")


def run_local_cluster(module: str, home: Path) -> tuple[subprocess.Popen[bytes], dict[str, str]]:
    """Start `python -m module` (the runner) on free ports with its data under `home`."""
    env = {**os.environ, "CONVEYOR_HOME": str(home), **{v: str(free_port()) for v in PORT_VARS}}
    for var in ("DATABASE_URL", "REDIS_URL", "KAFKA_BOOTSTRAP_SERVERS"):
        env.pop(var, None)
    proc = subprocess.Popen([sys.executable, "-m", module], env=env, cwd=REPO_ROOT,
                            stdout=subprocess.DEVNULL, stderr=(home.parent / "runner.log").open("wb"),
                            start_new_session=True)
    return proc, env


def wait_for_env_file(proc: subprocess.Popen[bytes], home: Path, timeout_s: float) -> dict[str, str]:
    """The `env` file's values, once the runner has written it (everything is ready)."""

    def written() -> bool:
        assert proc.poll() is None, (home.parent / "runner.log").read_text()
        return (home / "env").exists()

    wait_until(written, timeout_s=timeout_s, every_s=0.1, what="the cluster coming up")
    return dict(line.split("=", 1) for line in (home / "env").read_text().splitlines())


def stop_runner(proc: subprocess.Popen[bytes], env: dict[str, str]) -> None:
    """Stop a runner left running by a failed test, then clean up whatever it left behind."""
    if proc.poll() is None:
        proc.terminate()  # not SIGKILL: its children live in sessions of their own
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    # `clean` kills recorded leftovers, stops Postgres and deletes the data.
    subprocess.run([sys.executable, "-m", "deploy.local", "clean"], env=env, cwd=REPO_ROOT,
                   capture_output=True, timeout=60, check=False)


def recorded_pids(home: Path) -> dict[str, int]:
    return {name: int(pid) for name, (pid, _) in
            json.loads((home / "run" / "pids.json").read_text()).items()}


@pytest.mark.slow
def test_the_runner_starts_restarts_and_stops_everything(tmp_path: Path) -> None:
    home = tmp_path / "conveyor"
    proc, env = run_local_cluster("tests.fixtures.dummy_runner", home)
    pg = PostgresServer(home / "pgdata", int(env["POSTGRES_PORT"]))
    try:
        values = wait_for_env_file(proc, home, 60)
        assert values["API_URL"] == f"http://127.0.0.1:{env['API_PORT']}"
        assert values["KAFKA_BOOTSTRAP_SERVERS"] == f"127.0.0.1:{env['KAFKA_PORT']}"
        assert values["CONVEYOR_API_KEY"].startswith("cvk_")
        assert values["CONVEYOR_WEBHOOK_SECRET"].startswith("whsec_")
        assert pg.database_exists("conveyor")
        second = subprocess.run([sys.executable, "-m", "deploy.local"], env=env, cwd=REPO_ROOT,
                                capture_output=True, text=True, timeout=60, check=False)
        assert second.returncode == 1
        assert f"another local cluster (pid {proc.pid}) is using {home}" in second.stderr
        assert pg.is_running()  # the loser touched nothing
        before = recorded_pids(home)
        assert set(before) == {"valkey", "kafka", *SERVICE_ORDER}
        os.kill(before["kafka"], signal.SIGKILL)
        os.kill(before["worker"], signal.SIGKILL)
        broker = KafkaBroker(int(env["KAFKA_PORT"]), tmp_path / "unused.log")
        # Both come back, the broker with its topics.
        wait_until(lambda: recorded_pids(home), lambda now: now["kafka"] != before["kafka"]
                   and now["worker"] != before["worker"], timeout_s=20, every_s=0.1, what="restarts")
        assert "jobs.submitted" in broker.list_topics()
        everything = list(recorded_pids(home).values())
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
        log = (tmp_path / "runner.log").read_text()
        assert "service worker exited with rc -9; restarting in" in log
        # DESIGN §6: eight job topics, jobs.batches and alerts.
        assert f"kafka broker exited with rc -9; restarting it and re-creating {len(CLUSTER_TOPICS)} topics" in log
        assert [pid for pid in everything if alive(pid)] == []
        assert not pg.is_running()
        assert not (home / "env").exists()
    finally:
        stop_runner(proc, env)
    assert not home.exists() and not pg.data_dir.exists()


@pytest.mark.slow
def test_make_dev_runs_the_real_services(tmp_path: Path) -> None:
    home = tmp_path / "conveyor"
    proc, env = run_local_cluster("deploy.local", home)
    try:
        values = wait_for_env_file(proc, home, 90)
        response = httpx.get(f"{values['API_URL']}/readyz", timeout=5)
        assert response.status_code == 200
        everything = list(recorded_pids(home).values())
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
        assert [pid for pid in everything if alive(pid)] == []
    finally:
        stop_runner(proc, env)


# -- The cluster fixture (with dummies standing in for the services) ------------------------


async def test_cluster_starts_the_chosen_services_isolated_and_cleans_up(
    cluster_factory: ClusterFactory, kafka_broker: KafkaBroker
) -> None:
    modules = dict.fromkeys(SERVICE_ORDER, DUMMY)
    async with cluster_factory(services=("worker", "api"), modules=modules,
                               env={"LEASE_MS": "1234"}) as cluster:
        assert cluster.supervisor.names == ["worker", "api"]
        async with httpx.AsyncClient(timeout=5) as client:
            response = await client.get(f"{cluster.api_url}/env")
        env = response.json()
        assert env["SERVICE_PORT"] == str(cluster.ports["api"])
        assert env["API_PORT"] == str(cluster.ports["api"])
        assert env["DATABASE_URL"] == cluster.database_url
        assert env["REDIS_KEY_PREFIX"] == cluster.redis_prefix
        assert env["KAFKA_TOPIC_PREFIX"] == cluster.topic_prefix
        assert env["KAFKA_BOOTSTRAP_SERVERS"] == kafka_broker.bootstrap
        assert env["KAFKA_SESSION_TIMEOUT_MS"] == "1000"
        assert env["LEASE_MS"] == "1234"  # the test's override wins
        assert "AUTH_REQUIRED" not in env  # secure by default: the services require a key
        conn = await asyncpg.connect(cluster.database_url)
        try:
            assert await resolve_key(conn, cluster.api_key) == Principal("default", ALL_SCOPES)
        finally:
            await conn.close()
        assert cluster.auth_headers == {"Authorization": f"Bearer {cluster.api_key}"}
        assert cluster.notifier_url.startswith("ws://127.0.0.1:")
        topics = set(kafka_broker.list_topics())
        assert set(cluster.topics.values()) <= topics
        assert cluster.topics["jobs.submitted"] == f"{cluster.topic_prefix}jobs.submitted"
        pids = [cluster.supervisor.pid(n) for n in ("worker", "api")]
    assert not any(alive(pid) for pid in pids if pid is not None)
    assert not set(cluster.topics.values()) & set(kafka_broker.list_topics())


def test_servers_die_with_a_killed_owner(tmp_path: Path) -> None:
    script = (
        "import sys, threading\n"
        "from pathlib import Path\n"
        "from deploy.local.servers import KafkaBroker, ValkeyServer, free_port\n"
        f"d = Path({str(tmp_path)!r})\n"
        "v = ValkeyServer(d / 'valkey', free_port())\n"
        "k = KafkaBroker(free_port(), d / 'kafka.log')\n"
        # Started from a short-lived thread, as asyncio.to_thread would: must not matter.
        "t = threading.Thread(target=lambda: (v.start(), k.start())); t.start(); t.join()\n"
        "print(v.pid, k.pid, flush=True)\n"
        "threading.Event().wait()\n"
    )
    owner = subprocess.Popen([sys.executable, "-c", script], cwd=REPO_ROOT,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert owner.stdout is not None
        pids = [int(p) for p in owner.stdout.readline().split()]
        assert len(pids) == 2 and all(alive(p) for p in pids)
        time.sleep(0.3)  # the behaviour under test: they stay up after the spawning thread ended
        assert all(alive(p) for p in pids)  # the spawning thread's end did not kill them
    finally:
        owner.kill()
        owner.wait()
    wait_until(lambda: not any(alive(p) for p in pids), timeout_s=5, what="servers dying with their owner")


# -- The shared per-test fixtures (tests/fixtures/resources.py) --------------------------------


async def test_shared_fixtures_point_at_this_tests_servers_and_prefixes(
    service_settings: SettingsFactory, database_url: str, redis_prefix: str, topic_prefix: str,
    db_pool: asyncpg.Pool, dispatcher: Dispatcher, producer: EventProducer, event_tap: JobEventTap,
) -> None:
    worker = service_settings(WorkerSettings, lease_ms=1234)
    assert (worker.redis_key_prefix, worker.kafka_topic_prefix, worker.lease_ms) == (redis_prefix, topic_prefix, 1234)
    assert worker.kafka_session_timeout_ms == 1000 and worker.auth_required
    assert not port_in_use(worker.worker_port)
    assert service_settings().database_url == database_url
    assert await db_pool.fetchval("SELECT $1::jsonb", {"a": 1}) == {"a": 1}
    assert dispatcher.keys.prefix == redis_prefix
    job_id = uuid.uuid4()
    await producer.publish_events([Envelope(type=EventType.SUBMITTED, job_id=job_id, queue="q", job_type="noop")])
    [seen] = await event_tap.wait(job_id, EventType.SUBMITTED)
    assert seen.job_id == job_id and event_tap.kinds(job_id) == [(EventType.SUBMITTED, 0)]
    assert event_tap.records[-1].topic == f"{topic_prefix}jobs.submitted"
