"""The load generator: a WebSocket server speaking BingX swap or Binance USDⓈ-M that outruns its clients.

Run as ``python -m benchmarks.feed [bingx|binance]``; it prints its WebSocket URL as the first line
of stdout and then takes one JSON command per line on stdin, answering each with one JSON line (see
``_main``). In the BingX dialect (the default) clients connect to ``ws://127.0.0.1:PORT/swap-market``,
subscribe with BingX requests and get BingX acks, a gzipped ``Ping`` every 5 s and, on command,
kline pushes. In the Binance dialect the URL is an origin: clients connect to USDⓈ-M's
``/market/ws…`` (bare pushes) or ``/market/stream…`` (combined pushes), subscribe with
``SUBSCRIBE`` requests or in the URL (``?streams=a/b``), and get RFC 6455 pings.

Why not the simulator: the benchmark must measure the client, so the server may not be the
bottleneck. trio-websocket pays a wsproto call and a ``send_all`` (one syscall, one scheduling
point) per message, ~15 µs, which caps a server near the rates the clients reach. Here wsproto
does the handshake and the few control messages, while the pushes are complete WebSocket frames
encoded before the clock starts and written many per ``send_all`` (or, in the paced runs' one
frame per packet mode, each on its own at its own time, as exchanges often send them). Send times are read from
``time.monotonic_ns()``, the system-wide clock the client processes read too, so latency is
server send → consumer receive on one clock.
"""

from __future__ import annotations

import json
import os
import select
import socket
import sys
import time
from collections.abc import Callable
from contextlib import AsyncExitStack, suppress
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

import trio
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    CloseConnection,
    Ping,
    RejectConnection,
    Request,
    TextMessage,
)

from .control import Handler, serve_commands
from .frames import binance_kline_push, binance_stream, gzip_text, kline_push, ws_frame, ws_ping, ws_text_frame

__all__ = ["main"]

_PING_EVERY = 5.0
_RECEIVE_SIZE = 65536
_SEND_CHUNK = 1 << 20
"""Burst bytes per ``send_all``: large enough that the server never waits on itself."""
_PACED_TICK = 0.001
_WAIT_LIMIT = 60.0
"""Bound on every wait for clients (subscriptions, disconnects)."""


@dataclass(eq=False)
class _Client:
    stream: trio.SocketStream
    ws: WSConnection = field(default_factory=lambda: WSConnection(ConnectionType.SERVER))
    topics: set[str] = field(default_factory=set)
    lock: trio.Lock = field(default_factory=trio.Lock)
    open: bool = False
    combined: bool = False
    """Binance: the socket is a ``/stream`` one, whose pushes are wrapped with their stream name."""

    async def send(self, data: bytes | memoryview) -> None:
        async with self.lock:
            await self.stream.send_all(data)


class _Dialect(Protocol):
    """What differs between the exchanges the server speaks: paths, requests, frames, heartbeats."""

    url_path: str
    """Appended to ``ws://127.0.0.1:PORT`` in the URL the server announces."""
    framings: tuple[bool, ...]
    """The push framings clients may ask for (``_Client.combined``): each prepared push is encoded in each."""

    def accept(self, target: str) -> tuple[bool, set[str]] | None:
        """(combined, topics subscribed in the URL) of a handshake to ``target``; None to reject it."""

    def request(self, text: str) -> tuple[bool, list[str], bytes | None]:
        """(subscribe or unsubscribe, the topics, the reply frame) of a client's text message."""

    def data_type(self, symbol_id: str) -> str:
        """The topic name of ``symbol_id``'s 1m klines."""

    def push(self, symbol_id: str, seq: int, combined: bool) -> bytes:
        """The complete frame of push ``seq`` of ``symbol_id``'s 1m klines."""

    def ping(self) -> bytes:
        """The server's heartbeat frame."""


