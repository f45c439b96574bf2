"""Client WebSocket transports: the seam between a connection and the WebSocket library.

A connection needs three things of a socket: a batch of received messages, sending text, and a
close that never leaks the TCP stream. A :class:`Transport` opens such sockets and is the one
place where the libraries' errors (OSError, DNS, TLS, Trio's broken streams, trio-websocket's
exceptions, timeouts) become ours, all under :class:`TransportError`, in the manner of httpx's
``map_exceptions``: the connection above handles one family of errors, and a test can hand a
Transport any stream opener (an in-memory stream pair) to run a connection with no network.
Two implementations of the socket:

- :class:`WsprotoSocket` (the default) works directly on an anyio byte stream (so on Trio and
  asyncio alike): wsproto, the sans-IO protocol engine, for the opening handshake and the frames
  we send, and our own :class:`~tradeloop.streams.frames.FrameDecoder` for the frames we receive.
  One read often carries dozens of frames, and they are handed over as one batch: no channel hop
  per message. How the socket is read depends on the loop: on Trio a task waits for readability
  (:class:`_TrioSocketReader`); on asyncio the stream is our own protocol
  (:class:`~tradeloop.streams.asyncio_tcp.AsyncioTCPStream`), and :meth:`WsprotoSocket.pump`
  decodes and hands over each read in the loop's callback, so no task wakes to read at all.
  Decoding a 141-byte frame costs 0.3 µs here against about 6 µs in wsproto's receive path
  (measured), and end to end tradeloop moves several times as many pushes per second as on
  trio-websocket (see the Benchmarks section in README.md).
- :class:`TrioWebsocketSocket` wraps trio-websocket, the reference implementation, kept selectable
  (``StreamConfig.transport = "trio-websocket"``) and tested against the same simulator. It is
  a Trio library, so this transport runs only under Trio: selecting it elsewhere raises
  InvalidValueError when a socket is opened.

Both own the TCP stream and close it on every path. trio-websocket 0.12 alone leaks it twice: a
connect cancelled during the opening handshake never closes the stream, and a client whose
*server* closes first keeps it open (RFC 6455 lets a client wait for the server's TCP close, and
``aclose()`` then returns at once because the connection already counts as closed).
"""

from __future__ import annotations

import logging
import math
import re
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager, suppress
from dataclasses import dataclass
from functools import partial
from typing import Literal, NoReturn, Protocol

import anyio
import anyio.abc
import sniffio
import trio
import trio_websocket
from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import AcceptConnection, CloseConnection, Pong, RejectConnection, Request, TextMessage
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

from .._groups import single_error_context
from ..errors import InvalidValueError, TradeloopError
from ..urls import parse_url
from .asyncio_tcp import AsyncioTCPStream, connect_asyncio_tcp
from .frames import Close, FrameDecoder, Ping, WebSocketProtocolError

__all__ = [
    "BatchHandler",
    "ConnectError",
    "ConnectTimeoutError",
    "ConnectionClosedError",
    "HandshakeRejectedError",
    "StreamOpener",
    "Transport",
    "TransportError",
    "TransportName",
    "TrioWebsocketSocket",
    "WebSocket",
    "WsprotoSocket",
]

TransportName = Literal["wsproto", "trio-websocket"]

_DEFAULT_PORTS = {"ws": 80, "wss": 443}
_RECEIVE_SIZE = 65536
_HEAD_END = re.compile(rb"\n\r?\n")
"""The blank line ending an HTTP head, as h11 finds it (``h11._receivebuffer.blank_line_regex``)."""
_MAX_RESPONSE_HEAD = 16 * 1024
"""h11's default limit on an incomplete HTTP head."""

log = logging.getLogger(__name__)


class TransportError(TradeloopError):
    """A WebSocket could not be opened, or broke: the connection reconnects."""


class ConnectionClosedError(TransportError):
    """The peer closed the WebSocket (or the TCP stream under it)."""


class HandshakeRejectedError(TransportError):
    """The server refused the WebSocket opening handshake."""


class ConnectError(TransportError):
    """No connection: DNS lookup failed, the connection was refused or reset, TLS failed."""


class ConnectTimeoutError(TransportError):
    """The socket was not open (TCP, TLS and handshake) within the connect timeout."""


BatchHandler = Callable[[list[bytes | str]], list[str]]
"""Takes a batch of received messages without waiting; returns the text messages to send in reply."""


