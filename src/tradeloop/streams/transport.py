"""Client WebSocket transports: the seam between a connection and the WebSocket library.

A connection needs three things of a socket: a batch of received messages, sending text, and a
close that never leaks the TCP stream. Two implementations:

- :class:`WsprotoSocket` (the default) drives wsproto, the sans-IO protocol engine, directly on a
  Trio stream. One ``receive_some`` often carries dozens of frames, and they are returned as one
  batch: no reader task and no channel hop per message. On the burst benchmark this receive path
  is about twice as fast as trio-websocket's (see benchmarks/README section in README.md).
- :class:`TrioWebsocketSocket` wraps trio-websocket, the reference implementation, kept selectable
  (``StreamConfig.transport = "trio-websocket"``) and tested against the same simulator.

Both own the TCP stream and close it on every path. trio-websocket 0.12 alone leaks it twice: a
connect cancelled during the opening handshake never closes the stream, and a client whose
*server* closes first keeps it open (RFC 6455 lets a client wait for the server's TCP close, and
``aclose()`` then returns at once because the connection already counts as closed).
"""

from __future__ import annotations

import math
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from typing import Literal, Protocol
from urllib.parse import urlsplit

import trio
import trio_websocket
from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

__all__ = [
    "ConnectionClosedError",
    "HandshakeRejectedError",
    "TransportName",
    "TrioWebsocketSocket",
    "WebSocket",
    "WsprotoSocket",
    "websocket_session",
]

TransportName = Literal["wsproto", "trio-websocket"]

_DEFAULT_PORTS = {"ws": 80, "wss": 443}
_RECEIVE_SIZE = 65536


class ConnectionClosedError(Exception):
    """The peer closed the WebSocket (or the TCP stream under it)."""


class HandshakeRejectedError(Exception):
    """The server refused the WebSocket opening handshake."""


class WebSocket(Protocol):
    async def receive_batch(self) -> list[bytes | str]:
        """Wait for at least one message; return every message already received."""
        ...

    async def send_text(self, text: str) -> None: ...

    async def close(self) -> None:
        """Closing handshake; the caller bounds it, and the session closes the stream after it."""
        ...


@dataclass(frozen=True, slots=True)
class _Target:
    scheme: str
    hostname: str
    port: int
    resource: str

    @property
    def host_header(self) -> str:
        return self.hostname if self.port in (80, 443) else f"{self.hostname}:{self.port}"

    @classmethod
    def parse(cls, url: str) -> _Target:
        parts = urlsplit(url)
        if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
            raise ValueError(f"invalid WebSocket URL {url!r}: expected ws://host[:port]/path or wss://...")
        resource = parts.path or "/"
        if parts.query:
            resource = f"{resource}?{parts.query}"
        return cls(parts.scheme, parts.hostname, parts.port or _DEFAULT_PORTS[parts.scheme], resource)


async def _open_stream(target: _Target) -> trio.SocketStream | trio.SSLStream[trio.SocketStream]:
    if target.scheme == "wss":
        return await trio.open_ssl_over_tcp_stream(
            target.hostname, target.port, ssl_context=ssl.create_default_context(), https_compatible=True
        )
    return await trio.open_tcp_stream(target.hostname, target.port)


