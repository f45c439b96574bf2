"""The bare-Trio floor: the least work a Trio client can do per push, over the same socket as the clients.

One Trio task reads the socket, tradeloop's sans-IO
:class:`~tradeloop.streams.frames.FrameDecoder` parses the WebSocket frames, and every push is
gunzipped and its JSON parsed by msgspec into typed candles. Nothing else: no routing, no
validation, no candle value of a library, no channel, no second task (the Meter's bookkeeping is
the same as every client's). Whatever a client adds costs more, so its CPU per message on the same
feed is the floor no Trio client can beat, and the share of it that is event loop and socket.
The socket is read the cheapest way we know on Trio: wait for readability first unless the last
read filled the buffer (as tradeloop's transport does; Trio's ``receive_some`` tries the read
first, which fails once per push at live rates: 10-15 µs more per push, measured side by side).

With ``consumer_task`` in the spec, the reading task hands each read's candles to a second task
through a Trio memory channel, and that task does the Meter's bookkeeping: the least a library
pays to deliver pushes to a consumer that runs in a task of its own (tradeloop's subscribers,
ccxt.pro's ``watch_*`` callers), against the one task of the floor. Per push it adds a wake-up
of that task, which Trio runs in a second scheduler pass.

The feed is BingX's dialect (gzip frames, ``reqType: sub``) or, with ``"exchange": "binance"``,
Binance's (text frames on the origin's ``/market/ws``, one ``SUBSCRIBE``): :class:`Dialect`.

wsproto does the opening handshake and masks what we send; it is fed exactly the server's
response head, and the decoder everything after it (see ``WsprotoSocket.handshake`` for why).
"""

from __future__ import annotations

import json
import math
import socket
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import msgspec
import trio
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, Request, TextMessage

from tradeloop.streams.frames import FrameDecoder

from .client import Meter, final_seqs
from .floor import Candle
from .frames import binance_stream

__all__ = ["DIALECTS", "Dialect", "Ping", "run"]

_RECEIVE_SIZE = 65536
_HEAD_END = b"\r\n\r\n"


class _Message(msgspec.Struct):
    """A BingX push's candles; acks carry none (msgspec skips every other field)."""

    data: list[Candle] | None = None


class _BinanceCandle(msgspec.Struct):
    c: str


class _BinancePush(msgspec.Struct):
    """A Binance kline event (``k`` its candle); a reply to SUBSCRIBE carries none."""

    k: _BinanceCandle | None = None


_decode = msgspec.json.Decoder(_Message).decode
_decode_binance = msgspec.json.Decoder(_BinancePush).decode


@dataclass(frozen=True)
class Dialect:
    """How the floor talks to the feed: where, how it subscribes, and a data frame's sequence number."""

    path: str
    """Added to the spec's URL (Binance's is an origin)."""
    subscribe: Callable[[list[str]], list[str]]
    """The request texts that subscribe the symbols' 1m klines."""
    seq: Callable[[bytes | str], int | None]
    """A data frame's close (its push's sequence number); None for a frame without a candle.
    Raises :class:`Ping` for BingX's text ping, which wants its "Pong"."""


class Ping(Exception):
    """BingX's application-level ping (gzip "Ping"): the floor answers "Pong"."""


def _bingx_seq(frame: bytes | str) -> int | None:
    text = zlib.decompress(frame, 31) if isinstance(frame, bytes) else frame.encode()
    if text == b"Ping":
        raise Ping
    candles = _decode(text).data
    return int(candles[-1].c) if candles else None


def _binance_seq(frame: bytes | str) -> int | None:
    candle = _decode_binance(frame).k
    return int(candle.c) if candle is not None else None


DIALECTS = {
    "bingx": Dialect(
        path="",
        subscribe=lambda ids: [
            json.dumps({"id": str(n), "reqType": "sub", "dataType": f"{symbol_id}@kline_1m"})
            for n, symbol_id in enumerate(ids)
        ],
        seq=_bingx_seq,
    ),
    "binance": Dialect(
        path="/market/ws",
        subscribe=lambda ids: [
            json.dumps({"method": "SUBSCRIBE", "params": [binance_stream(symbol_id) for symbol_id in ids], "id": 1})
        ],
        seq=_binance_seq,
    ),
}


