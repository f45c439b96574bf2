"""WsprotoSocket against a loopback server, on both event loops: what a connection relies on.

Each test serves one connection with a script written with wsproto's server side and raw frames
(tests/test_frames.py builds them). On Trio the socket is read by ``_TrioSocketReader``; on
asyncio by ``AsyncioTCPStream``, whose ``pump`` decodes and hands over every read in the
loop's own callback. Both ways of reading are run through the same scripts: ``receive_batch``
(a task waits for each batch) and ``pump`` (a handler takes each batch and returns replies).
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import anyio
import anyio.abc
import pytest
import trustme
from anyio.streams.tls import TLSStream
from test_frames import BINARY, CLOSE, PING, PONG, TEXT, close_frame, frame
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, CloseConnection, Event, RejectConnection, Request, TextMessage
from wsproto.events import Pong as WsprotoPong

from tradeloop.streams.asyncio_tcp import AsyncioTCPStream
from tradeloop.streams.transport import (
    ConnectError,
    ConnectionClosedError,
    HandshakeRejectedError,
    Transport,
    WebSocket,
    WsprotoSocket,
    _Target,
    open_tcp,
)

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["trio", "asyncio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


class Peer:
    """The server end of one loopback connection: wsproto to read, raw bytes written as a test likes."""

    def __init__(self, stream: anyio.abc.ByteStream) -> None:
        self.stream = stream
        self.ws = WSConnection(ConnectionType.SERVER)

    async def send(self, data: bytes) -> None:
        await self.stream.send(data)

    async def receive(self) -> bytes:
        """The next bytes from the client; ``b""`` once it closed its end."""
        try:
            return await self.stream.receive()
        except (anyio.EndOfStream, anyio.BrokenResourceError):
            return b""

    async def next_event(self) -> Event:
        while (event := next(self.ws.events(), None)) is None:
            data = await self.receive()
            assert data, "the client closed the TCP connection"
            self.ws.receive_data(data)
        return event

    async def accept(self) -> bytes:
        """Read the upgrade request; the bytes of the 101 response, to be sent with whatever follows."""
        assert isinstance(await self.next_event(), Request)
        return self.ws.send(AcceptConnection())

    async def expect_close(self, code: int, reason: str = "") -> CloseConnection:
        event = await self.next_event()
        assert isinstance(event, CloseConnection) and (event.code, event.reason) == (code, reason)
        return event


@asynccontextmanager
async def loopback_server(
    script: Callable[[Peer], Awaitable[None]], tls: ssl.SSLContext | None = None
) -> AsyncIterator[str]:
    """Serve one connection with ``script`` (over TLS with ``tls``); yield the URL. The script's
    failures fail the test."""
    async with anyio.create_task_group() as nursery:
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
        port = listener.extra(anyio.abc.SocketAttribute.local_port)

        async def serve() -> None:
            async with listener:
                (socket_listener,) = listener.listeners
                async with await socket_listener.accept() as tcp:
                    if tls is None:
                        await script(Peer(tcp))
                        return
                    try:
                        # Not standard-compatible: the client closes TCP without TLS's close_notify.
                        stream = await TLSStream.wrap(tcp, server_side=True, ssl_context=tls, standard_compatible=False)
                    except (anyio.BrokenResourceError, anyio.EndOfStream):
                        return  # the client refused the handshake: what it raised is the test's to check
                    async with stream:
                        await script(Peer(stream))

        nursery.start_soon(serve)
        yield f"ws://127.0.0.1:{port}/swap-market" if tls is None else f"wss://localhost:{port}/swap-market"


def client(url: str) -> AbstractAsyncContextManager[WebSocket]:
    return Transport("wsproto", connect_timeout=5, close_timeout=5, message_queue_size=1).connect(url)


Receiver = Callable[[WebSocket], Awaitable[list[bytes | str]]]


async def by_receive_batch(ws: WebSocket) -> list[bytes | str]:
    return await ws.receive_batch()


async def by_pump(ws: WebSocket) -> list[bytes | str]:
    """One batch through ``pump``: the handler keeps it and stops the pump (or the socket ends it)."""
    batches: list[list[bytes | str]] = []
    with anyio.CancelScope() as scope:

        def handle(batch: list[bytes | str]) -> list[str]:
            batches.append(batch)
            scope.cancel()
            return []

        try:
            await ws.pump(handle)
        except ConnectionClosedError:
            if not batches:
                raise  # else it ended right after the batch: the next call raises it again
    (batch,) = batches
    return batch


@pytest.fixture(params=[by_receive_batch, by_pump], ids=["receive_batch", "pump"])
def receive(request: pytest.FixtureRequest) -> Receiver:
    receiver: Receiver = request.param
    return receiver


async def test_the_default_stream_reads_without_a_task_per_read_on_asyncio(anyio_backend: str) -> None:
    async def script(peer: Peer) -> None:
        await peer.send(await peer.accept())
        await peer.expect_close(1000)
        await peer.send(frame(CLOSE))

    with anyio.fail_after(10):
        async with loopback_server(script) as url:
            stream = await open_tcp("127.0.0.1", _Target.parse(url).port, tls=False)
            async with stream:
                assert isinstance(stream, AsyncioTCPStream) == (anyio_backend == "asyncio")
                ws = WsprotoSocket(stream)
                await ws.handshake(_Target.parse(url))
                await ws.close()


async def test_frames_sent_with_the_handshake_response_are_not_lost(receive: Receiver) -> None:
    async def script(peer: Peer) -> None:
        # One write: the 101 response, then frames, the last one cut in two.
        tail = frame(BINARY, b"third" * 40)
        await peer.send(await peer.accept() + frame(BINARY, b"first") + frame(TEXT, b"second") + tail[:7])
        await anyio.sleep(0.05)
        await peer.send(tail[7:])
        event = await peer.next_event()
        assert isinstance(event, TextMessage) and event.data == "subscribe"
        close = await peer.expect_close(1000)
        await peer.send(peer.ws.send(close.response()))

    with anyio.fail_after(10):
        async with loopback_server(script) as url, client(url) as ws:
            received: list[bytes | str] = []
            while len(received) < 3:
                received += await receive(ws)
            assert received == [b"first", "second", b"third" * 40]
            await ws.send_text("subscribe")


async def test_pings_are_answered_at_once_with_their_payload(receive: Receiver) -> None:
    async def script(peer: Peer) -> None:
        await peer.send(await peer.accept() + frame(PING, b"are you there") + frame(PONG, b"unasked"))
        event = await peer.next_event()
        assert isinstance(event, WsprotoPong) and event.payload == b"are you there"
        await peer.send(frame(BINARY, b"data"))
        await peer.expect_close(1000)
        await peer.send(frame(CLOSE))

    with anyio.fail_after(10):
        async with loopback_server(script) as url, client(url) as ws:
            assert await receive(ws) == [b"data"]


async def test_a_server_close_is_answered_after_the_messages_before_it(receive: Receiver) -> None:
    async def script(peer: Peer) -> None:
        await peer.send(await peer.accept() + frame(BINARY, b"last push") + close_frame(4000, b"deploying"))
        await peer.expect_close(4000, "deploying")

    with anyio.fail_after(10):
        async with loopback_server(script) as url, client(url) as ws:
            assert await receive(ws) == [b"last push"]
            with pytest.raises(ConnectionClosedError, match="4000 deploying"):
                await receive(ws)


async def test_a_protocol_error_fails_the_connection_with_its_close_code(receive: Receiver) -> None:
    async def script(peer: Peer) -> None:
        await peer.send(await peer.accept())
        assert isinstance(await peer.next_event(), TextMessage)
        await peer.send(frame(TEXT, b"\xff"))
        await peer.expect_close(1007)

    with anyio.fail_after(10):
        async with loopback_server(script) as url, client(url) as ws:
            await ws.send_text("subscribe")
            with pytest.raises(ConnectionClosedError, match="protocol error from the server: text message"):
                await receive(ws)


async def test_messages_larger_than_a_read_arrive_whole_and_in_order(receive: Receiver) -> None:
    # Several reads' worth in one write: the socket is read again at once after a full read.
    big = [bytes([n]) * 200_000 for n in range(3)]

    async def script(peer: Peer) -> None:
        await peer.send(await peer.accept() + b"".join(frame(BINARY, payload) for payload in big))
        await peer.expect_close(1000)
        await peer.send(frame(CLOSE))

    with anyio.fail_after(10):
        async with loopback_server(script) as url, client(url) as ws:
            received: list[bytes | str] = []
            while len(received) < len(big):
                received += await receive(ws)
            assert received == big


async def test_a_receive_cancelled_while_waiting_loses_nothing(receive: Receiver) -> None:
    sent = anyio.Event()

    async def script(peer: Peer) -> None:
        await peer.send(await peer.accept())
        await sent.wait()
        await peer.send(frame(BINARY, b"after the cancel"))
        await peer.expect_close(1000)
        await peer.send(frame(CLOSE))

    with anyio.fail_after(10):
        async with loopback_server(script) as url, client(url) as ws:
            with anyio.move_on_after(0.05) as waited:
                await receive(ws)
            assert waited.cancelled_caught
            sent.set()
            assert await receive(ws) == [b"after the cancel"]


async def test_a_tcp_connection_dropped_without_a_close_frame_is_a_closed_error(receive: Receiver) -> None:
    async def script(peer: Peer) -> None:
        await peer.send(await peer.accept() + frame(BINARY, b"last"))
        await peer.stream.aclose()

    with anyio.fail_after(10):
        async with loopback_server(script) as url, client(url) as ws:
            assert await receive(ws) == [b"last"]
            with pytest.raises(ConnectionClosedError, match="the server closed the TCP connection"):
                await receive(ws)


async def test_a_stream_closed_under_a_waiting_receive_is_a_closed_error(receive: Receiver) -> None:
    async def script(peer: Peer) -> None:
        await peer.send(await peer.accept())
        assert await peer.receive() == b""  # until the client's end closes

    with anyio.fail_after(10):
        async with loopback_server(script) as url:
            target = _Target.parse(url)
            stream = await open_tcp("127.0.0.1", target.port, tls=False)
            ws = WsprotoSocket(stream)
            await ws.handshake(target)

            async def close_soon() -> None:
                await anyio.sleep(0.05)
                await stream.aclose()

            async with anyio.create_task_group() as nursery:
                nursery.start_soon(close_soon)
                with pytest.raises(ConnectionClosedError, match="the connection broke"):
                    await receive(ws)
                nursery.cancel_scope.cancel()


async def test_a_refused_handshake_names_the_status() -> None:
    async def script(peer: Peer) -> None:
        assert isinstance(await peer.next_event(), Request)
        await peer.send(peer.ws.send(RejectConnection(status_code=403)))

    refused = pytest.RaisesExc(HandshakeRejectedError, match=r"'/swap-market' \(HTTP 403\)")
    with anyio.fail_after(10):
        async with loopback_server(script) as url:
            with pytest.RaisesGroup(refused, allow_unwrapped=True, flatten_subgroups=True):
                async with client(url):
                    pytest.fail("the handshake was refused")


async def test_a_wss_socket_reads_and_closes_over_tls(
    anyio_backend: str, receive: Receiver, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """wss:// with the default opener: TLS verified against the system's trust store (here a
    throwaway CA put there through ``SSL_CERT_FILE``), the host name checked, frames read through
    TLS (on asyncio by the TLS transport under our protocol), the close handshake completed."""
    ca = trustme.CA()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(server_tls)

    async def script(peer: Peer) -> None:
        await peer.send(await peer.accept() + frame(BINARY, b"over tls"))
        close = await peer.expect_close(1000)
        await peer.send(peer.ws.send(close.response()))

    with anyio.fail_after(10):
        async with loopback_server(script, server_tls) as url, client(url) as ws:
            assert await receive(ws) == [b"over tls"]


async def test_a_wss_server_the_trust_store_does_not_know_is_refused(anyio_backend: str) -> None:
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    trustme.CA().issue_cert("localhost").configure_cert(server_tls)

    async def script(peer: Peer) -> None:
        pytest.fail("the TLS handshake succeeded")

    refused = pytest.RaisesExc(ConnectError, match="CERTIFICATE_VERIFY_FAILED")
    with anyio.fail_after(10):
        async with loopback_server(script, server_tls) as url:
            with pytest.RaisesGroup(refused, allow_unwrapped=True, flatten_subgroups=True):
                async with client(url):
                    pytest.fail("an unknown certificate was accepted")


# --- pump: the handler's side ---------------------------------------------------------------------


async def test_pump_sends_the_handlers_replies_and_hands_over_every_batch_in_order() -> None:
    pushes = [f"push {n}".encode() for n in range(50)]

    async def script(peer: Peer) -> None:
        await peer.send(await peer.accept())
        for push in pushes:  # one write each: as many reads as the kernel makes of them
            await peer.send(frame(BINARY, push) + frame(TEXT, b"Ping"))
        for _ in pushes:
            event = await peer.next_event()
            assert isinstance(event, TextMessage) and event.data == "Pong"
        await peer.send(close_frame(1000, b"done"))
        await peer.expect_close(1000, "done")

    received: list[bytes | str] = []

    def handle(batch: list[bytes | str]) -> list[str]:
        received.extend(message for message in batch if message != "Ping")
        return ["Pong" for message in batch if message == "Ping"]

    with anyio.fail_after(10):
        async with loopback_server(script) as url, client(url) as ws:
            with pytest.raises(ConnectionClosedError, match="code 1000 done"):
                await ws.pump(handle)
    assert received == pushes


async def test_an_error_in_the_handler_comes_out_of_pump_and_the_socket_still_closes() -> None:
    async def script(peer: Peer) -> None:
        await peer.send(await peer.accept() + frame(BINARY, b"poison"))
        await peer.expect_close(1000)
        await peer.send(frame(CLOSE))

    def handle(batch: list[bytes | str]) -> list[str]:
        raise LookupError(f"a bug in the handler, at {batch}")

    with anyio.fail_after(10):
        async with loopback_server(script) as url, client(url) as ws:
            with pytest.raises(LookupError, match="poison"):
                await ws.pump(handle)


async def test_a_peer_flooding_an_idle_reader_is_paused_not_buffered_without_bound(anyio_backend: str) -> None:
    """Nobody reads for a while: the peer's writes stall once the kernel's and our buffers fill
    (on asyncio the stream stops reading at its high-water mark), and everything it sent still
    arrives, in order, once the reader comes back."""
    chunk = bytes(range(256)) * 256  # 64 KiB
    chunks = 400  # 25 MiB: more than the kernel's buffers and the stream's high-water mark
    sent = 0

    async def script(peer: Peer) -> None:
        nonlocal sent
        await peer.send(await peer.accept())
        for _ in range(chunks):
            await peer.send(frame(BINARY, chunk))
            sent += 1
        await peer.expect_close(1000)
        await peer.send(frame(CLOSE))

    with anyio.fail_after(30):
        async with loopback_server(script) as url, client(url) as ws:
            await anyio.sleep(0.5)
            assert 0 < sent < chunks / 2, "the peer was not held back by a reader that does not read"
            received = 0
            while received < chunks:
                for message in await ws.receive_batch():
                    assert message == chunk
                    received += 1
