"""A handler module loaded through WORKER_HANDLER_MODULES in the tests."""

from __future__ import annotations

from typing import Any

from services.worker import JobContext, handler


@handler("custom.reverse")
async def reverse(ctx: JobContext) -> dict[str, Any]:
    """Reverse the `text` of the payload."""
    return {"reversed": str(ctx.payload.get("text", ""))[::-1], "worker": ctx.worker_id}