async def _receive_some(stream: trio.SocketStream) -> bytes | bytearray:
    data = await stream.receive_some(_RECEIVE_SIZE)
    if not data:
        raise ConnectionError("the feed server closed the connection")
    return data


async def _handshake(stream: trio.SocketStream, ws: WSConnection, url: str) -> bytes:
    """The opening handshake; returns what the server sent after its response head."""
    parts = urlsplit(url)
    await stream.send_all(ws.send(Request(host=parts.netloc, target=parts.path)))
    received = b""
    while _HEAD_END not in received:
        received += await _receive_some(stream)
    head, _, rest = received.partition(_HEAD_END)
    ws.receive_data(head + _HEAD_END)
    if not any(isinstance(event, AcceptConnection) for event in ws.events()):
        raise ConnectionError(f"the feed server refused the WebSocket: {head[:80]!r}")
    return rest


async def _read_ready(raw: socket.socket, last_read_full: bool) -> bytes:
    """One read, waiting for readability first unless the last read filled the buffer."""
    if last_read_full:
        await trio.lowlevel.checkpoint()
    else:
        await trio.lowlevel.wait_readable(raw)
    while True:
        try:
            data = raw.recv(_RECEIVE_SIZE)
        except BlockingIOError:
            await trio.lowlevel.wait_readable(raw)
        else:
            if not data:
                raise ConnectionError("the feed server closed the connection")
            return data


Deliver = Callable[[list[int]], bool]
"""Takes the sequence numbers of one read's candles; True once the run is over."""


async def _receive(url: str, dialect: Dialect, symbol_ids: list[str], deliver: Deliver) -> None:
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    stream = await trio.open_tcp_stream(parts.hostname, parts.port)
    async with stream:
        ws = WSConnection(ConnectionType.CLIENT)
        decoder = FrameDecoder()
        decoder.feed(await _handshake(stream, ws, url + dialect.path))
        await stream.send_all(b"".join(ws.send(TextMessage(text)) for text in dialect.subscribe(symbol_ids)))
        raw: socket.socket = stream.socket._sock  # type: ignore[attr-defined]  # plain TCP: its bytes are the stream's
        last_read_full = False
        seq_of = dialect.seq
        while True:
            seqs: list[int] = []
            for event in decoder.events():
                if type(event) is not bytes and type(event) is not str:
                    continue  # a control frame: the feed's pings want no pong, and its close ends the run
                try:
                    seq = seq_of(event)
                except Ping:
                    await stream.send_all(ws.send(TextMessage("Pong")))
                    continue
                if seq is not None:
                    seqs.append(seq)
            if seqs and deliver(seqs):
                return
            data = await _read_ready(raw, last_read_full)
            last_read_full = len(data) == _RECEIVE_SIZE
            decoder.feed(data)


def run(spec: dict[str, Any]) -> dict[str, Any]:
    symbol_ids = spec["symbols"]
    dialect = DIALECTS[spec.get("exchange", "bingx")]
    meter = Meter(spec["total"], 1, final_seqs(len(symbol_ids), spec["total"]), waiting=len(symbol_ids))

    async def consume(candles: trio.MemoryReceiveChannel[list[int]]) -> None:
        async for seqs in candles:
            if meter.seen(0, seqs):
                return

    def deliver_to(send: trio.MemorySendChannel[list[int]]) -> Deliver:
        def deliver(seqs: list[int]) -> bool:
            send.send_nowait(seqs)
            return False

        return deliver

    async def main() -> None:
        with trio.fail_after(spec["timeout"]):
            if not spec.get("consumer_task"):
                await _receive(spec["url"], dialect, symbol_ids, lambda seqs: meter.seen(0, seqs))
                return
            send, receive = trio.open_memory_channel[list[int]](math.inf)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_receive, spec["url"], dialect, symbol_ids, deliver_to(send))
                await consume(receive)
                nursery.cancel_scope.cancel()

    trio.run(main)
    return meter.result(keep_times=spec["run"] == "paced")
