"""The Lua scripts of the dispatch protocol, loaded once, and the queue keys each one declares.

Every script works on one queue: its KEYS are the queue keys named here, in this order (the
`-- KEYS:` line atop each `.lua` file says the same; a test holds them together). Each file
starts with `#!lua`: with it, Redis 7+ and Valkey refuse a script that touches a key outside
the hash slot of its KEYS, where a script without it runs in a lenient compatibility mode.

The scripts that order, lease and limit jobs share `_lib.lua` (fair scores, lanes, slots): it is
inserted after their `#!lua` line, and they all start their KEYS with the same COMMON layout.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from importlib import resources
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

from shared.dispatch.keys import Keys, QueueKeys

# The first KEYS of every script built on _lib.lua, in this order (the library names them by index).
COMMON: tuple[str, ...] = (
    "ready", "delayed", "state", "fair", "jobkeys", "lanes", "held", "aging", "config", "leases", "owners", "specs",
    "running",
)
SCRIPT_KEYS: dict[str, tuple[str, ...]] = {
    "push": COMMON,
    "pop": (*COMMON, "cancelled", "rlog", "krlog"),
    "heartbeat": ("leases", "owners"),
    "release": COMMON,
    "promote": (*COMMON, "cancelled"),
    "age": COMMON,
    "waits": (*COMMON, "rlog", "krlog"),
    "expired": ("leases", "owners", "specs", "state"),
    "forget": COMMON,
    "cancel": ("cancelled", "leases", "state"),
}
WITH_LIB = frozenset(name for name, keys in SCRIPT_KEYS.items() if keys[:len(COMMON)] == COMMON)


def _file(name: str) -> str:
    return resources.files("shared.dispatch").joinpath("scripts", f"{name}.lua").read_text()


def source(name: str) -> str:
    """The text Redis runs for script `name`: `scripts/<name>.lua`, `_lib.lua` after its first line if it uses it."""
    text = _file(name)
    if name not in WITH_LIB:
        return text
    first, rest = text.split("\n", 1)
    return f"{first}\n{_file('_lib')}{rest}"


def script_keys(name: str, queue: QueueKeys) -> list[str]:
    """The KEYS of one call of script `name` on `queue`."""
    return [getattr(queue, attr) for attr in SCRIPT_KEYS[name]]


class QueueScripts:
    """The registered scripts of one key prefix, run on one queue at a time."""

    def __init__(self, redis: Redis, keys: Keys) -> None:
        self._redis = redis
        self._keys = keys
        self._scripts: dict[str, AsyncScript] = {name: redis.register_script(source(name)) for name in SCRIPT_KEYS}
        self._key_lists: dict[tuple[str, str], list[str]] = {}

    def keys_of(self, name: str, queue: str) -> list[str]:
        """The KEYS of script `name` on `queue` (built once per pair)."""
        found = self._key_lists.get((name, queue))
        if found is None:
            found = self._key_lists[(name, queue)] = script_keys(name, self._keys.queue(queue))
        return found

    async def call(self, name: str, queue: str, args: Sequence[Any]) -> Any:
        """Run script `name` on `queue` in a round trip of its own (loading it if Redis lacks it)."""
        return await self._scripts[name](keys=self.keys_of(name, queue), args=list(args))

    def add(self, pipe: Pipeline, name: str, queue: str, args: Sequence[Any]) -> None:
        """Queue script `name` on `queue` onto a pipeline, by hash.

        Not through the script object: redis-py then checks SCRIPT EXISTS before every pipeline,
        a round trip more. A pipeline that meets NOSCRIPT calls `load()` and runs again.
        """
        keys = self.keys_of(name, queue)
        pipe.evalsha(self._scripts[name].sha, len(keys), *keys, *args)

    async def each(self, name: str, calls: Iterable[tuple[str, Sequence[Any]]]) -> list[Any]:
        """Run script `name` once per (queue, args), all in one round trip; one call goes without a pipeline."""
        pending = list(calls)
        if not pending:
            return []
        if len(pending) == 1:  # the common case (one queue): a plain call costs less than a pipeline
            queue, args = pending[0]
            return [await self.call(name, queue, args)]

        def fill(pipe: Pipeline) -> None:
            for queue, args in pending:
                self.add(pipe, name, queue, args)

        return await self.pipelined(fill)

    async def load(self) -> None:
        """(Re)load every script, after a Redis restart or SCRIPT FLUSH."""
        for script in self._scripts.values():
            script.sha = await self._redis.script_load(script.script)

    async def pipelined(self, fill: Callable[[Pipeline], None]) -> list[Any]:
        """One round trip of the commands `fill` queues; run again once after NOSCRIPT, scripts reloaded."""
        for attempt in (1, 2):
            async with self._redis.pipeline(transaction=False) as pipe:
                fill(pipe)
                try:
                    return list(await pipe.execute())
                except NoScriptError:
                    if attempt == 2:
                        raise
            await self.load()
        raise AssertionError("unreachable")
