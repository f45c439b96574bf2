"""Receive paths alone, no stream layer: what the socket-to-codec hop costs under each transport.

``trio_websocket`` is tradeloop's receive path today (``connect_websocket_url`` then
``get_message()`` per frame). ``wsproto`` drives the same protocol engine directly on a Trio
``SocketStream``: one ``receive_some`` may carry dozens of frames, and they are decoded in a plain
loop without trio-websocket's reader task and internal channel hop. Both subscribe like BingX
clients and decode every push with tradeloop's BingX codec, so the difference is the transport.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import trio
import trio_websocket
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, BytesMessage, Request, TextMessage

from tradeloop.exchanges.base import KlineBatch, Topic, TopicKind
from tradeloop.exchanges.bingx.codec import BingXCodec
from tradeloop.symbols import Market

from .client import Meter
from .frames import unified

__all__ = ["run"]

_RECEIVE_SIZE = 65536


async def _trio_websocket(url: str, topic: Topic, meter: Meter) -> None:
    codec = BingXCodec(Market.SWAP)
    async with trio_websocket.open_websocket_url(url) as ws:
        await ws.send_message(codec.subscribe(topic)[1])
        while True:
            event = codec.decode(await ws.get_message())
            if isinstance(event, KlineBatch) and meter.seen(0, [int(k.close) for k in event.klines]):
                return


async def _wsproto(url: str, topic: Topic, meter: Meter) -> None:
    codec = BingXCodec(Market.SWAP)
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    stream = await trio.open_tcp_stream(parts.hostname, parts.port)
    async with stream:
        ws = WSConnection(ConnectionType.CLIENT)
        await stream.send_all(ws.send(Request(host=parts.netloc, target=parts.path)))
        pending: list[bytes] = []
        while True:
            data = await stream.receive_some(_RECEIVE_SIZE)
            if not data:
                return
            ws.receive_data(data)
            seqs: list[int] = []
            for event in ws.events():
                if isinstance(event, AcceptConnection):
                    await stream.send_all(ws.send(TextMessage(codec.subscribe(topic)[1])))
                elif isinstance(event, BytesMessage):
                    pending.append(bytes(event.data))
                    if event.message_finished:
                        decoded = codec.decode(b"".join(pending))
                        pending.clear()
                        if isinstance(decoded, KlineBatch):
                            seqs.extend(int(k.close) for k in decoded.klines)
            if seqs and meter.seen(0, seqs):
                return


def run(spec: dict[str, Any]) -> dict[str, Any]:
    (symbol,) = unified(spec["symbols"])
    topic = Topic(TopicKind.KLINE, symbol, "1m")
    meter = Meter(spec["total"], 1, [spec["total"]], waiting=1)
    receive = _trio_websocket if spec["receive_path"] == "trio_websocket" else _wsproto

    async def main() -> None:
        with trio.fail_after(spec["timeout"]):
            await receive(spec["url"], topic, meter)

    trio.run(main)
    return meter.result(keep_times=False)
