"""The bare floor on asyncio+uvloop: :mod:`benchmarks.client_floor`'s work on cryptofeed's event loop.

asyncio reads a socket through a protocol whose ``data_received`` the loop calls with each read:
no task wakes to read. Here that callback parses the WebSocket frames (tradeloop's
:class:`~tradeloop.streams.frames.FrameDecoder`) and decodes each push with msgspec, as the
Trio floor does, and then either counts the candles in the callback itself (the floor: all work
in the socket's callback, the design of cryptofeed's feeds) or, with ``consumer_task``, hands
them to one consumer task through an ``asyncio.Queue`` (the least a client pays whose consumers
run in tasks of their own). The same feeds and dialects as the Trio floor.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, cast
from urllib.parse import urlsplit

import uvloop
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, Request, TextMessage

from tradeloop.streams.frames import FrameDecoder

from .client import Meter, final_seqs
from .client_floor import DIALECTS, Dialect, Ping

__all__ = ["run"]

_HEAD_END = b"\r\n\r\n"


class _FeedProtocol(asyncio.Protocol):
    """The WebSocket handshake, then each read's candles to ``deliver`` (True ends the run)."""

    def __init__(self, url: str, dialect: Dialect, symbol_ids: list[str], deliver: Callable[[list[int]], bool]):
        self._url, self._dialect, self._symbol_ids, self._deliver = url, dialect, symbol_ids, deliver
        self._ws = WSConnection(ConnectionType.CLIENT)
        self._decoder = FrameDecoder()
        self._head = b""
        self._transport: asyncio.Transport | None = None
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.stopping = False
        """The run is over and closes the socket: its end is no error (nobody awaits ``done`` then)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCP transport is not registered as an asyncio.Transport, though it is one.
        self._transport = cast(asyncio.Transport, transport)
        parts = urlsplit(self._url)
        self._transport.write(self._ws.send(Request(host=parts.netloc, target=parts.path)))

    def data_received(self, data: bytes) -> None:
        assert self._transport is not None
        if self._head is not None:
            self._head += data
            if _HEAD_END not in self._head:
                return
            head, _, rest = self._head.partition(_HEAD_END)
            self._head = None  # type: ignore[assignment]
            self._ws.receive_data(head + _HEAD_END)
            if not any(isinstance(event, AcceptConnection) for event in self._ws.events()):
                self.done.set_exception(ConnectionError(f"the feed server refused the WebSocket: {head[:80]!r}"))
                return
            requests = self._dialect.subscribe(self._symbol_ids)
            self._transport.write(b"".join(self._ws.send(TextMessage(text)) for text in requests))
            data = rest
        self._decoder.feed(data)
        seq_of = self._dialect.seq
        seqs: list[int] = []
        for event in self._decoder.events():
            if type(event) is not bytes and type(event) is not str:
                continue
            try:
                seq = seq_of(event)
            except Ping:
                self._transport.write(self._ws.send(TextMessage("Pong")))
                continue
            if seq is not None:
                seqs.append(seq)
        if seqs and self._deliver(seqs) and not self.done.done():
            self.done.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done() and not self.stopping:
            self.done.set_exception(exc or ConnectionError("the feed server closed the connection"))


async def _run(spec: dict[str, Any], meter: Meter) -> None:
    symbol_ids = spec["symbols"]
    dialect = DIALECTS[spec.get("exchange", "bingx")]
    url = spec["url"] + dialect.path
    parts = urlsplit(url)
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[list[int]] = asyncio.Queue()

    def to_queue(seqs: list[int]) -> bool:
        queue.put_nowait(seqs)
        return False

    def in_callback(seqs: list[int]) -> bool:
        return meter.seen(0, seqs)

    transport, protocol = await loop.create_connection(
        lambda: _FeedProtocol(url, dialect, symbol_ids, to_queue if spec.get("consumer_task") else in_callback),
        parts.hostname,
        parts.port,
    )
    try:
        async with asyncio.timeout(spec["timeout"]):
            if spec.get("consumer_task"):
                consumer_done = False
                while not consumer_done:
                    consumer_done = meter.seen(0, await queue.get())
            else:
                await protocol.done
    finally:
        protocol.stopping = True
        transport.close()


def run(spec: dict[str, Any]) -> dict[str, Any]:
    meter = Meter(spec["total"], 1, final_seqs(len(spec["symbols"]), spec["total"]), waiting=len(spec["symbols"]))
    uvloop.run(_run(spec, meter))
    return meter.result(keep_times=spec["run"] == "paced")
