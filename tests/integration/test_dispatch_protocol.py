"""The Redis dispatch protocol (shared/dispatch) against a real Valkey."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from deploy.local.servers import ValkeyServer, free_port
from shared.dispatch.keys import FAIR_UNIT, PRIORITY_SHIFT, ready_score
from shared.dispatch.protocol import Dispatcher, Forget, JobRef, connect, now_ms
from shared.dispatch.records import WaitingJob
from shared.dispatch.scripts import COMMON, SCRIPT_KEYS, WITH_LIB, source
from shared.models import JobSpec
from tests.fixtures.polling import poll_until


def spec(queue: str = "q", priority: int = 5, **extra: object) -> JobSpec:
    fields: dict[str, object] = {"payload": {}, **extra}
    return JobSpec(job_id=uuid.uuid4(), queue=queue, job_type="noop", priority=priority, **fields)  # type: ignore[arg-type]


def ref(s: JobSpec) -> JobRef:
    return JobRef.of(s)


def next_attempt(s: JobSpec) -> JobSpec:
    return s.model_copy(update={"attempt": s.attempt + 1})


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(jobs=st.lists(st.tuples(st.sampled_from(["a", "b", "c"]), st.integers(0, 10)), min_size=1, max_size=40))
async def test_pop_order_is_priority_across_queues_and_strictly_fifo_within_one(
    redis: Redis, jobs: list[tuple[str, int]]
) -> None:
    d = Dispatcher(redis, f"p{uuid.uuid4().hex[:8]}")
    specs = [spec(q, p) for q, p in jobs]
    for s in specs:  # one by one, so insertion order is well defined
        assert await d.push([(s, 0)]) == [True]
    popped: list[JobSpec] = []
    while batch := await d.pop(["a", "b", "c"], 7, 10_000, "w"):
        popped += [lease.spec for lease in batch]
    assert sorted(s.job_id for s in popped) == sorted(s.job_id for s in specs)
    # Best priority first across every queue ...
    assert [s.priority for s in popped] == sorted((s.priority for s in specs), reverse=True)
    # ... and within one queue, priority then first in, first out. (Across queues of equal priority
    # the order is not the push order: each queue counts its own sequence, in its own hash slot.)
    order = {s.job_id: i for i, s in enumerate(specs)}
    for queue in "abc":
        mine = [s for s in specs if s.queue == queue]
        expected = sorted(mine, key=lambda s: (-s.priority, order[s.job_id]))
        assert [s.job_id for s in popped if s.queue == queue] == [s.job_id for s in expected]


async def test_ready_scores_are_the_python_formula(dispatcher: Dispatcher, redis: Redis) -> None:
    first, second = spec(priority=3), spec(priority=3)
    await dispatcher.push([(first, 0), (second, 0)])
    scores = dict(await redis.zrange(dispatcher.keys.queue("q").ready, 0, -1, withscores=True))
    # One key alone (the default key of keyless jobs) steps its band's virtual time by FAIR_UNIT: FIFO.
    assert scores == {
        str(first.job_id).encode(): ready_score(3, FAIR_UNIT),
        str(second.job_id).encode(): ready_score(3, 2 * FAIR_UNIT),
    }


async def test_push_is_idempotent_and_a_popped_job_is_leased(dispatcher: Dispatcher) -> None:
    s = spec(payload={"big": 12345678901234567890, "nested": {"x": [1, 2]}})
    assert await dispatcher.push([(s, 0)]) == [True]
    assert await dispatcher.push([(s, 0)]) == [False]
    [lease] = await dispatcher.pop(["q"], 10, 5_000, "w1")
    assert lease.spec == s  # the payload survives Redis byte for byte
    assert await dispatcher.pop(["q"], 10, 5_000, "w1") == []
    assert await dispatcher.leased([ref(s)]) == {s.job_id}
    assert await dispatcher.held([ref(s)]) == {s.job_id}


async def test_only_the_lease_owner_can_release(dispatcher: Dispatcher) -> None:
    s = spec()
    await dispatcher.push([(s, 0)])
    [lease] = await dispatcher.pop(["q"], 1, 5_000, "w1")
    forged = type(lease)(lease.spec, "someone-else:1")
    assert await dispatcher.release([forged]) == 0
    assert await dispatcher.heartbeat([forged], 5_000) == {s.job_id}
    assert await dispatcher.release([lease]) == 1
    assert await dispatcher.held([ref(s)]) == set()
    assert await dispatcher.release([lease]) == 0  # a second release does nothing


async def test_a_push_replaces_an_older_attempt_and_never_a_newer_one(dispatcher: Dispatcher) -> None:
    waiting, leased = spec(), spec()
    await dispatcher.push([(leased, 0)])
    [lease] = await dispatcher.pop(["q"], 1, 60_000, "w1")
    await dispatcher.push([(waiting, now_ms() + 60_000)])
    # The same attempt again, or an older one: left alone.
    older = waiting.model_copy(update={"attempt": 0})
    assert await dispatcher.push([(waiting, 0), (older, 0), (leased, 0)]) == [False, False, False]
    assert await dispatcher.leased([ref(leased)]) == {leased.job_id}
    # A newer attempt replaces the held copy wherever it is: the delayed one, and the leased one
    # (whose worker then finds its lease gone).
    assert await dispatcher.push([(next_attempt(waiting), 0), (next_attempt(leased), 0)]) == [True, True]
    assert await dispatcher.leased([ref(leased)]) == set()
    assert await dispatcher.heartbeat([lease], 5_000) == {leased.job_id}
    assert await dispatcher.release([lease]) == 0
    popped = await dispatcher.pop(["q"], 10, 5_000, "w2")
    assert sorted((x.job_id, x.spec.attempt) for x in popped) == sorted([(waiting.job_id, 2), (leased.job_id, 2)])


async def test_a_fresh_dispatch_replaces_a_stale_waiting_copy_of_its_own_attempt(dispatcher: Dispatcher) -> None:
    stale, running, newer = spec(), spec(), spec(attempt=2)
    await dispatcher.push([(running, 0)])
    await dispatcher.pop(["q"], 1, 60_000, "w")
    await dispatcher.push([(stale, now_ms() + 60_000), (newer, 0)])
    fresh = [(s.model_copy(update={"max_attempts": 9}), 0) for s in (stale, running)]
    fresh.append((newer.model_copy(update={"attempt": 1}), 0))
    # Only the waiting copy at the same attempt goes: a leased one runs on, a newer one stays.
    assert await dispatcher.push(fresh, fresh={s.job_id for s in (stale, running, newer)}) == [True, False, False]
    assert await dispatcher.leased([ref(running)]) == {running.job_id}
    popped = {lease.job_id: lease.spec for lease in await dispatcher.pop(["q"], 10, 5_000, "w")}
    assert (popped[stale.job_id].max_attempts, popped[newer.job_id].attempt) == (9, 2)
    assert await dispatcher.redis.zcard(dispatcher.keys.queue("q").delayed) == 0


@pytest.mark.parametrize("release_first", [True, False], ids=["release-then-push", "push-then-release"])
async def test_a_retry_ends_with_the_next_attempt_whatever_reaches_redis_first(
    dispatcher: Dispatcher, release_first: bool
) -> None:
    # The worker releases its lease after publishing `retry`; the scheduler pushes the next
    # attempt after recording it. The two reach Redis in either order.
    s = spec()
    await dispatcher.push([(s, 0)])
    [lease] = await dispatcher.pop(["q"], 1, 5_000, "w1")
    if release_first:
        assert await dispatcher.release([lease]) == 1
        assert await dispatcher.push([(next_attempt(s), now_ms())]) == [True]
    else:
        assert await dispatcher.push([(next_attempt(s), now_ms())]) == [True]
        assert await dispatcher.release([lease]) == 0  # the push took the lease: nothing left to release
    assert await dispatcher.leased([ref(s)]) == set()
    assert await dispatcher.held([ref(s)]) == {s.job_id}
    [promoted] = await dispatcher.promote_due(["q"])
    assert (promoted.job_id, promoted.attempt) == (s.job_id, 2)
    [again] = await dispatcher.pop(["q"], 1, 5_000, "w2")
    assert again.spec.attempt == 2


async def test_expired_leases_are_only_read_until_the_scheduler_moves_them(dispatcher: Dispatcher) -> None:
    s, last = spec(max_attempts=2), spec(max_attempts=1)
    await dispatcher.push([(s, 0), (last, 0)])
    first, doomed = await dispatcher.pop(["q"], 2, 50, "w1")
    expired = await poll_until(lambda: dispatcher.expired(["q"]), lambda found: len(found) == 2, timeout_s=15)
    assert {(x.spec.job_id, x.outcome, x.spec.attempt) for x in expired} == {
        (s.job_id, "retry", 1), (last.job_id, "exhausted", 1),
    }
    assert await dispatcher.expired(["q"]) != []  # reading moved nothing
    assert await dispatcher.leased([ref(s), ref(last)]) == {s.job_id, last.job_id}
    # Recorded in Postgres (not here); then the next attempt replaces one dead lease, and the
    # other is released: only while it still is that lease.
    assert await dispatcher.push([(next_attempt(s), now_ms())]) == [True]
    by_id = {x.spec.job_id: x for x in expired}
    assert await dispatcher.release([by_id[s.job_id].lease]) == 0
    assert await dispatcher.release([by_id[last.job_id].lease]) == 1
    assert await dispatcher.expired(["q"]) == []
    assert await dispatcher.release([first]) == 0  # the dead worker's late release is refused
    assert await dispatcher.held([ref(last)]) == set()
    [promoted] = await dispatcher.promote_due(["q"])
    assert (promoted.job_id, promoted.attempt) == (s.job_id, 2)
    assert doomed.job_id == last.job_id


async def test_heartbeat_keeps_a_lease_alive(dispatcher: Dispatcher) -> None:
    s = spec()
    await dispatcher.push([(s, 0)])
    [lease] = await dispatcher.pop(["q"], 1, 300, "w1")
    for _ in range(4):
        await asyncio.sleep(0.15)  # the behaviour under test: time passing past the first deadline
        assert await dispatcher.heartbeat([lease], 300) == set()
    assert await dispatcher.expired(["q"]) == []


async def test_heartbeat_and_release_cover_leases_of_several_queues_in_one_call(dispatcher: Dispatcher) -> None:
    specs = [spec("a"), spec("b"), spec("c")]
    await dispatcher.push([(s, 0) for s in specs])
    leases = await dispatcher.pop(["a", "b", "c"], 3, 5_000, "w")
    assert len(leases) == 3
    assert await dispatcher.heartbeat(leases, 5_000) == set()
    assert await dispatcher.release(leases) == 3
    assert await dispatcher.held([ref(s) for s in specs]) == set()


async def test_delayed_jobs_wait_until_due(dispatcher: Dispatcher) -> None:
    later, soon = spec(), spec()
    await dispatcher.push([(later, now_ms() + 60_000), (soon, now_ms() + 100)])
    assert await dispatcher.pop(["q"], 10, 1000, "w") == []
    promoted = await poll_until(lambda: dispatcher.promote_due(), lambda moved: moved != [], timeout_s=15)
    assert [s.job_id for s in promoted] == [soon.job_id]
    [lease] = await dispatcher.pop(["q"], 10, 1000, "w")
    assert lease.job_id == soon.job_id


async def test_a_flagged_job_is_never_handed_out_and_its_copy_is_dropped_when_met(dispatcher: Dispatcher) -> None:
    waiting, running, delayed = spec(), spec(), spec()
    await dispatcher.push([(running, 0)])
    assert len(await dispatcher.pop(["q"], 1, 5000, "w")) == 1
    await dispatcher.push([(waiting, 0), (delayed, now_ms() + 100)])
    assert await dispatcher.cancel("q", waiting.job_id) == "waiting"
    assert await dispatcher.cancel("q", delayed.job_id) == "waiting"
    assert await dispatcher.cancel("q", running.job_id) == "running"
    assert await dispatcher.cancel("q", uuid.uuid4()) == "absent"
    assert await dispatcher.cancelled([ref(running), ref(waiting), JobRef("other", running.job_id)]) == {
        running.job_id, waiting.job_id,
    }
    # A flagged copy counts as gone at once; the copies themselves go when pop and promote meet them.
    assert await dispatcher.held([ref(waiting), ref(delayed)]) == set()
    assert await dispatcher.pop(["q"], 10, 5000, "w") == []

    async def promote_then_count_delayed() -> int:
        assert await dispatcher.promote_due(["q"]) == []  # due or not, nothing flagged is promoted
        return int(await dispatcher.redis.zcard(dispatcher.keys.queue("q").delayed))

    await poll_until(promote_then_count_delayed, lambda n: n == 0, timeout_s=15)
    assert await dispatcher.redis.hlen(dispatcher.keys.queue("q").specs) == 1  # only the running one
    assert await dispatcher.depth("q") == 0
    assert await dispatcher.leased([ref(running)]) == {running.job_id}  # its worker stops it and releases


async def test_a_lowered_flag_lets_a_retried_job_run(dispatcher: Dispatcher) -> None:
    s = spec()
    await dispatcher.cancel("q", s.job_id)
    await dispatcher.clear_cancel("q", s.job_id)
    await dispatcher.push([(s, 0)])
    assert [lease.job_id for lease in await dispatcher.pop(["q"], 1, 5000, "w")] == [s.job_id]


async def test_forget_drops_waiting_copies_up_to_an_attempt_but_never_a_leased_one(dispatcher: Dispatcher) -> None:
    ready, delayed, newer, leased = spec(), spec(), spec(attempt=3), spec()
    await dispatcher.push([(leased, 0)])
    await dispatcher.pop(["q"], 1, 5000, "w")
    await dispatcher.push([(ready, 0), (delayed, now_ms() + 60_000), (newer, 0)])
    dropped = await dispatcher.forget([Forget("q", s.job_id, 2) for s in (ready, delayed, newer, leased)])
    assert dropped == 2
    assert await dispatcher.held([ref(s) for s in (ready, delayed, newer, leased)]) == {newer.job_id, leased.job_id}
    assert await dispatcher.depth("q") == 1


async def test_wait_for_work_wakes_on_push(dispatcher: Dispatcher, redis: Redis) -> None:
    waiter = asyncio.create_task(dispatcher.wait_for_work(5))

    async def blocked() -> bool:
        return any(client.get("cmd") == "blpop" for client in await redis.client_list())

    # The waiter blocks first: the behaviour under test is the wake.
    await poll_until(blocked, timeout_s=15)
    await dispatcher.push([(spec(), 0)])
    await asyncio.wait_for(waiter, 2)
    assert await dispatcher.queues() == ["q"]


async def test_a_batch_push_reports_each_job_and_leaves_a_wake_token_per_ready_job(
    dispatcher: Dispatcher, redis: Redis
) -> None:
    ready = [spec(priority=p) for p in (1, 9, 5)]
    later = spec()
    known = ready[0]
    assert await dispatcher.push([(known, 0)]) == [True]
    await redis.delete(dispatcher.keys.wake)
    result = await dispatcher.push([(s, 0) for s in ready] + [(later, now_ms() + 60_000), (ready[1], 0)])
    assert result == [False, True, True, True, False]  # known before, and a repeat within the batch
    assert await redis.llen(dispatcher.keys.wake) == 2  # the two new ready jobs; the delayed one waits
    leases = await dispatcher.pop(["q"], 10, 5_000, "w")
    assert [lease.spec.job_id for lease in leases] == [ready[1].job_id, ready[2].job_id, known.job_id]


async def test_a_pop_of_several_jobs_drops_their_other_wake_tokens(dispatcher: Dispatcher, redis: Redis) -> None:
    await dispatcher.push([(spec(), 0) for _ in range(5)])
    assert await redis.llen(dispatcher.keys.wake) == 5
    await dispatcher.wait_for_work(1)  # a worker takes one token, then pops what it can
    assert len(await dispatcher.pop(["q"], 3, 5_000, "w")) == 3
    assert await redis.llen(dispatcher.keys.wake) == 2  # one per job still waiting


async def test_a_pop_over_many_queues_takes_two_round_trips_however_many_are_empty(
    dispatcher: Dispatcher, monkeypatch: pytest.MonkeyPatch
) -> None:
    queues = [f"q{i}" for i in range(20)]
    jobs = [spec("q7", priority=2), spec("q13", priority=8)]
    await dispatcher.push([(s, 0) for s in jobs])
    trips = 0
    pipelined, call = dispatcher.pipelined, dispatcher.scripts.call

    async def counted_pipeline(*args: object) -> object:
        nonlocal trips
        trips += 1
        return await pipelined(*args)  # type: ignore[arg-type]

    async def counted_call(*args: object) -> object:
        nonlocal trips
        trips += 1
        return await call(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(dispatcher, "pipelined", counted_pipeline)
    monkeypatch.setattr(dispatcher.scripts, "call", counted_call)
    leases = await dispatcher.pop(queues, 5, 5_000, "w")
    assert [lease.job_id for lease in leases] == [jobs[1].job_id, jobs[0].job_id]
    assert trips == 2


async def test_a_flushed_script_cache_is_reloaded(dispatcher: Dispatcher, redis: Redis) -> None:
    await dispatcher.push([(spec(), 0)])
    await redis.script_flush()
    await dispatcher.push([(spec(), 0)])  # a pipeline meets NOSCRIPT, reloads, runs again
    await redis.script_flush()
    assert len(await dispatcher.pop(["q"], 5, 5_000, "w")) == 2  # a single call reloads by itself


# --- every script on one hash slot ------------------------------------------------------------


def crc16(data: bytes) -> int:
    """CRC16/XMODEM, the checksum Redis Cluster hashes keys with."""
    crc = 0
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


def hash_slot(key: str) -> int:
    """The cluster slot of a key: only its `{tag}` is hashed when it has a non-empty one."""
    raw = key.encode()
    start = raw.find(b"{")
    if start != -1:
        end = raw.find(b"}", start + 1)
        if end > start + 1:
            raw = raw[start + 1:end]
    return crc16(raw) % 16384


def test_the_slot_rule_matches_redis() -> None:
    assert crc16(b"123456789") == 0x31C3  # the reference check value of CRC16/XMODEM
    assert hash_slot("{user1000}.following") == hash_slot("{user1000}.followers") == hash_slot("user1000")
    assert hash_slot("foo{}{bar}") == crc16(b"foo{}{bar}") % 16384  # an empty tag hashes the whole key


def test_every_script_declares_the_keys_it_touches() -> None:
    for name, attrs in SCRIPT_KEYS.items():
        text = source(name)
        assert text.startswith("#!lua\n"), name  # strict key checks on Redis 7+ / Valkey
        header = re.search(r"^-- KEYS: (.*)$", text, re.MULTILINE)
        assert header is not None, name
        assert [part.split()[1] for part in header.group(1).split(", ")] == list(attrs), name
        # The first argument of every redis.call is a declared key: no key built inside a script.
        for command, first in re.findall(r"redis\.call\('(\w+)', ([^,)]+)", text):
            assert re.fullmatch(r"KEYS\[\d+\]", first), f"{name}.lua: {command} on {first}"
        assert str(PRIORITY_SHIFT) not in text  # the priority shift lives in keys.py only
        # _lib.lua names keys by index: every script it is part of starts with the same layout.
        assert (name in WITH_LIB) == (attrs[:len(COMMON)] == COMMON), name
        assert ("local function enqueue" in text) == (name in WITH_LIB), name


async def workout(d: Dispatcher) -> None:
    """Every operation of the protocol, on two queues."""
    a, b, later = spec("a"), spec("b", priority=9), spec("a")
    await d.push([(a, 0), (b, 0), (later, now_ms() + 1)])
    leases = await d.pop(["a", "b"], 5, 5_000, "w")
    assert {lease.job_id for lease in leases} == {a.job_id, b.job_id}
    await d.heartbeat(leases, 5_000)
    assert await d.cancel("a", a.job_id) == "running"
    assert await d.cancelled([ref(a), ref(b)]) == {a.job_id}
    await d.clear_cancel("a", a.job_id)
    assert await d.held([ref(a), ref(b)]) == {a.job_id, b.job_id}
    assert await d.leased([ref(a), ref(b)]) == {a.job_id, b.job_id}
    assert await d.expired() == []
    assert await d.push([(next_attempt(a), now_ms())]) == [True]
    assert await d.release(leases) == 1
    await poll_until(d.promote_due, lambda moved: len(moved) == 2, timeout_s=15)
    assert await d.forget([Forget("a", later.job_id, 0)]) == 0  # held at attempt 1: newer than the bound
    assert {lease.job_id for lease in await d.pop(["a"], 5, 5_000, "w")} == {a.job_id, later.job_id}
    assert await d.depth("a") == 0 and await d.queues() == ["a", "b"]
    assert await d.age_due(["a"]) == 0
    states = await d.wait_states([WaitingJob("a", a.job_id), WaitingJob("b", b.job_id, "k", "k")])
    assert not states[a.job_id].ready and states[b.job_id].rate is None


async def test_every_script_call_stays_in_one_hash_slot(
    dispatcher: Dispatcher, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[str, list[str]]] = []
    keys_of = dispatcher.scripts.keys_of

    def recorded(name: str, queue: str) -> list[str]:
        keys = keys_of(name, queue)
        calls.append((name, keys))
        return keys

    monkeypatch.setattr(dispatcher.scripts, "keys_of", recorded)
    await workout(dispatcher)
    assert {name for name, _ in calls} == set(SCRIPT_KEYS)
    for name, keys in calls:
        assert len(keys) == len(SCRIPT_KEYS[name])
        assert len({hash_slot(k) for k in keys}) == 1, (name, keys)
        assert len({k.split("}")[0] for k in keys}) == 1, (name, keys)  # one queue's tag


class ClusterValkey(ValkeyServer):
    """Valkey in cluster mode, one node holding every slot: it refuses cross-slot script access."""

    def _argv(self) -> list[str]:
        return [
            *super()._argv(), "--cluster-enabled", "yes", "--cluster-port", str(free_port()),
            "--cluster-config-file", str(self.data_dir / "nodes.conf"),
        ]


@pytest.fixture(scope="module")
def cluster_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = ClusterValkey(tmp_path_factory.mktemp("cluster"), free_port())
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


async def test_the_protocol_runs_on_a_redis_cluster_node(cluster_url: str) -> None:
    client = connect(cluster_url)
    try:
        await client.execute_command("CLUSTER", "ADDSLOTSRANGE", 0, 16383)

        async def state() -> bytes:
            info: bytes = await client.execute_command("CLUSTER", "INFO")
            return info

        await poll_until(state, lambda info: b"cluster_state:ok" in info, timeout_s=15)
        # The node does refuse a script that strays from the slot of its KEYS ...
        stray = client.register_script("#!lua\nreturn redis.call('GET', 'elsewhere')")
        with pytest.raises(ResponseError, match="same slot"):
            await stray(keys=["{p:q}:ready"])
        # ... and every script of the protocol keeps to it.
        await workout(Dispatcher(client, "p"))
    finally:
        await client.aclose()
