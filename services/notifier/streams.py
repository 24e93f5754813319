"""The two transports: a WebSocket session (`/ws`) and a Server-Sent Events stream (`/sse`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from starlette.websockets import WebSocket, WebSocketDisconnect

from services.notifier.buffer import BufferClosed
from services.notifier.hub import Hub, Subscriber
from services.notifier.messages import encode
from services.notifier.protocol import (
    Action,
    ProtocolError,
    Target,
    error_reply,
    parse_command,
    reply_to,
    target_fields,
)
from shared.waiting import first_of

log = logging.getLogger(__name__)

# SSE writes every queued message in one chunk, up to this many.
_SSE_CHUNK = 256


class WebSocketSession:
    """One accepted WebSocket: a receiver for commands, a sender draining the client's buffer."""

    def __init__(self, ws: WebSocket, hub: Hub, sub: Subscriber, *, close_timeout_s: float) -> None:
        self._ws = ws
        self._hub = hub
        self._sub = sub
        self._close_timeout = close_timeout_s

    async def run(self) -> None:
        """Serve until the client leaves, falls too far behind, or the service stops."""
        buffer = self._sub.buffer
        sender = asyncio.create_task(self._send_loop(), name="notifier.ws.send")
        receiver = asyncio.create_task(self._receive_loop(), name="notifier.ws.receive")
        closed = asyncio.create_task(buffer.closed.wait(), name="notifier.ws.closed")
        try:
            # Whichever ends first ends the session; first_of cancels and awaits the others.
            await first_of(sender, receiver, closed)
        finally:
            self._hub.disconnect(self._sub)
            for task in (sender, receiver, closed):
                if task.done() and not task.cancelled() and isinstance(task.exception(), Exception):
                    log.error("websocket session of tenant %s failed", self._sub.tenant, exc_info=task.exception())
        if buffer.close_code is not None and not _saw_disconnect(receiver):
            # The sender may be stuck on a client that reads nothing: the close frame waits for
            # the socket too, so it is bounded; the server then drops the connection.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._ws.close(buffer.close_code, buffer.close_reason), self._close_timeout)

    async def _send_loop(self) -> None:
        buffer = self._sub.buffer
        try:
            while True:
                await self._ws.send_text(await buffer.get())
        except (BufferClosed, WebSocketDisconnect):
            return

    async def _receive_loop(self) -> bool:
        """Handle client messages; returns True when the client disconnected."""
        while True:
            try:
                message = await self._ws.receive()
            except WebSocketDisconnect:
                return True
            if message["type"] == "websocket.disconnect":
                return True
            raw = message.get("text")
            if raw is None:
                raw = message.get("bytes")
            if not self._sub.buffer.put(encode(self._handle(raw))):
                return False  # the replies overflowed the buffer: the session ends (4008)

    def _handle(self, raw: str | bytes | None) -> dict[str, object]:
        try:
            command = parse_command(raw)
            if command.action is Action.SUBSCRIBE:
                self._hub.subscribe(self._sub, command.targets)
            elif command.action is Action.UNSUBSCRIBE:
                self._hub.unsubscribe(self._sub, command.targets)
        except ProtocolError as exc:
            return error_reply(str(exc))
        return reply_to(command)


def _saw_disconnect(receiver: asyncio.Task[bool]) -> bool:
    """Whether the receive loop ended because the client had already gone."""
    return receiver.done() and not receiver.cancelled() and receiver.exception() is None and receiver.result()


def _sse_event(text: str) -> str:
    return f"data: {text}\n\n"


async def sse_stream(
    hub: Hub, tenant: str, targets: tuple[Target, ...], *, keepalive_s: float, cluster: bool = False
) -> AsyncIterator[str]:
    """The body of an SSE response: `subscribed`, then one `data:` line per message, comments as keepalive."""
    sub = hub.connect(tenant, "sse", cluster=cluster)
    try:
        hub.subscribe(sub, targets)
        yield _sse_event(encode({"type": "subscribed", **target_fields(targets)}))
        buffer = sub.buffer
        while True:
            try:
                await asyncio.wait_for(buffer.wait(), timeout=keepalive_s)
            except TimeoutError:
                yield ": keepalive\n\n"
                continue
            try:
                batch = buffer.take(_SSE_CHUNK)
            except BufferClosed as exc:
                log.info("ending an SSE stream of tenant %s: %s", tenant, exc.reason)
                return
            yield "".join(_sse_event(text) for text in batch)
    finally:
        hub.disconnect(sub)