class _BingX:
    url_path = "/swap-market"
    framings: tuple[bool, ...] = (False,)

    def accept(self, target: str) -> tuple[bool, set[str]] | None:
        return (False, set()) if target == self.url_path else None

    def request(self, text: str) -> tuple[bool, list[str], bytes | None]:
        if text == "Pong":
            return True, [], None
        request = json.loads(text)
        ack = {"id": request["id"], "code": 0, "msg": "", "dataType": "", "data": None}
        reply = ws_frame(gzip_text(json.dumps(ack, separators=(",", ":"))))
        return request.get("reqType", "sub") == "sub", [request["dataType"]], reply

    def data_type(self, symbol_id: str) -> str:
        return f"{symbol_id}@kline_1m"

    def push(self, symbol_id: str, seq: int, combined: bool) -> bytes:
        return ws_frame(kline_push(symbol_id, seq))

    def ping(self) -> bytes:
        return ws_frame(gzip_text("Ping"))


class _Binance:
    """USDⓈ-M's ``/market`` socket paths (klines flow there since 2026, BINANCE.md §1.1)."""

    url_path = ""
    framings: tuple[bool, ...] = (False, True)

    def accept(self, target: str) -> tuple[bool, set[str]] | None:
        url = urlsplit(target)
        for kind in ("/ws", "/stream"):
            base = "/market" + kind
            if url.path == base or url.path.startswith(base + "/"):
                # A trailing segment names a stream or, as ccxt's connection index (``/ws/0``), nothing.
                named = {part for part in url.path[len(base) :].split("/") if "@" in part}
                named |= {name for value in parse_qs(url.query).get("streams", []) for name in value.split("/")}
                return kind == "/stream", named
        return None

    def request(self, text: str) -> tuple[bool, list[str], bytes | None]:
        request = json.loads(text)
        reply = ws_text_frame(json.dumps({"result": None, "id": request["id"]}, separators=(",", ":")))
        return request["method"] == "SUBSCRIBE", list(request.get("params", [])), reply

    def data_type(self, symbol_id: str) -> str:
        return binance_stream(symbol_id)

    def push(self, symbol_id: str, seq: int, combined: bool) -> bytes:
        return ws_text_frame(binance_kline_push(symbol_id, seq, combined=combined))

    def ping(self) -> bytes:
        return ws_ping(b"feed")


DIALECTS: dict[str, _Dialect] = {"bingx": _BingX(), "binance": _Binance()}


@dataclass
class _Paced:
    """A prepared paced run: push ``i`` (seq ``i + 1``) goes to ``data_types[i % len]``, framed per client."""

    rate: float
    data_types: list[str]
    frames: dict[bool, list[bytes]]
    """By ``_Client.combined``."""