class WebSocket(Protocol):
    async def receive_batch(self) -> list[bytes | str]:
        """Wait for at least one message; return every message already received.

        Cancellation-safe: a cancelled call loses no message (the next call returns it)."""
        ...

    async def pump(self, handle: BatchHandler) -> NoReturn:
        """Hand every batch of received messages to ``handle`` and send its replies, until the
        socket fails (ConnectionClosedError). Cancellation-safe, as :meth:`receive_batch` is."""
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
        parts = parse_url(url, tuple(_DEFAULT_PORTS), "WebSocket URL")
        assert parts.hostname is not None  # parse_url requires a host
        resource = parts.path or "/"
        if parts.query:
            resource = f"{resource}?{parts.query}"
        return cls(parts.scheme, parts.hostname, parts.port or _DEFAULT_PORTS[parts.scheme], resource)


class WsprotoSocket:
    """A client WebSocket: wsproto for the handshake and what we send, :class:`FrameDecoder` for what we receive.

    Receiving is the hot path (BingX pushes, we send a few requests), so the server's frames are
    parsed by our own decoder, which returns a read's messages as plain ``bytes`` / ``str``.
    wsproto keeps what it does well: the HTTP/1.1 upgrade (checking the server's accept token,
    ``Upgrade``/``Connection`` headers and extensions) and masking the frames we send.

    The handshake must hand the decoder every byte after the server's response head: a server may
    send its first frames in the same TCP segment as the ``101`` response. Fed those bytes, wsproto
    would bury them in its own frame parser, out of public reach; parsing the response with h11
    ourselves would need the ``Sec-WebSocket-Key`` wsproto generated, which it keeps private. So
    wsproto is fed exactly the response head: the bytes up to the first blank line, found by the
    rule of h11 (wsproto's HTTP parser), ``\\n\\r?\\n``. h11 is left with no trailing data,
    and the rest of the read goes to the decoder. No private attribute of wsproto or h11 is used.

    After the handshake, pings are answered at once with a pong of the same payload. A close from
    the server is answered (unless we started closing) and raised as ConnectionClosedError once the
    messages before it have been returned. A protocol error fails the connection (RFC 6455 §7.1.7):
    a close frame with the error's code, then ConnectionClosedError.
    """

    def __init__(self, stream: anyio.abc.ByteStream) -> None:
        self._stream = stream
        self._read: Callable[[], Awaitable[bytes | bytearray]] = self._read_stream
        if isinstance(stream, anyio.abc.SocketStream) and sniffio.current_async_library() == "trio":
            self._read = _TrioSocketReader(stream.extra(anyio.abc.SocketAttribute.raw_socket)).read
        self._protocol = WSConnection(ConnectionType.CLIENT)
        self._decoder = FrameDecoder()
        self._send_lock = anyio.Lock()  # FIFO, like trio.StrictFIFOLock: frames go out in order
        self._closed_by_server: str | None = None
        self._received: list[bytes | str] = []

    async def handshake(self, target: _Target) -> None:
        await self._send(self._protocol.send(Request(host=target.host_header, target=target.resource)))
        received = bytearray()
        while (head_end := _HEAD_END.search(received)) is None:
            if len(received) > _MAX_RESPONSE_HEAD:
                raise ConnectionClosedError(f"no end of the HTTP response head in {len(received)} bytes")
            received += await self._receive_some()
        try:
            self._protocol.receive_data(bytes(received[: head_end.end()]))
        except RemoteProtocolError as exc:
            raise ConnectionClosedError(f"bad handshake response from the server: {exc}") from exc
        # A complete head is one response: wsproto turns it into AcceptConnection or RejectConnection.
        status = ""
        for event in self._protocol.events():
            if isinstance(event, AcceptConnection):
                await self._feed(received[head_end.end() :])
                return
            if isinstance(event, RejectConnection):
                status = f" (HTTP {event.status_code})"
        raise HandshakeRejectedError(f"server refused the WebSocket at {target.resource!r}{status}")

    async def receive_batch(self) -> list[bytes | str]:
        # Decoded messages wait in self._received until returned, so a receive cancelled in one of
        # its awaits (sending a pong, reading the socket) loses nothing: the next one returns them.
        messages = self._received
        while True:
            replies = self._take_events(messages)
            if replies:
                await self._send(replies)
            # Messages that came before the server's close frame are delivered first.
            if messages:
                self._received = []
                return messages
            if self._closed_by_server is not None:
                raise ConnectionClosedError(self._closed_by_server)
            await self._feed(await self._receive_some())

    async def pump(self, handle: BatchHandler) -> NoReturn:
        """See :meth:`WebSocket.pump`. On :class:`~tradeloop.streams.asyncio_tcp.AsyncioTCPStream`
        every read is decoded and handled in the loop's callback, so no task wakes per read."""
        stream = self._stream
        if not isinstance(stream, AsyncioTCPStream):
            await _pump_batches(self, handle)
        # What was decoded before (frames that came with the handshake's response) goes first.
        messages, self._received = self._received, []
        self._hand_over(stream, handle, messages)
        try:
            await stream.deliver(partial(self._on_data, stream, handle))
        except anyio.EndOfStream:
            raise ConnectionClosedError("the server closed the TCP connection") from None
        except _CLOSED_STREAM_ERRORS as exc:
            raise ConnectionClosedError(f"the connection broke: {exc!r}") from exc

    def _on_data(self, stream: AsyncioTCPStream, handle: BatchHandler, data: bytes) -> None:
        """One read, in the loop's callback: decode, handle, write the replies; raise at the end."""
        try:
            self._decoder.feed(data)
        except WebSocketProtocolError as exc:
            close_frame, error = self._protocol_failure(exc)
            if close_frame:
                stream.write_nowait(close_frame)
            raise error from exc
        self._hand_over(stream, handle, [])

    def _hand_over(self, stream: AsyncioTCPStream, handle: BatchHandler, messages: list[bytes | str]) -> None:
        """Hand ``messages`` and those decoded since to ``handle``; write its replies and the answers
        to pings and a close without waiting; raise ConnectionClosedError once the server closed."""
        replies = self._take_events(messages)
        if messages and (texts := handle(messages)):
            replies += self._encode_texts(texts)
        if replies:
            stream.write_nowait(replies)
        if self._closed_by_server is not None:
            raise ConnectionClosedError(self._closed_by_server)

    def _take_events(self, messages: list[bytes | str]) -> bytes:
        """Append the decoded messages to ``messages``; return the frames answering pings and a close."""
        replies = b""
        for event in self._decoder.events():
            if type(event) is bytes or type(event) is str:
                messages.append(event)
            elif isinstance(event, Ping):
                replies += self._protocol.send(Pong(event.payload))
            elif isinstance(event, Close):
                if self._protocol.state is ConnectionState.OPEN:
                    replies += self._protocol.send(CloseConnection(code=event.code, reason=event.reason))
                self._closed_by_server = f"closed by the server: code {event.code} {event.reason}".strip()
        return replies

    async def send_text(self, text: str) -> None:
        await self._send(self._encode_texts([text]))

    def _encode_texts(self, texts: list[str]) -> bytes:
        try:
            return b"".join(self._protocol.send(TextMessage(data=text)) for text in texts)
        except LocalProtocolError as exc:
            raise ConnectionClosedError(f"cannot send: {exc}") from exc

    async def close(self) -> None:
        """Send a close frame and wait for the server's."""
        if self._protocol.state is not ConnectionState.OPEN:
            return
        await self._send(self._protocol.send(CloseConnection(code=1000)))
        while not any(isinstance(event, Close) for event in self._decoder.events()):
            await self._feed(await self._receive_some())

    async def _feed(self, data: bytes | bytearray) -> None:
        """Decode ``data``; on a protocol error, fail the connection (RFC 6455 §7.1.7)."""
        try:
            self._decoder.feed(data)
        except WebSocketProtocolError as exc:
            close_frame, error = self._protocol_failure(exc)
            if close_frame:
                # Tell the server why, if it still listens; the protocol error is what we report.
                try:
                    await self._send(close_frame)
                except ConnectionClosedError as send_error:
                    log.debug("could not send the close frame after a protocol error: %s", send_error)
            raise error from exc

    def _protocol_failure(self, exc: WebSocketProtocolError) -> tuple[bytes, ConnectionClosedError]:
        """The close frame failing the connection (none if it is not open) and the error to raise."""
        close_frame = b""
        if self._protocol.state is ConnectionState.OPEN:
            close_frame = self._protocol.send(CloseConnection(code=exc.code))
        return close_frame, ConnectionClosedError(f"protocol error from the server: {exc}")

    async def _receive_some(self) -> bytes | bytearray:
        try:
            data = await self._read()
        except anyio.EndOfStream:
            data = b""
        except (*_CLOSED_STREAM_ERRORS, OSError) as exc:
            raise ConnectionClosedError(f"the connection broke: {exc!r}") from exc
        if not data:
            raise ConnectionClosedError("the server closed the TCP connection")
        return data

    async def _read_stream(self) -> bytes:
        return await self._stream.receive(_RECEIVE_SIZE)

    async def _send(self, data: bytes) -> None:
        async with self._send_lock:
            try:
                await self._stream.send(data)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as exc:
                raise ConnectionClosedError(f"cannot send: {exc!r}") from exc


