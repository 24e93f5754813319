"""A handler module loaded through WORKER_HANDLER_MODULES in the tests."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from services.worker import JobContext, RetryableError, RetryPolicy, handler


@handler("custom.reverse")
async def reverse(ctx: JobContext) -> dict[str, Any]:
    """Reverse the `text` of the payload."""
    return {"reversed": str(ctx.payload.get("text", ""))[::-1], "worker": ctx.worker_id}


# --- issue 9: execution semantics ------------------------------------------------------------

FLAKY_DEFAULT = RetryPolicy(strategy="fixed", base_delay_ms=1234, jitter=False)


@handler("custom.flaky", retry=FLAKY_DEFAULT)
async def flaky(ctx: JobContext) -> dict[str, Any]:
    """Always fail, retryably: its type's default policy (fixed 1234 ms) decides the delay."""
    raise RetryableError("flaky by design")


@handler("custom.cancel-probe")
async def cancel_probe(ctx: JobContext) -> dict[str, Any]:
    """Wait up to a minute; when cancelled, write the wall-clock time it noticed to `payload.path`."""
    try:
        await asyncio.sleep(60)
    except asyncio.CancelledError:
        path = Path(str(ctx.payload["path"]))
        # Written aside, then renamed: a reader polling for the file never sees it empty.
        path.with_suffix(".tmp").write_text(repr(time.time()))
        path.with_suffix(".tmp").replace(path)
        raise
    return {"cancelled": False}


@handler("custom.resumable")
async def resumable(ctx: JobContext) -> dict[str, Any]:
    """Count `total` steps, checkpointing each; attempt 1 fails at step `failAt`; later attempts resume."""
    total, fail_at = int(ctx.payload.get("total", 10)), int(ctx.payload.get("failAt", 6))
    state = ctx.checkpoint_state or {"done": 0}
    resumed_at = int(state["done"])
    ctx.log(f"attempt {ctx.attempt} starts at step {resumed_at}")
    for step in range(resumed_at, total):
        if ctx.attempt == 1 and step == fail_at:
            raise RetryableError(f"crashed at step {step}", retry_after=0)
        await ctx.progress(step + 1, total, stage="counting", message=f"step {step + 1}")
        await ctx.checkpoint({"done": step + 1})
    ctx.log("all steps done")
    return {"resumedAt": resumed_at, "attempt": ctx.attempt}
