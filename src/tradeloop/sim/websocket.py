"""The server side of one WebSocket, on wsproto (sans-IO) and a TCP stream the caller owns.

The simulator writes frames in batches: one ``send_all`` for every frame a connection has queued,
instead of one write (and two checkpoints) per frame. That, and holding the TCP stream itself
(to abort it with no close frame, as a crashing server would), is why it speaks wsproto directly
rather than through a WebSocket library's server. It runs on any anyio byte stream (a TCP socket,
or one end of a socket pair in tests).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

import anyio
import anyio.abc
from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Event,
    Ping,
    Pong,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)
from wsproto.utilities import RemoteProtocolError

__all__ = ["ServerWebSocket", "WebSocketClosed"]

RECEIVE_BYTES = 65_536
MAX_MESSAGE_BYTES = 65_536
"""Client requests are tiny; a bigger message is closed with 1009 (message too big)."""


class WebSocketClosed(Exception):
    """The connection is closed (or closing): nothing more can be sent."""


class ServerWebSocket:
    """One server-side WebSocket. One task reads (:meth:`receive_message`); any task may send."""

    def __init__(self, stream: anyio.abc.ByteStream) -> None:
        self._stream = stream
        self._ws = WSConnection(ConnectionType.SERVER)
        self._send_lock = anyio.Lock()  # FIFO: frames leave in the order they were sent
        self._parts: list[str | bytes | bytearray] = []
        self._size = 0
        self.on_pong: Callable[[bytes], None] | None = None
        """Called with the payload of each RFC 6455 pong (Binance's heartbeat answers)."""

    async def receive_request(self) -> str:
        """Read the HTTP upgrade request; its target (path and query).

        Raises WebSocketClosed if the peer leaves or sends something else than an upgrade.
        """
        while True:
            for event in self._ws.events():
                if isinstance(event, Request):
                    return event.target
            if not await self._receive():
                raise WebSocketClosed("closed before the WebSocket handshake")

    async def accept(self) -> None:
        await self._send_event(AcceptConnection())

    async def reject(self, status_code: int, body: bytes) -> None:
        headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]
        await self._send_event(RejectConnection(status_code=status_code, headers=headers, has_body=True))
        await self._send_event(RejectData(data=body))

    async def receive_message(self) -> str | bytes | None:
        """The next complete message; None once the connection is closed (a close frame from
        the peer is answered) or the TCP connection ended. RFC 6455 pings are answered, so this
        raises WebSocketClosed if the connection breaks while answering.
        """
        while True:
            for event in self._ws.events():
                if isinstance(event, TextMessage | BytesMessage):
                    self._parts.append(event.data)
                    self._size += len(event.data)
                    if self._size > MAX_MESSAGE_BYTES:
                        await self.close(1009, "message too big")
                        return None
                    if event.message_finished:
                        parts, self._parts, self._size = self._parts, [], 0
                        if isinstance(event, TextMessage):
                            return "".join(cast("list[str]", parts))
                        return b"".join(cast("list[bytes]", parts))
                elif isinstance(event, Ping):
                    await self._send_event(event.response())
                elif isinstance(event, Pong) and self.on_pong is not None:
                    self.on_pong(bytes(event.payload))
                elif isinstance(event, CloseConnection):
                    if self._ws.state is ConnectionState.REMOTE_CLOSING:
                        await self._send_event(event.response())
                    elif self._ws.state is ConnectionState.OPEN:  # the peer broke the protocol
                        await self.close(event.code, event.reason)
                    return None
            if not await self._receive():
                return None

    async def send_frames(self, frames: list[bytes], *, text: bool = False) -> None:
        """Send binary messages (``text``: UTF-8 text messages), in one write. Raises
        WebSocketClosed once closing."""
        async with self._send_lock:
            if self._ws.state is not ConnectionState.OPEN:
                raise WebSocketClosed(f"cannot send in state {self._ws.state.name}")
            if text:
                messages = [self._ws.send(TextMessage(data=frame.decode(errors="replace"))) for frame in frames]
            else:
                messages = [self._ws.send(BytesMessage(data=frame)) for frame in frames]
            await self._write(b"".join(messages))

    async def ping(self, payload: bytes) -> None:
        """Send an RFC 6455 ping. Raises WebSocketClosed once closing."""
        async with self._send_lock:
            if self._ws.state is not ConnectionState.OPEN:
                raise WebSocketClosed(f"cannot ping in state {self._ws.state.name}")
            await self._write(self._ws.send(Ping(payload=payload)))

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        """Send a close frame (if the connection is still open); :meth:`wait_closed` for the reply."""
        if self._ws.state is ConnectionState.OPEN:
            await self._send_event(CloseConnection(code=code, reason=reason))

    async def wait_closed(self) -> None:
        """Read (and drop) messages until the peer's close frame or the end of the stream.

        Returns at once when the close handshake is already complete: the server closes TCP
        first (RFC 6455 §7.1.1), the client waits for that.
        """
        while self._ws.state is not ConnectionState.CLOSED and await self.receive_message() is not None:
            pass

    async def _receive(self) -> bool:
        """Feed the next bytes from the peer to wsproto; False at the end of the stream (or once
        the close handshake is complete: anything after it is not read).
        """
        if self._ws.state is ConnectionState.CLOSED:
            return False
        try:
            data = await self._stream.receive(RECEIVE_BYTES)
        except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
            data = b""
        if not data:
            return False
        try:
            self._ws.receive_data(bytes(data))
        except RemoteProtocolError as exc:  # not a WebSocket upgrade: answer it (e.g. 400) and stop
            if exc.event_hint is not None:
                await self._send_event(exc.event_hint)
            return False
        return True

    async def _send_event(self, event: Event) -> None:
        async with self._send_lock:
            await self._write(self._ws.send(event))

    async def _write(self, data: bytes) -> None:
        try:
            await self._stream.send(data)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError) as exc:
            raise WebSocketClosed(f"the connection broke: {exc!r}") from None