class _TrioSocketReader:
    """Reads a plain TCP socket under Trio, waiting for readability *before* reading.

    Trio's ``recv`` (and anyio's stream over it) tries the read first and waits only when it
    fails. At live rates a push arrives alone, some time after the last one was decoded, so that
    first try always fails: a syscall and a raised ``BlockingIOError`` per push for nothing. So we
    wait first, unless the last read filled the buffer (then more is likely queued: read at once,
    after a checkpoint as Trio's ``recv`` does). In the full benchmark run at 2555a34, side by
    side with 5cda790 (medians of three), one frame per packet: 116.1 → 88.6 µs per push at
    2,000/s and 62.7 → 60.6 at 10,000/s; many frames per write: 112.9 → 100.7 at 1,000/s.
    Only for a plain TCP stream: under TLS the bytes on the socket are not the stream's.

    Raises OSError from the socket and ``trio.ClosedResourceError`` if the stream is closed while
    we wait; the end of the stream is ``b""``. Cancellation-safe: nothing is read after the last await.
    """

    __slots__ = ("_last_read_full", "_socket")

    def __init__(self, raw_socket: socket.socket) -> None:
        self._socket = raw_socket
        self._last_read_full = False

    async def read(self) -> bytes:
        if self._last_read_full:
            await trio.lowlevel.checkpoint()
        else:
            await trio.lowlevel.wait_readable(self._socket)
        while True:
            try:
                data = self._socket.recv(_RECEIVE_SIZE)
            except BlockingIOError:  # woken without data (or after a full read, none left): wait
                await trio.lowlevel.wait_readable(self._socket)
            else:
                self._last_read_full = len(data) == _RECEIVE_SIZE
                return data


