"""The handler registry and module loading."""

from __future__ import annotations

import pytest

from services.worker.registry import JobContext, Registry, default_registry, load_modules, parse_modules


async def _fn(ctx: JobContext) -> None:
    return None


async def _other(ctx: JobContext) -> None:
    return None


def test_register_get_and_conflicts() -> None:
    reg = Registry()
    reg.handler("a.b")(_fn)
    reg.register("a.b", _fn)  # same function again: harmless (re-imports)
    assert reg.get("a.b") is _fn and reg.get("zzz") is None
    with pytest.raises(ValueError, match="already has a handler"):
        reg.register("a.b", _other)
    with pytest.raises(ValueError, match="invalid job type"):
        reg.register("Bad Type", _other)
    assert reg.types() == ["a.b"]


def test_builtins_load_and_modules_parse() -> None:
    assert parse_modules(" a.b , ,c ") == ["a.b", "c"]
    load_modules([])
    assert {"noop", "echo", "sleep", "fail", "http"} <= set(default_registry.types())
    with pytest.raises(ModuleNotFoundError):
        load_modules(["tests.unit.worker.no_such_module"])