class FeedServer:
    def __init__(self, dialect: _Dialect) -> None:
        self.dialect = dialect
        self.clients: set[_Client] = set()
        self.changed = trio.Event()
        self._burst: dict[tuple[str, bool], bytes] = {}
        self._paced: _Paced | None = None

    # -- connections ------------------------------------------------------------------------------

    async def serve(self, stream: trio.SocketStream) -> None:
        # Trio sets it already; the one-frame-per-packet mode depends on it, so it is stated here.
        stream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, True)
        client = _Client(stream)
        self.clients.add(client)
        try:
            await self._read(client)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the client went away: nothing to clean but our own table
        finally:
            self.clients.discard(client)
            self._changed()
            with trio.move_on_after(1) as scope:
                scope.shield = True
                await stream.aclose()

    async def _read(self, client: _Client) -> None:
        text_parts: list[str] = []
        while True:
            data = await client.stream.receive_some(_RECEIVE_SIZE)
            if not data:
                return
            client.ws.receive_data(data)
            for event in client.ws.events():
                if isinstance(event, Request):
                    accepted = self.dialect.accept(event.target)
                    if accepted is None:
                        await client.send(client.ws.send(RejectConnection(status_code=404)))
                        return
                    client.combined, client.topics = accepted
                    await client.send(client.ws.send(AcceptConnection()))
                    client.open = True
                    self._changed()
                elif isinstance(event, TextMessage):
                    text_parts.append(event.data)
                    if event.message_finished:
                        await self._request(client, "".join(text_parts))
                        text_parts.clear()
                elif isinstance(event, Ping):
                    await client.send(client.ws.send(event.response()))
                elif isinstance(event, CloseConnection):
                    await client.send(client.ws.send(event.response()))
                    return

    async def _request(self, client: _Client, text: str) -> None:
        subscribe, data_types, reply = self.dialect.request(text)
        if subscribe:
            client.topics.update(data_types)
        else:
            client.topics.difference_update(data_types)
        if reply is not None:
            await client.send(reply)
            self._changed()

    def _changed(self) -> None:
        self.changed.set()
        self.changed = trio.Event()

    async def ping_forever(self) -> None:
        ping = self.dialect.ping()
        while True:
            await trio.sleep(_PING_EVERY)
            for client in tuple(self.clients):
                if client.open:
                    # A client that left since the tuple was taken: serve() cleans up after it.
                    with trio.move_on_after(1), suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                        await client.send(ping)

    def subscribers(self, data_type: str) -> list[_Client]:
        return [c for c in self.clients if data_type in c.topics]

    async def _wait_until(self, condition: Callable[[], bool]) -> None:
        with trio.fail_after(_WAIT_LIMIT):
            while not condition():
                await self.changed.wait()

    # -- commands ---------------------------------------------------------------------------------

    async def prepare_burst(self, symbol_id: str, count: int) -> dict[str, Any]:
        started = time.perf_counter()
        push, data_type = self.dialect.push, self.dialect.data_type(symbol_id)
        self._burst = {
            (data_type, combined): b"".join(push(symbol_id, seq, combined) for seq in range(1, count + 1))
            for combined in self.dialect.framings
        }
        return {"encode_s": time.perf_counter() - started}

    async def burst(self, symbol_id: str, sockets: int) -> dict[str, Any]:
        """Send the prepared burst of ``symbol_id`` to its ``sockets`` subscribers, all at once."""
        data_type = self.dialect.data_type(symbol_id)
        await self._wait_until(lambda: len(self.subscribers(data_type)) >= sockets)
        start_ns = time.monotonic_ns()
        async with trio.open_nursery() as nursery:
            for client in self.subscribers(data_type):
                nursery.start_soon(_send_chunked, client, memoryview(self._burst[data_type, client.combined]))
        return {"start_ns": start_ns, "end_ns": time.monotonic_ns()}

    async def prepare_paced(self, topics: list[str], rate: float, count: int) -> dict[str, Any]:
        started = time.perf_counter()
        data_types = [self.dialect.data_type(t) for t in topics]
        push = self.dialect.push
        frames = {
            combined: [push(topics[i % len(topics)], i + 1, combined) for i in range(count)]
            for combined in self.dialect.framings
        }
        self._paced = _Paced(rate, data_types, frames)
        return {"encode_s": time.perf_counter() - started}

    async def paced(self, sockets: int, per_packet: bool = False) -> dict[str, Any]:
        """Send the prepared pushes at their rate; the send time of each push.

        By default the pushes go out in 1 ms ticks, a client's pushes of one tick in one
        ``send_all``. With ``per_packet`` every push is written on its own, at its own time
        (:func:`_send_spaced`), as exchanges often send them: one push per TCP segment.
        """
        paced = self._paced
        assert paced is not None, "prepare_paced first"
        await self._wait_until(
            lambda: all(len(self.subscribers(d)) >= sockets for d in paced.data_types)
        )
        routes = {d: self.subscribers(d) for d in paced.data_types}
        if per_packet:
            return await _send_spaced(paced, routes)
        total = len(paced.frames[False])
        send_ns = [0] * total
        start = trio.current_time()
        start_ns = time.monotonic_ns()
        sent = 0
        while sent < total:
            due = min(total, int((trio.current_time() - start) * paced.rate) + 1)
            batches: dict[_Client, list[bytes]] = {}
            for i in range(sent, due):
                for client in routes[paced.data_types[i % len(paced.data_types)]]:
                    batches.setdefault(client, []).append(paced.frames[client.combined][i])
            now_ns = time.monotonic_ns()
            for i in range(sent, due):
                send_ns[i] = now_ns
            for client, frames in batches.items():
                await client.send(b"".join(frames))
            sent = due
            await trio.sleep_until(max(start + sent / paced.rate, trio.current_time() + _PACED_TICK))
        return {"start_ns": start_ns, "end_ns": time.monotonic_ns(), "send_ns": send_ns}

    async def wait_idle(self) -> dict[str, Any]:
        """Wait until every client has disconnected (between runs)."""
        await self._wait_until(lambda: not self.clients)
        return {}