async def _pump_batches(ws: WebSocket, handle: BatchHandler) -> NoReturn:
    """:meth:`WebSocket.pump` over :meth:`WebSocket.receive_batch`: a task wakes for every batch."""
    while True:
        for reply in handle(await ws.receive_batch()):
            await ws.send_text(reply)


class TrioWebsocketSocket:
    """trio-websocket behind the same interface (one message per batch)."""

    def __init__(self, connection: trio_websocket.WebSocketConnection) -> None:
        self._connection = connection

    async def pump(self, handle: BatchHandler) -> NoReturn:
        await _pump_batches(self, handle)

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


StreamOpener = Callable[[str, int, bool], Awaitable[anyio.abc.ByteStream]]
"""Opens the byte stream under a socket: ``(host, port, tls)``; TCP (and TLS) by default."""


async def open_tcp(host: str, port: int, tls: bool) -> anyio.abc.ByteStream:
    """TCP, and TLS over it for wss://, on whichever event loop runs.

    On asyncio, :class:`~tradeloop.streams.asyncio_tcp.AsyncioTCPStream` (reads without a syscall of
    its own per read); on Trio, anyio's stream, whose socket :class:`_TrioSocketReader` reads.
    """
    if sniffio.current_async_library() == "asyncio":
        return await connect_asyncio_tcp(host, port, ssl.create_default_context() if tls else None)
    if tls:
        return await anyio.connect_tcp(
            host, port, tls=True, ssl_context=ssl.create_default_context(), tls_standard_compatible=False
        )
    return await anyio.connect_tcp(host, port)


async def _open_trio_tcp(host: str, port: int, tls: bool) -> trio.SocketStream | trio.SSLStream[trio.SocketStream]:
    """trio-websocket's stream: Trio's own TCP (and TLS) stream, not anyio's wrapper around it."""
    if tls:
        return await trio.open_ssl_over_tcp_stream(
            host, port, ssl_context=ssl.create_default_context(), https_compatible=True
        )
    return await trio.open_tcp_stream(host, port)