class WsprotoSocket:
    """A client WebSocket on wsproto: batches of messages, RFC 6455 pings answered inline."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self._stream = stream
        self._protocol = WSConnection(ConnectionType.CLIENT)
        self._send_lock = trio.StrictFIFOLock()
        self._fragments: list[str | bytes] = []

    async def handshake(self, target: _Target) -> None:
        await self._send(self._protocol.send(Request(host=target.host_header, target=target.resource)))
        while True:
            for event in self._events():
                if isinstance(event, AcceptConnection):
                    return
                if isinstance(event, RejectConnection | RejectData):
                    raise HandshakeRejectedError(f"server refused the WebSocket at {target.resource!r}")
            await self._receive_more()

    async def receive_batch(self) -> list[bytes | str]:
        while True:
            messages: list[bytes | str] = []
            replies: list[bytes] = []
            for event in self._events():
                if isinstance(event, TextMessage | BytesMessage):
                    data = event.data if isinstance(event.data, str | bytes) else bytes(event.data)
                    if event.message_finished and not self._fragments:
                        messages.append(data)
                    else:
                        self._fragments.append(data)
                        if event.message_finished:
                            messages.append(_join(self._fragments))
                            self._fragments = []
                elif isinstance(event, Ping):
                    replies.append(self._protocol.send(event.response()))
                elif isinstance(event, CloseConnection):
                    if self._protocol.state is ConnectionState.REMOTE_CLOSING:
                        replies.append(self._protocol.send(event.response()))
                    if replies:
                        await self._send(b"".join(replies))
                    raise ConnectionClosedError(f"closed by the server: code {event.code} {event.reason}".strip())
            if replies:
                await self._send(b"".join(replies))
            if messages:
                return messages
            await self._receive_more()

    async def send_text(self, text: str) -> None:
        try:
            data = self._protocol.send(TextMessage(data=text))
        except LocalProtocolError as exc:
            raise ConnectionClosedError(f"cannot send: {exc}") from exc
        await self._send(data)

    async def close(self) -> None:
        """Send a close frame and wait for the server's."""
        if self._protocol.state is not ConnectionState.OPEN:
            return
        await self._send(self._protocol.send(CloseConnection(code=1000)))
        while not any(isinstance(event, CloseConnection) for event in self._events()):
            await self._receive_more()

    def _events(self) -> list[object]:
        try:
            return list(self._protocol.events())
        except RemoteProtocolError as exc:
            raise ConnectionClosedError(f"protocol error from the server: {exc}") from exc

    async def _receive_more(self) -> None:
        data = await self._stream.receive_some(_RECEIVE_SIZE)
        if not data:
            raise ConnectionClosedError("the server closed the TCP connection")
        self._protocol.receive_data(bytes(data))

    async def _send(self, data: bytes) -> None:
        async with self._send_lock:
            try:
                await self._stream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                raise ConnectionClosedError(f"cannot send: {exc!r}") from exc


def _join(fragments: list[str | bytes]) -> str | bytes:
    if isinstance(fragments[0], str):
        return "".join(str(f) for f in fragments)
    return b"".join(bytes(f) for f in fragments if isinstance(f, bytes))


class TrioWebsocketSocket:
    """trio-websocket behind the same interface (one message per batch)."""

    def __init__(self, connection: trio_websocket.WebSocketConnection) -> None:
        self._connection = connection

    async def receive_batch(self) -> list[bytes | str]:
        try:
            return [await self._connection.get_message()]
        except trio_websocket.ConnectionClosed as exc:
            raise ConnectionClosedError(str(exc)) from exc

    async def send_text(self, text: str) -> None:
        try:
            await self._connection.send_message(text)
        except trio_websocket.ConnectionClosed as exc:
            raise ConnectionClosedError(str(exc)) from exc

    async def close(self) -> None:
        await self._connection.aclose()


@asynccontextmanager
async def websocket_session(
    url: str,
    *,
    transport: TransportName = "wsproto",
    connect_timeout: float,
    close_timeout: float,
    message_queue_size: int,
) -> AsyncIterator[WebSocket]:
    """Connect to ``url`` (ws:// or wss://) within ``connect_timeout``; close on exit.

    On exit the closing handshake is attempted (shielded, within ``close_timeout``) unless we are
    being cancelled: then the stream is closed at once (shutdown must not wait on a peer).
    """
    target = _Target.parse(url)
    async with trio.open_nursery() as nursery:
        stream: trio.SocketStream | trio.SSLStream[trio.SocketStream] | None = None
        try:
            with trio.fail_after(connect_timeout):
                stream = await _open_stream(target)
                socket: WsprotoSocket | TrioWebsocketSocket
                if transport == "wsproto":
                    socket = WsprotoSocket(stream)
                    await socket.handshake(target)
                else:
                    connection = await trio_websocket.wrap_client_stream(
                        nursery, stream, target.host_header, target.resource, message_queue_size=message_queue_size
                    )
                    socket = TrioWebsocketSocket(connection)
            try:
                yield socket
            finally:
                if trio.current_effective_deadline() != -math.inf:
                    with (
                        trio.move_on_after(close_timeout, shield=True),
                        # The peer may have gone first: then only the stream is left to close.
                        suppress(ConnectionClosedError, trio.BrokenResourceError, trio.ClosedResourceError),
                    ):
                        await socket.close()
        finally:
            if stream is not None:
                await trio.aclose_forcefully(stream)
            nursery.cancel_scope.cancel()