async def _send_spaced(paced: _Paced, routes: dict[str, list[_Client]]) -> dict[str, Any]:
    """Write each push on its own at ``start + i / rate``, from a thread: one push per TCP segment.

    Trio's timers have millisecond resolution, so in Trio the pushes of a tick would leave back to
    back and a client would often read several in one ``receive_some``. A thread's ``time.sleep``
    keeps them apart (at 10,000 msg/s, 100 µs). The thread writes to the sockets' file descriptors
    (non-blocking, TCP_NODELAY) while the clients' locks are held, so no ping lands inside a push;
    the server's Trio tasks have nothing else to do meanwhile.
    """
    clients = {client for subscribers in routes.values() for client in subscribers}
    async with AsyncExitStack() as stack:
        for client in clients:
            await stack.enter_async_context(client.lock)
        # Duplicates: if a client leaves mid-run and serve() closes its socket, the thread's writes
        # fail instead of landing on whatever file reuses the number.
        duplicates = {client: os.dup(client.stream.socket.fileno()) for client in clients}
        for fd in duplicates.values():
            stack.callback(os.close, fd)
        descriptors = {d: [(duplicates[c], c.combined) for c in subscribers] for d, subscribers in routes.items()}
        return await trio.to_thread.run_sync(_write_spaced, paced, descriptors)


def _write_spaced(paced: _Paced, descriptors: dict[str, list[tuple[int, bool]]]) -> dict[str, Any]:
    total = len(paced.frames[False])
    send_ns = [0] * total
    start_ns = time.monotonic_ns()
    for i in range(total):
        delay_ns = start_ns + i * 1e9 / paced.rate - time.monotonic_ns()
        if delay_ns > 0:
            time.sleep(delay_ns / 1e9)
        send_ns[i] = time.monotonic_ns()
        for fd, combined in descriptors[paced.data_types[i % len(paced.data_types)]]:
            _write_all(fd, paced.frames[combined][i])
    return {"start_ns": start_ns, "end_ns": time.monotonic_ns(), "send_ns": send_ns}


def _write_all(fd: int, data: bytes) -> None:
    """All of ``data`` to a non-blocking socket, waiting (bounded) whenever its buffer is full."""
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:
            _, writable, _ = select.select([], [fd], [], _WAIT_LIMIT)
            if not writable:
                raise TimeoutError(f"a client read nothing for {_WAIT_LIMIT:g} s") from None


async def _send_chunked(client: _Client, blob: memoryview) -> None:
    # Chunks end mid-frame: hold the lock throughout, or a ping could land inside a frame.
    async with client.lock:
        for offset in range(0, len(blob), _SEND_CHUNK):
            await client.stream.send_all(blob[offset : offset + _SEND_CHUNK])


async def _main(dialect: _Dialect) -> None:
    server = FeedServer(dialect)
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, server.serve, 0, host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
        nursery.start_soon(server.ping_forever)
        handlers: dict[str, Handler] = {
            "prepare_burst": server.prepare_burst,
            "burst": server.burst,
            "prepare_paced": server.prepare_paced,
            "paced": server.paced,
            "wait_idle": server.wait_idle,
        }
        await serve_commands({"url": f"ws://127.0.0.1:{port}{dialect.url_path}"}, handlers)
        nursery.cancel_scope.cancel()


def main() -> None:
    trio.run(_main, DIALECTS[sys.argv[1] if len(sys.argv) > 1 else "bingx"])


if __name__ == "__main__":
    main()