class Transport:
    """Opens client WebSockets of one kind with the given bounds; see the module docstring.

    ``connect_timeout`` bounds opening (TCP, TLS and the handshake: TLS failures can hang);
    ``close_timeout`` bounds the closing handshake, after which the stream is closed regardless.
    """

    def __init__(
        self,
        kind: TransportName = "wsproto",
        *,
        connect_timeout: float = 10.0,
        close_timeout: float = 2.0,
        message_queue_size: int = 1024,
        open_stream: StreamOpener = open_tcp,
    ) -> None:
        if kind not in ("wsproto", "trio-websocket"):
            raise InvalidValueError(f"invalid transport {kind!r}: expected 'wsproto' or 'trio-websocket'")
        self.kind = kind
        self.connect_timeout = connect_timeout
        self.close_timeout = close_timeout
        self.message_queue_size = message_queue_size
        self._open_stream = open_stream

    @staticmethod
    def check_url(url: str) -> None:
        """Raise InvalidValueError unless ``url`` is a ws:// or wss:// URL with a host."""
        _Target.parse(url)

    @single_error_context
    @asynccontextmanager
    async def connect(self, url: str) -> AsyncIterator[WebSocket]:
        """Connect to ``url`` within ``connect_timeout``; close on exit.

        On exit the closing handshake is attempted (shielded, within ``close_timeout``) unless we
        are being cancelled: then the stream is closed at once (shutdown must not wait on a peer).
        Raises :class:`TransportError` (a subclass of it) for every way opening can fail, and
        InvalidValueError for a URL that is not ws:// or wss://.
        """
        target = _Target.parse(url)
        if self.kind == "trio-websocket" and sniffio.current_async_library() != "trio":
            raise InvalidValueError(
                "invalid transport 'trio-websocket' outside Trio: it is a Trio library; use 'wsproto' (the default)"
            )
        async with AsyncExitStack() as stack:
            stream: anyio.abc.ByteStream | trio.abc.Stream | None = None
            trio_websocket_nursery: trio.Nursery | None = None
            if self.kind == "trio-websocket":
                # trio-websocket's reader task needs a Trio nursery, ended after the stream closes.
                trio_websocket_nursery = await stack.enter_async_context(trio.open_nursery())
                stack.callback(trio_websocket_nursery.cancel_scope.cancel)
            try:
                with _connect_errors(target, self.connect_timeout), anyio.fail_after(self.connect_timeout):
                    tls = target.scheme == "wss"
                    socket: WsprotoSocket | TrioWebsocketSocket
                    if self.kind == "wsproto":
                        stream = await self._open_stream(target.hostname, target.port, tls)
                        socket = WsprotoSocket(stream)
                        await socket.handshake(target)
                    else:
                        assert trio_websocket_nursery is not None
                        if self._open_stream is not open_tcp:
                            raise InvalidValueError("the trio-websocket transport runs only on TCP or TLS streams")
                        stream = trio_stream = await _open_trio_tcp(target.hostname, target.port, tls)
                        connection = await trio_websocket.wrap_client_stream(
                            trio_websocket_nursery,
                            trio_stream,
                            target.host_header,
                            target.resource,
                            message_queue_size=self.message_queue_size,
                        )
                        socket = TrioWebsocketSocket(connection)
                try:
                    yield socket
                finally:
                    if anyio.current_effective_deadline() != -math.inf:
                        with (
                            anyio.move_on_after(self.close_timeout, shield=True),
                            # The peer may have gone first: then only the stream is left to close.
                            suppress(TransportError, *_CLOSED_STREAM_ERRORS),
                        ):
                            await socket.close()
            finally:
                if isinstance(stream, trio.abc.Stream):
                    await trio.aclose_forcefully(stream)
                elif stream is not None:
                    await anyio.aclose_forcefully(stream)


_CLOSED_STREAM_ERRORS = (
    anyio.BrokenResourceError,
    anyio.ClosedResourceError,
    trio.BrokenResourceError,
    trio.ClosedResourceError,
)
"""A stream broken or closed under us: anyio's (the default transport) or Trio's (trio-websocket)."""


@contextmanager
def _connect_errors(target: _Target, timeout: float) -> Iterator[None]:
    """Map what opening a socket can raise to :class:`TransportError` subclasses."""
    where = f"{target.hostname}:{target.port}"
    try:
        yield
    except TimeoutError as exc:
        raise ConnectTimeoutError(f"timeout: no WebSocket open to {where} within {timeout:g} s") from exc
    except socket.gaierror as exc:
        raise ConnectError(f"DNS: cannot resolve {target.hostname!r}: {exc.strerror or exc}") from exc
    except ConnectionRefusedError as exc:
        raise ConnectError(f"refused: nothing accepts connections on {where}") from exc
    except trio_websocket.HandshakeError as exc:
        raise HandshakeRejectedError(f"server at {where} refused the WebSocket: {exc!r}") from exc
    except (OSError, anyio.BrokenResourceError, trio.BrokenResourceError, ssl.SSLError) as exc:
        raise ConnectError(f"cannot connect to {where}: {_root_cause(exc)}") from exc


def _root_cause(exc: BaseException) -> str:
    """The first concrete cause: trio.open_tcp_stream raises OSError("all attempts ... failed")
    whose cause groups the per-address errors (refused, unreachable)."""
    cause = exc.__cause__
    while isinstance(cause, BaseExceptionGroup) and cause.exceptions:
        cause = cause.exceptions[0]
    if isinstance(cause, ConnectionRefusedError):
        return f"refused ({cause.strerror})"
    return str(cause or exc) or type(exc).__name__
