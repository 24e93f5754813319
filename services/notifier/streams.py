"""The two transports: a WebSocket session (`/ws`) and a Server-Sent Events stream (`/sse`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import asyncpg
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
)
from services.notifier.resume import Limits, ResumeRefused, open_subscription, prepare
from shared.waiting import first_of

log = logging.getLogger(__name__)

# SSE writes every queued message in one chunk, up to this many.
_SSE_CHUNK = 256


@dataclass(frozen=True, slots=True)
class Streams:
    """What every stream needs: the hub, Postgres (resume, batches) and the resume limits."""

    hub: Hub
    pool: Callable[[], asyncpg.Pool]
    limits: Limits


async def subscribe(streams: Streams, sub: Subscriber, targets: tuple[Target, ...], since: str | None
                    ) -> dict[str, object] | None:
    """Open a subscription (replaying after `since`); None when done, else the `error` reply to send."""
    try:
        opening = await prepare(streams.hub, streams.pool(), sub, targets, since, streams.limits)
        open_subscription(streams.hub, sub, opening, streams.limits)
    except ResumeRefused as refused:
        return refused.reply()
    except ProtocolError as exc:
        return error_reply(str(exc))
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as exc:
        log.warning("cannot open a subscription of tenant %s: %r", sub.tenant, exc)
        return error_reply(f"cannot open the subscription now ({type(exc).__name__}): try again",
                           code="unavailable")
    return None


class WebSocketSession:
    """One accepted WebSocket: a receiver for commands, a sender draining the client's buffer."""

    def __init__(self, ws: WebSocket, streams: Streams, sub: Subscriber, *, close_timeout_s: float) -> None:
        self._ws = ws
        self._streams = streams
        self._hub = streams.hub
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
            reply = await self._handle(raw)
            if reply is not None and not self._sub.buffer.put(encode(reply)):
                return False  # the replies overflowed the buffer: the session ends (4008)
            if self._sub.buffer.close_code is not None:
                return False

    async def _handle(self, raw: str | bytes | None) -> dict[str, object] | None:
        """The reply to send, or None when the subscription queued its own (`subscribed`, then the replay)."""
        try:
            command = parse_command(raw)
        except ProtocolError as exc:
            return error_reply(str(exc))
        if command.action is Action.SUBSCRIBE:
            return await subscribe(self._streams, self._sub, command.targets, command.since)
        if command.action is Action.UNSUBSCRIBE:
            self._hub.unsubscribe(self._sub, command.targets)
        return reply_to(command)


def _saw_disconnect(receiver: asyncio.Task[bool]) -> bool:
    """Whether the receive loop ended because the client had already gone."""
    return receiver.done() and not receiver.cancelled() and receiver.exception() is None and receiver.result()


def _sse_event(text: str) -> str:
    """`id:` (the eventId) and `event:` (the message type) as DESIGN §7 asks, then the JSON as `data:`.

    Cheap: the fields are read from the start of the text the fan-out already encoded once.
    """
    kind = _field(text, '"type":"')
    event_id = _field(text, '"eventId":"')
    head = f"event: {kind}\n" if kind else ""
    if event_id:
        head = f"id: {event_id}\n{head}"
    return f"{head}data: {text}\n\n"


def _field(text: str, marker: str) -> str | None:
    """The string value after `marker` in compact JSON (our own messages: no escapes in these values)."""
    start = text.find(marker)
    if start < 0:
        return None
    start += len(marker)
    end = text.find('"', start)
    return text[start:end] if end > start else None


async def sse_stream(
    streams: Streams, tenant: str, targets: tuple[Target, ...], *, since: str | None, keepalive_s: float,
    cluster: bool = False,
) -> AsyncIterator[str]:
    """The body of an SSE response: `subscribed` and the replay after `since`, then the live messages,
    comments as keepalive. A `since` that cannot be resumed from is an `error` event, then the live stream
    (a browser's EventSource would only reconnect with the same Last-Event-ID)."""
    hub = streams.hub
    sub = hub.connect(tenant, "sse", cluster=cluster)
    try:
        refused = await subscribe(streams, sub, targets, since)
        if refused is not None:
            yield _sse_event(encode(refused))
            if await subscribe(streams, sub, targets, None) is not None:
                return
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
