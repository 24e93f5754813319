"""Job types and their handlers: `@handler("type")` registers an async function.

`@handler("type", retry=RetryPolicy(...))` also sets the type's default retry policy, used for
jobs of that type that carry none (README "Retries").

Handlers register at import time (like Celery tasks), so the registry a decorator writes
to is module-level; a WorkerService reads it when it starts, after importing the modules
named in `WORKER_HANDLER_MODULES`.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from services.worker.context import JobContext
from shared.models import RetryPolicy

__all__ = ["BUILTIN_MODULE", "Handler", "JobContext", "Registry", "default_registry", "handler", "load_modules"]

Handler = Callable[[JobContext], Awaitable[Any]]

JOB_TYPE_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
BUILTIN_MODULE = "services.worker.builtin_handlers"


class Registry:
    """A mapping from job type to handler."""

    def __init__(self) -> None:
        self._handlers: dict[str, Handler] = {}
        self._retry: dict[str, RetryPolicy] = {}

    def register(self, job_type: str, fn: Handler, *, retry: RetryPolicy | None = None) -> None:
        """Add a handler; registering the same function twice is harmless, a different one is an error."""
        if not JOB_TYPE_RE.match(job_type):
            raise ValueError(f"invalid job type {job_type!r}: must match {JOB_TYPE_RE.pattern}")
        existing = self._handlers.get(job_type)
        if existing is not None and existing is not fn:
            raise ValueError(f"job type {job_type!r} already has a handler ({existing.__qualname__})")
        self._handlers[job_type] = fn
        if retry is not None:
            self._retry[job_type] = retry

    def handler(self, job_type: str, *, retry: RetryPolicy | None = None) -> Callable[[Handler], Handler]:
        """Decorator form of `register`."""

        def decorate(fn: Handler) -> Handler:
            self.register(job_type, fn, retry=retry)
            return fn

        return decorate

    def get(self, job_type: str) -> Handler | None:
        """The handler of a type, or None if this worker does not know it."""
        return self._handlers.get(job_type)

    def retry_policy(self, job_type: str) -> RetryPolicy | None:
        """The type's default retry policy given at registration, if any."""
        return self._retry.get(job_type)

    def types(self) -> list[str]:
        """Every registered job type."""
        return sorted(self._handlers)


default_registry = Registry()
handler = default_registry.handler


def parse_modules(spec: str) -> list[str]:
    """`"a.b, c"` -> `["a.b", "c"]`."""
    return [part.strip() for part in spec.split(",") if part.strip()]


def load_modules(modules: Iterable[str]) -> None:
    """Import the built-ins and every named module so their `@handler` calls run (errors propagate)."""
    for name in (BUILTIN_MODULE, *modules):
        importlib.import_module(name)
