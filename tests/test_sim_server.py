"""The simulator's servers seen by raw clients: trio-websocket + gzip for WebSocket, httpx for REST.

Nothing of tradeloop's codec is used here: the frames are decoded by hand, so the simulator is
checked against BINGX.md. The tests on every event loop (at the end) read WebSocket frames through
tradeloop's own transport, which runs on anyio as trio-websocket does not, and decode them here too.
"""

from __future__ import annotations

import gzip
import json
import struct
import zlib
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any

import anyio
import h11
import httpx
import pytest
import trio
from trio.testing import MockClock
from trio_websocket import ConnectionClosed, WebSocketConnection, wrap_client_stream
from wsproto import ConnectionType, WSConnection
from wsproto import events as wsevents

from tradeloop.sim import SimConfig, Simulator, open_simulator
from tradeloop.sim.faults import Hostile, gzip_bomb, hostile_frame, nested_json
from tradeloop.streams.transport import ConnectionClosedError, Transport, WebSocket
from tradeloop.symbols import Market

START = 1_760_000_000_000 - 1_760_000_000_000 % 3_600_000 + 30_000  # 30 s into an hour
MINUTE = 60_000


@pytest.fixture
def mock_clock() -> MockClock:
    return MockClock(autojump_threshold=0.002)


def config(**overrides: Any) -> SimConfig:
    return SimConfig(**{"start_ms": START, "history_seconds": 600.0, **overrides})


# -- raw client helpers ---------------------------------------------------------------------------


def split_ws_url(ws_url: str) -> tuple[str, int, str]:
    host, _, rest_of_url = ws_url.removeprefix("ws://").partition(":")
    port, _, path = rest_of_url.partition("/")
    return host, int(port), "/" + path


async def connect(
    nursery: trio.Nursery, ws_url: str, *, message_queue_size: int = 16
) -> tuple[WebSocketConnection, trio.SocketStream]:
    """A client connection and its TCP stream, which the caller closes.

    (trio-websocket's own client leaves its socket open when the server closes first.)
    """
    host, port, path = split_ws_url(ws_url)
    stream = await trio.open_tcp_stream(host, port)
    try:
        return await wrap_client_stream(nursery, stream, host, path, message_queue_size=message_queue_size), stream
    except BaseException:
        await trio.aclose_forcefully(stream)
        raise


@asynccontextmanager
async def open_websocket_url(ws_url: str, *, message_queue_size: int = 16) -> AsyncIterator[WebSocketConnection]:
    async with trio.open_nursery() as nursery:
        ws, stream = await connect(nursery, ws_url, message_queue_size=message_queue_size)
        try:
            async with stream:
                try:
                    yield ws
                finally:
                    with trio.move_on_after(1):
                        await ws.aclose()
        finally:
            # Cancel only once the stream is closed: a Cancelled raised by its aclose() would replace
            # the body's exception and be absorbed by this nursery, hiding a failed assertion.
            nursery.cancel_scope.cancel()


async def receive(ws: WebSocketConnection) -> Any:
    """The next server message, gunzipped; JSON decoded unless it is the swap ``Ping``."""
    frame = await ws.get_message()
    assert isinstance(frame, bytes), f"server sent a text frame: {frame!r}"
    text = gzip.decompress(frame).decode()
    return text if text == "Ping" else json.loads(text)


async def answer_if_ping(ws: WebSocketConnection, message: Any) -> bool:
    if message == "Ping":
        await ws.send_message("Pong")
        return True
    if isinstance(message, dict) and "ping" in message:
        await ws.send_message(json.dumps({"pong": message["ping"], "time": message["time"]}))
        return True
    return False


async def next_message(ws: WebSocketConnection) -> dict[str, Any]:
    """The next message that is not a heartbeat (heartbeats are answered)."""
    while True:
        message = await receive(ws)
        if not await answer_if_ping(ws, message):
            return message  # type: ignore[no-any-return]


async def next_push(ws: WebSocketConnection, data_type: str | None = None) -> dict[str, Any]:
    """The next push (of ``data_type``), skipping acks and answering heartbeats."""
    while True:
        message = await next_message(ws)
        if message.get("dataType") and (data_type is None or message["dataType"] == data_type):
            return message


async def request(
    ws: WebSocketConnection, data_type: str, req_type: str | None = "sub", rid: str = "r1"
) -> dict[str, Any]:
    """Send a request and return its reply (ack or error), skipping pushes."""
    payload: dict[str, Any] = {"id": rid, "dataType": data_type}
    if req_type is not None:
        payload["reqType"] = req_type
    await ws.send_message(json.dumps(payload))
    while True:
        message = await next_message(ws)
        if not message.get("dataType"):
            return message


def url(sim: Simulator, market: Market) -> str:
    return sim.ws_url if market is Market.SWAP else sim.spot_ws_url


def kline_type(market: Market, symbol: str = "BTC-USDT") -> str:
    return f"{symbol}@kline_1m" if market is Market.SWAP else f"{symbol}@kline_1min"


def candle_of(push: dict[str, Any]) -> dict[str, Any]:
    """The (last) candle of a kline push as ``{t, o, h, l, c, v}`` strings / int."""
    data = push["data"]
    if isinstance(data, list):
        line = data[-1]
        return {"t": line["T"], **{key: line[key] for key in "ohlcv"}}
    line = data["K"]
    return {"t": line["t"], **{key: line[key] for key in "ohlcv"}}


@asynccontextmanager
async def rest(sim: Simulator) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=sim.rest_url) as client:
        yield client


async def rest_candles(client: httpx.AsyncClient, market: Market, limit: int = 100) -> dict[int, dict[str, Any]]:
    path = "/openApi/swap/v3/quote/klines" if market is Market.SWAP else "/openApi/spot/v2/market/kline"
    reply = (await client.get(path, params={"symbol": "BTC-USDT", "interval": "1m", "limit": limit})).json()
    assert reply["code"] == 0
    if market is Market.SWAP:
        return {row["time"]: {"t": row["time"], "o": row["open"], "h": row["high"], "l": row["low"],
                              "c": row["close"], "v": row["volume"]} for row in reply["data"]}  # fmt: skip
    return {row[0]: {"t": row[0], **dict(zip("ohlcv", row[1:6], strict=True))} for row in reply["data"]}


def same_candle(streamed: dict[str, Any], fetched: dict[str, Any]) -> bool:
    return all(Decimal(str(streamed[key])) == Decimal(str(fetched[key])) for key in "tohlcv")


# -- WebSocket: shapes ----------------------------------------------------------------------------


async def test_swap_subscribe_ack_and_push_shapes(mock_clock: MockClock) -> None:
    async with open_simulator(config()) as sim, open_websocket_url(sim.ws_url) as ws:
        for data_type in ("BTC-USDT@kline_1m", "BTC-USDT@ticker", "BTC-USDT@lastPrice",
                          "BTC-USDT@markPrice", "BTC-USDT@bookTicker"):  # fmt: skip
            ack = await request(ws, data_type, rid=data_type)
            assert ack == {"id": data_type, "code": 0, "msg": "", "dataType": "", "data": None}
        pushes: dict[str, dict[str, Any]] = {}
        while len(pushes) < 5:
            push = await next_push(ws)
            pushes[push["dataType"]] = push
        kline = pushes["BTC-USDT@kline_1m"]
        assert list(kline) == ["code", "dataType", "s", "data"] and kline["s"] == "BTC-USDT"
        (line,) = kline["data"]
        assert list(line) == ["c", "o", "h", "l", "v", "T"]
        assert all(isinstance(line[key], str) for key in "cohlv") and line["T"] % MINUTE == 0
        ticker = pushes["BTC-USDT@ticker"]["data"]
        assert "".join(ticker) == "eEspPcLhlvqoOCAaBb"  # the key order of BINGX.md example 9
        assert ticker["e"] == "24hTicker" and "%" not in ticker["P"]
        assert all(isinstance(ticker[key], str) for key in "pPcLhlvqoAaBb")
        assert ticker["c"] == line["c"]  # the ticker's last price is the kline's close
        last = pushes["BTC-USDT@lastPrice"]["data"]
        assert list(last) == ["e", "E", "s", "c"] and last["e"] == "lastPriceUpdate" and last["c"] == line["c"]
        mark = pushes["BTC-USDT@markPrice"]["data"]
        assert list(mark) == ["e", "E", "s", "p"] and mark["e"] == "markPriceUpdate"
        book = pushes["BTC-USDT@bookTicker"]["data"]
        assert list(book) == ["e", "u", "E", "T", "s", "b", "B", "a", "A"]
        assert Decimal(book["a"]) > Decimal(book["b"]) == Decimal(ticker["B"])  # b/a are prices here


async def test_spot_subscribe_ack_and_push_shapes(mock_clock: MockClock) -> None:
    async with open_simulator(config()) as sim, open_websocket_url(sim.spot_ws_url) as ws:
        ack = await request(ws, "BTC-USDT@kline_1min", req_type=None, rid="no-reqtype")  # ccxt's spot form
        assert list(ack) == ["code", "id", "msg", "timestamp"]
        assert (ack["code"], ack["id"], ack["msg"]) == (0, "no-reqtype", "SUCCESS")
        for data_type in ("BTC-USDT@ticker", "BTC-USDT@lastPrice", "BTC-USDT@bookTicker"):
            assert (await request(ws, data_type))["code"] == 0
        pushes: dict[str, dict[str, Any]] = {}
        while len(pushes) < 4:
            push = await next_push(ws)
            pushes[push["dataType"]] = push
        kline = pushes["BTC-USDT@kline_1min"]
        assert list(kline) == ["code", "data", "dataType", "success"] and kline["success"] is True
        assert list(kline["data"]) == ["E", "K", "e", "s"] and kline["data"]["e"] == "kline"
        line = kline["data"]["K"]
        assert list(line) == ["T", "c", "h", "i", "l", "n", "o", "q", "s", "t", "v"]
        assert line["i"] == "1min" and line["T"] == line["t"] + MINUTE - 1
        assert all(isinstance(line[key], str) for key in "chloqv") and isinstance(line["n"], int)
        ticker = pushes["BTC-USDT@ticker"]
        assert list(ticker) == ["code", "timestamp", "dataType", "data"]
        data = ticker["data"]
        assert data["P"].endswith("%") and data["O"] == data["E"] - 86_400_000 and data["C"] == data["E"]
        assert all(isinstance(data[key], float) for key in "pohlcvqAaBb")
        assert Decimal(str(data["c"])) == Decimal(line["c"])
        last = pushes["BTC-USDT@lastPrice"]
        assert last["data"] == {"c": line["c"], "e": "lastPriceUpdate", "s": "BTC-USDT"}
        book = pushes["BTC-USDT@bookTicker"]["data"]
        assert list(book) == ["A", "B", "E", "a", "b", "e", "s"] and isinstance(book["a"], str)


async def test_handshake_paths_rfc_pings_and_plain_http(mock_clock: MockClock) -> None:
    upgrade = {
        "Connection": "Upgrade",
        "Upgrade": "websocket",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
    }
    async with open_simulator(config()) as sim, httpx.AsyncClient() as client:
        http_url = sim.ws_url.replace("ws://", "http://")
        rejected = await client.get(http_url.replace("/swap-market", "/ws"), headers=upgrade)
        assert (rejected.status_code, rejected.text) == (404, "404 page not found")
        assert (await client.get(http_url)).status_code == 400  # not an upgrade
        async with open_websocket_url(sim.spot_ws_url + "?listenKey=x") as ws:  # the query is ignored
            await ws.ping(b"rfc6455")  # returns once the pong came back
            assert (await request(ws, "BTC-USDT@ticker"))["code"] == 0


@pytest.mark.parametrize("market", [Market.SWAP, Market.SPOT])
async def test_bad_requests_get_error_envelopes(mock_clock: MockClock, market: Market) -> None:
    code = 80014 if market is Market.SWAP else 100400
    async with open_simulator(config()) as sim, open_websocket_url(url(sim, market)) as ws:
        await ws.send_message("{}")
        reply = await next_message(ws)
        assert reply["code"] == code and reply["id"] == ""
        if market is Market.SWAP:
            assert reply == {"id": "", "code": 80014, "msg": "invalid params", "dataType": "", "data": None}
            assert (await request(ws, "BTC-USDT@kline_1m", req_type=None))["code"] == code  # swap needs reqType
        else:
            assert list(reply) == ["code", "id", "msg", "timestamp"]
        await ws.send_message("not json")
        assert (await next_message(ws))["code"] == code
        for bad in ("DOGE-USDT@ticker", "BTC-USDT@kline_7m", "BTC-USDT@depth99", "BTC-USDT"):
            reply = await request(ws, bad, rid="bad")
            assert (reply["code"], reply["id"]) == (code, "bad")
        wrong_interval = "BTC-USDT@kline_1m" if market is Market.SPOT else "BTC-USDT@kline_1min"
        assert (await request(ws, wrong_interval))["code"] == code
        assert sim.stats.request_errors >= 7


async def test_topic_201_on_one_socket_is_refused(mock_clock: MockClock) -> None:
    symbols = [f"S{i}-USDT" for i in range(11)]
    kinds = ["ticker", "lastPrice", "markPrice", "bookTicker"] + [f"kline_{tf}" for tf in
             ("1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d", "3d", "1w", "1M")]  # fmt: skip
    topics = [f"{symbol}@{kind}" for symbol in symbols for kind in kinds][:201]
    async with open_simulator(config(symbols=symbols, push_interval=3600)) as sim, open_websocket_url(sim.ws_url) as ws:
        for data_type in topics[:200]:
            assert (await request(ws, data_type))["code"] == 0
        assert (await request(ws, topics[0]))["code"] == 0  # already subscribed: not a new topic
        refused = await request(ws, topics[200], rid="201")
        assert (refused["code"], refused["id"]) == (80403, "201")
        assert (await request(ws, topics[0], "unsub"))["code"] == 0
        assert (await request(ws, topics[200]))["code"] == 0
        assert sim.stats.subscriptions == 200


@pytest.mark.parametrize("market", [Market.SWAP, Market.SPOT])
async def test_unsubscribe_stops_pushes(mock_clock: MockClock, market: Market) -> None:
    async with open_simulator(config(ping_interval=1000)) as sim, open_websocket_url(url(sim, market)) as ws:
        await request(ws, kline_type(market))
        await request(ws, "ETH-USDT@ticker")
        await next_push(ws, kline_type(market))
        assert (await request(ws, kline_type(market), "unsub", rid="u"))["id"] == "u"
        for _ in range(5):
            assert (await next_push(ws))["dataType"] == "ETH-USDT@ticker"
        assert sim.stats.subscriptions == 1


# -- WebSocket: candles and the REST truth --------------------------------------------------------


@pytest.mark.parametrize("market", [Market.SWAP, Market.SPOT])
@pytest.mark.parametrize("push_interval", [1.0, 2.5, 0.4])
async def test_rest_candles_equal_the_last_streamed_update_of_each_candle(
    mock_clock: MockClock, market: Market, push_interval: float
) -> None:
    async with open_simulator(config(push_interval=push_interval)) as sim, open_websocket_url(url(sim, market)) as ws:
        await request(ws, kline_type(market))
        last: dict[int, dict[str, Any]] = {}
        opens: list[int] = []
        while len(opens) < 4:
            candle = candle_of(await next_push(ws))
            if not opens or candle["t"] > opens[-1]:
                opens.append(candle["t"])
            assert candle["t"] == opens[-1], "an update of an older candle after a newer one"
            last[candle["t"]] = candle
        async with rest(sim) as client:
            fetched = await rest_candles(client, market)
        truth = {c.open_time: c for c in sim.candles("BTC-USDT", "1m", opens[0], opens[-1])}
        for open_time in opens[:-1]:  # every candle that rolled over while we watched
            assert same_candle(last[open_time], fetched[open_time])
            assert truth[open_time].closed and Decimal(last[open_time]["c"]) == truth[open_time].close
        assert opens == [opens[0] + i * MINUTE for i in range(4)]


async def test_candles_roll_over_with_the_clock(mock_clock: MockClock) -> None:
    async with open_simulator(config(ping_interval=1000)) as sim, open_websocket_url(sim.ws_url) as ws:
        await request(ws, "BTC-USDT@kline_1m")
        opens: list[int] = []
        while len(opens) < 6:
            candle = candle_of(await next_push(ws))
            if candle["t"] not in opens:
                opens.append(candle["t"])
                now = sim.now_ms()
                assert candle["t"] == now - now % MINUTE
        assert opens == [opens[0] + i * MINUTE for i in range(6)]


# -- WebSocket: heartbeats -------------------------------------------------------------------------


async def test_swap_ping_pong_and_pong_timeout(mock_clock: MockClock) -> None:
    async with open_simulator(config(ping_interval=5, pong_timeout=30)) as sim, open_websocket_url(sim.ws_url) as ws:
        start = trio.current_time()
        assert await receive(ws) == "Ping"
        assert trio.current_time() - start == pytest.approx(5, abs=0.1)
        await ws.send_message("Pong")
        assert await receive(ws) == "Ping"
        await ws.send_message("Pong")
        await trio.sleep(0.5)
        assert sim.stats.pongs_received == 2
        with pytest.raises(ConnectionClosed) as closed:  # stop answering: closed after 30 s
            while True:
                assert await receive(ws) == "Ping"
        assert trio.current_time() - start == pytest.approx(15 + 30, abs=0.5)
        assert closed.value.reason is not None and closed.value.reason.code == 1000
        assert sim.stats.pong_timeouts == 1


async def test_spot_ping_pong_and_wrong_dialect(mock_clock: MockClock) -> None:
    async with (
        open_simulator(config(ping_interval=5, pong_timeout=12)) as sim,
        open_websocket_url(sim.spot_ws_url) as ws,
    ):
        ping = await receive(ws)
        assert list(ping) == ["ping", "time"] and len(ping["ping"]) == 32
        assert ping["time"].endswith("+0800") and ping["time"][19] == "."
        await ws.send_message(json.dumps({"pong": ping["ping"], "time": ping["time"]}))
        second = await receive(ws)
        assert second["ping"] != ping["ping"]
        await ws.send_message("Pong")  # the swap dialect is a malformed request on spot
        assert (await receive(ws))["code"] == 100400
        with pytest.raises(ConnectionClosed):
            while True:
                await receive(ws)
        assert sim.stats.pong_timeouts == 1


# -- WebSocket: connections -------------------------------------------------------------------------


async def test_leaving_the_context_closes_client_sockets(mock_clock: MockClock) -> None:
    async with trio.open_nursery() as clients:
        async with open_simulator(config()) as sim:
            swap, swap_stream = await connect(clients, sim.ws_url)
            spot, spot_stream = await connect(clients, sim.spot_ws_url)
            await request(swap, "BTC-USDT@kline_1m")
            await request(spot, "BTC-USDT@kline_1min", req_type=None)
            assert sim.stats.connections_open == 2
        for ws, stream in ((swap, swap_stream), (spot, spot_stream)):
            async with stream:
                with pytest.raises(ConnectionClosed):
                    while True:
                        await ws.get_message()
                assert ws.closed is not None and ws.closed.code == 1001
        assert sim.stats.connections_open == 0 and sim.stats.subscriptions == 0


async def test_the_server_closes_tcp_after_a_client_close_handshake(mock_clock: MockClock) -> None:
    async with open_simulator(config()) as sim:
        host, port, path = split_ws_url(sim.ws_url)
        client = WSConnection(ConnectionType.CLIENT)
        async with await trio.open_tcp_stream(host, port) as stream:
            await stream.send_all(client.send(wsevents.Request(host=host, target=path)))
            while not any(isinstance(event, wsevents.AcceptConnection) for event in client.events()):
                client.receive_data(await stream.receive_some())
            await stream.send_all(client.send(wsevents.CloseConnection(code=1000)))
            with trio.fail_after(0.5):  # the server does not wait for us to close TCP (RFC 6455 §7.1.1)
                while data := await stream.receive_some():
                    client.receive_data(data)
            assert [type(event) for event in client.events()] == [wsevents.CloseConnection]
        assert sim.stats.connections_open == 0


async def test_a_slow_client_is_closed_without_delaying_others(mock_clock: MockClock) -> None:
    symbols = [f"S{i}-USDT" for i in range(50)]
    cfg = config(symbols=symbols, push_interval=0.05, send_queue_size=64, send_timeout=3, ping_interval=1000)
    async with (
        open_simulator(cfg) as sim,
        open_websocket_url(sim.ws_url, message_queue_size=1) as slow,  # never read
        open_websocket_url(sim.ws_url) as healthy,
    ):
        await request(healthy, "S0-USDT@ticker")
        try:
            for symbol in symbols:
                for kind in ("ticker", "bookTicker", "lastPrice", "kline_1m"):
                    sub = {"id": "x", "reqType": "sub", "dataType": f"{symbol}@{kind}"}
                    await slow.send_message(json.dumps(sub))
                    await trio.sleep(0.01)
        except ConnectionClosed:
            pass  # closed as too slow already
        received = 0
        while sim.stats.slow_closed == 0:
            await next_push(healthy)
            received += 1
        for _ in range(20):
            await next_push(healthy)
        assert received > 10 and sim.stats.connections_open == 1 and sim.stats.slow_closed == 1


@pytest.mark.parametrize("market", [Market.SWAP, Market.SPOT])
async def test_burst_sends_numbered_updates_in_order(mock_clock: MockClock, market: Market) -> None:
    async with (
        open_simulator(config(push_interval=3600, ping_interval=1000, pong_timeout=100_000)) as sim,
        open_websocket_url(url(sim, market)) as first,
        open_websocket_url(url(sim, market)) as second,
    ):
        for ws in (first, second):
            await request(ws, kline_type(market))
        await sim.burst("BTC-USDT", "1m", 300, market=market)
        for ws in (first, second):
            closes = [Decimal(candle_of(await next_push(ws))["c"]) for _ in range(300)]
            assert closes == list(range(1, 301))
        with pytest.raises(ValueError, match="unknown symbol"):
            await sim.burst("XRP-USDT", "1m", 3)


# -- REST ----------------------------------------------------------------------------------------------


async def test_rest_klines_shapes_order_and_paging(mock_clock: MockClock) -> None:
    async with open_simulator(config()) as sim, rest(sim) as client:
        now = sim.now_ms()
        swap = (
            await client.get("/openApi/swap/v3/quote/klines", params={"symbol": "BTC-USDT", "interval": "1m"})
        ).json()
        assert list(swap) == ["code", "msg", "data"] and swap["code"] == 0
        rows = swap["data"]
        assert list(rows[0]) == ["open", "close", "high", "low", "volume", "time"]
        assert all(isinstance(rows[0][key], str) for key in ("open", "close", "high", "low", "volume"))
        times = [row["time"] for row in rows]
        assert times == sorted(times, reverse=True) and times[0] == now - now % MINUTE  # newest first, forming
        assert len(rows) == 11  # 600 s of history from a minute boundary, plus the forming candle
        for path in ("/openApi/spot/v2/market/kline", "/openApi/spot/v1/market/kline", "/openApi/spot/v2/quote/klines"):
            spot = (await client.get(path, params={"symbol": "BTC-USDT", "interval": "1m", "limit": 3})).json()
            assert list(spot) == ["code", "timestamp", "data"] and spot["timestamp"] == now
            assert [row[0] for row in spot["data"]] == times[:3]
            row = spot["data"][1]
            assert len(row) == 8 and row[6] == row[0] + MINUTE - 1
            assert all(isinstance(value, float) for value in row[1:6] + row[7:])
            assert Decimal(str(row[4])) == Decimal(rows[1]["close"])  # one series for both markets
        paged = (await client.get("/openApi/swap/v3/quote/klines", params={
            "symbol": "BTC-USDT", "interval": "1m", "startTime": times[-1] + 1, "endTime": times[1], "limit": 2,
            "timestamp": now})).json()  # fmt: skip
        assert [row["time"] for row in paged["data"]] == [times[-3], times[-2]]
        hourly = (
            await client.get("/openApi/swap/v3/quote/klines", params={"symbol": "ETH-USDT", "interval": "1h"})
        ).json()
        hour = now - now % 3_600_000
        assert [row["time"] for row in hourly["data"]] == [hour, hour - 3_600_000]  # history reaches back


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"interval": "1m"}, "symbol"),
        ({"symbol": "XRP-USDT", "interval": "1m"}, "XRP-USDT"),
        ({"symbol": "BTC-USDT", "interval": "1min"}, "interval"),
        ({"symbol": "BTC-USDT", "interval": "1m", "limit": "1441"}, "limit"),
        ({"symbol": "BTC-USDT", "interval": "1m", "limit": "0"}, "limit"),
        ({"symbol": "BTC-USDT", "interval": "1m", "startTime": "abc"}, "startTime"),
        ({"symbol": "BTC-USDT", "interval": "1m", "startTime": "9", "endTime": "5"}, "after"),
    ],
)
async def test_rest_bad_parameters_are_error_envelopes_with_http_200(
    mock_clock: MockClock, params: dict[str, str], message: str
) -> None:
    async with open_simulator(config()) as sim, rest(sim) as client:
        swap = await client.get("/openApi/swap/v3/quote/klines", params=params)
        assert swap.status_code == 200
        assert swap.json()["code"] == 80014 and message in swap.json()["msg"] and swap.json()["data"] == {}
        spot = await client.get("/openApi/spot/v1/market/kline", params=params)
        assert spot.status_code == 200
        assert spot.json()["code"] == 100400 and message in spot.json()["msg"] and "timestamp" in spot.json()


async def test_rest_tickers_time_and_markets(mock_clock: MockClock) -> None:
    async with open_simulator(config()) as sim, rest(sim) as client:
        await trio.sleep(42)
        now = sim.now_ms()
        latest = sim.candles("BTC-USDT", "1m", now - MINUTE, now)[-1]
        swap = (await client.get("/openApi/swap/v2/quote/ticker", params={"symbol": "BTC-USDT"})).json()["data"]
        assert swap["symbol"] == "BTC-USDT" and Decimal(swap["lastPrice"]) == latest.close
        assert isinstance(swap["lastPrice"], str) and isinstance(swap["openTime"], int)
        everything = (await client.get("/openApi/swap/v2/quote/ticker")).json()["data"]
        assert [t["symbol"] for t in everything] == ["BTC-USDT", "ETH-USDT"]
        spot = (await client.get("/openApi/spot/v1/ticker/24hr", params={"symbol": "BTC-USDT"})).json()
        (ticker,) = spot["data"]
        assert ticker["priceChangePercent"].endswith("%") and isinstance(ticker["lastPrice"], float)
        assert Decimal(str(ticker["lastPrice"])) == latest.close
        for path in ("/openApi/swap/v2/server/time", "/openApi/spot/v1/server/time"):
            assert (await client.get(path)).json()["data"] == {"serverTime": now}
        contracts = (await client.get("/openApi/swap/v2/quote/contracts")).json()["data"]
        assert [(c["symbol"], c["currency"], c["pricePrecision"]) for c in contracts] == [
            ("BTC-USDT", "USDT", 1), ("ETH-USDT", "USDT", 2)]  # fmt: skip
        symbols = (await client.get("/openApi/spot/v1/common/symbols")).json()["data"]["symbols"]
        assert [(s["symbol"], s["tickSize"]) for s in symbols] == [("BTC-USDT", 0.1), ("ETH-USDT", 0.01)]
        assert (await client.get("/openApi/swap/v9/nothing")).status_code == 404
        assert (await client.post("/openApi/swap/v2/server/time")).status_code == 405


async def test_exchange_is_tradeloops_client_pointed_at_the_simulator(mock_clock: MockClock) -> None:
    async with open_simulator(config()) as sim, httpx.AsyncClient() as http:
        exchange = sim.exchange()
        assert (exchange.ws_url(Market.SWAP), exchange.ws_url(Market.SPOT)) == (sim.ws_url, sim.spot_ws_url)
        for symbol in ("BTC/USDT:USDT", "BTC/USDT"):
            klines = await exchange.fetch_klines(http, symbol, "1m", limit=5)
            truth = sim.candles("BTC-USDT", "1m", klines[0].open_time, klines[-1].open_time)
            assert [(k.open_time, k.open, k.high, k.low, k.close, k.volume) for k in klines] == [
                (c.open_time, c.open, c.high, c.low, c.close, c.volume) for c in truth
            ]


async def test_rest_keeps_connections_alive(mock_clock: MockClock) -> None:
    async with open_simulator(config()) as sim:
        host, port = sim.rest_url.removeprefix("http://").split(":")
        stream = await trio.open_tcp_stream(host, int(port))
        connection = h11.Connection(h11.CLIENT)
        async with stream:
            for _ in range(3):
                target = "/openApi/swap/v2/server/time"
                await stream.send_all(
                    connection.send(h11.Request(method="GET", target=target, headers=[("Host", host)]))
                )
                await stream.send_all(connection.send(h11.EndOfMessage()))
                body = b""
                while True:
                    event = connection.next_event()
                    if event is h11.NEED_DATA:
                        connection.receive_data(await stream.receive_some())
                    elif isinstance(event, h11.Data):
                        body += event.data
                    elif isinstance(event, h11.EndOfMessage):
                        break
                assert json.loads(body)["data"]["serverTime"] == sim.now_ms()
                connection.start_next_cycle()
        assert sim.stats.rest_requests == 3


# -- faults -------------------------------------------------------------------------------------------


async def test_drop_all_aborts_every_socket(mock_clock: MockClock) -> None:
    async with open_simulator(config()) as sim, trio.open_nursery() as clients:
        sockets = [await connect(clients, u) for u in (sim.ws_url, sim.spot_ws_url, sim.ws_url)]
        await request(sockets[0][0], "BTC-USDT@kline_1m")
        assert sim.faults.drop_all() == 3
        for ws, stream in sockets:
            async with stream:
                with pytest.raises(ConnectionClosed):
                    while True:
                        await ws.get_message()
                assert ws.closed is not None and ws.closed.code == 1006  # no close frame: abnormal closure
        assert sim.stats.dropped == 3 and sim.stats.connections_open == 0
        async with open_websocket_url(sim.ws_url) as again:  # reconnecting works
            assert (await request(again, "BTC-USDT@ticker"))["code"] == 0


@pytest.mark.parametrize("pings", [True, False])
async def test_stall_keeps_sockets_open_without_pushes(mock_clock: MockClock, pings: bool) -> None:
    async with open_simulator(config(ping_interval=3)) as sim, open_websocket_url(sim.ws_url) as ws:
        await request(ws, "BTC-USDT@ticker")
        await next_push(ws)
        sim.faults.stall(pings=pings)
        seen = []
        with trio.move_on_after(20):
            while True:
                message = await receive(ws)
                seen.append(message)
                await answer_if_ping(ws, message)
        assert (set(seen), len(seen) >= 5) == ({"Ping"}, True) if pings else seen == []
        assert sim.stats.connections_open == 1
        sim.faults.unstall()
        assert (await next_push(ws))["dataType"] == "BTC-USDT@ticker"


async def test_stop_pings_and_resume(mock_clock: MockClock) -> None:
    async with open_simulator(config(ping_interval=2)) as sim, open_websocket_url(sim.ws_url) as ws:
        sim.faults.stop_pings()
        await request(ws, "BTC-USDT@ticker")
        messages = [await receive(ws) for _ in range(15)]
        assert "Ping" not in messages
        sim.faults.resume_pings()
        while await receive(ws) != "Ping":
            pass


async def test_ignore_pongs_gets_answering_clients_closed(mock_clock: MockClock) -> None:
    async with open_simulator(config(ping_interval=5, pong_timeout=20)) as sim, open_websocket_url(sim.ws_url) as ws:
        sim.faults.ignore_pongs = True
        with pytest.raises(ConnectionClosed):
            while True:
                await next_message(ws)  # answers every ping
        assert sim.stats.pong_timeouts == 1 and sim.stats.pongs_received >= 3


async def test_malformed_pushes_cycle_through_kinds(mock_clock: MockClock) -> None:
    async with open_simulator(config(ping_interval=1000)) as sim, open_websocket_url(sim.ws_url) as ws:
        await request(ws, "BTC-USDT@kline_1m")
        await next_push(ws)
        sim.faults.malformed_rate = 1.0
        frames = [await ws.get_message() for _ in range(3)]
        assert isinstance(frames[0], bytes)
        with pytest.raises((EOFError, zlib.error, gzip.BadGzipFile)):
            gzip.decompress(frames[0])
        with pytest.raises(ValueError):
            json.loads(gzip.decompress(frames[1]))  # type: ignore[arg-type]
        missing = json.loads(gzip.decompress(frames[2]))  # type: ignore[arg-type]
        assert missing["dataType"] == "BTC-USDT@kline_1m" and "T" not in missing["data"][0]
        sim.faults.malformed_rate = 0.0
        assert "T" in (await next_push(ws))["data"][0]


async def test_duplicate_rate_sends_every_push_twice(mock_clock: MockClock) -> None:
    async with open_simulator(config(ping_interval=1000)) as sim, open_websocket_url(sim.ws_url) as ws:
        await request(ws, "BTC-USDT@kline_1m")
        await next_push(ws)
        sim.faults.duplicate_rate = 1.0
        frames = [await ws.get_message() for _ in range(6)]
        assert frames[0::2] == frames[1::2] and len(set(frames)) == 3
        sim.faults.duplicate_rate = 0.0
        await ws.get_message()  # a push queued before the switch may still be a duplicate
        assert len({await ws.get_message() for _ in range(3)}) == 3


async def test_reorder_sends_stale_updates_after_newer_ones(mock_clock: MockClock) -> None:
    async with open_simulator(config(ping_interval=1000)) as sim, open_websocket_url(sim.ws_url) as ws:
        await request(ws, "BTC-USDT@kline_1m")
        await next_push(ws)
        sim.faults.reorder_rate = 1.0
        candles = [candle_of(await next_push(ws)) for _ in range(2 * 70)]
        news, stales = candles[0::2], candles[1::2]
        assert stales[1:] == news[:-1]  # each update is followed by the one before it
        rollovers = [i for i in range(1, len(news)) if news[i]["t"] > news[i - 1]["t"]]
        assert rollovers and all(stales[i]["t"] < news[i]["t"] for i in rollovers)
        sim.faults.reorder_rate = 0.0
        await next_push(ws)
        times = [candle_of(await next_push(ws))["t"] for _ in range(70)]
        assert times == sorted(times)


async def test_reorder_follows_every_rollover_even_at_a_low_rate(mock_clock: MockClock) -> None:
    async with open_simulator(config(ping_interval=1000)) as sim, open_websocket_url(sim.ws_url) as ws:
        sim.faults.reorder_rate = 1e-9
        await request(ws, "BTC-USDT@kline_1m")
        previous = candle_of(await next_push(ws))
        for _ in range(3):
            current = candle_of(await next_push(ws))
            while current["t"] == previous["t"]:
                previous, current = current, candle_of(await next_push(ws))
            assert candle_of(await next_push(ws)) == previous  # the old candle, after the new one
            previous = current


async def test_skip_final_update_leaves_the_final_value_to_rest(mock_clock: MockClock) -> None:
    async with open_simulator(config(ping_interval=1000)) as sim, open_websocket_url(sim.ws_url) as ws:
        sim.faults.skip_final_update = True
        await request(ws, "BTC-USDT@kline_1m")
        last: dict[int, dict[str, Any]] = {}
        while len(last) < 4:
            candle = candle_of(await next_push(ws))
            last[candle["t"]] = candle
        async with rest(sim) as client:
            fetched = await rest_candles(client, Market.SWAP)
        for open_time in sorted(last)[:-1]:
            assert Decimal(last[open_time]["v"]) < Decimal(fetched[open_time]["v"])
        sim.faults.skip_final_update = False
        opened = max(last)
        while (candle := candle_of(await next_push(ws)))["t"] == opened:
            last[opened] = candle
        async with rest(sim) as client:
            assert same_candle(last[opened], (await rest_candles(client, Market.SWAP))[opened])


async def test_batch_klines_carry_the_previous_final_candle(mock_clock: MockClock) -> None:
    async with open_simulator(config(ping_interval=1000)) as sim, open_websocket_url(sim.ws_url) as ws:
        sim.faults.batch_klines = True
        await request(ws, "BTC-USDT@kline_1m")
        push = await next_push(ws)
        previous, current = push["data"]
        assert current["T"] - previous["T"] == MINUTE
        async with rest(sim) as client:
            fetched = await rest_candles(client, Market.SWAP)
        assert same_candle({"t": previous["T"], **previous}, fetched[previous["T"]])
        sim.faults.batch_klines = False
        assert len((await next_push(ws))["data"]) == 1


async def test_rest_rate_limited_and_down(mock_clock: MockClock) -> None:
    async with open_simulator(config()) as sim, rest(sim) as client:
        path = "/openApi/swap/v2/server/time"
        sim.faults.rest_rate_limited = True
        limited = await client.get(path)
        assert limited.status_code == 429
        assert limited.json() == {"code": 100410, "msg": "The current system is busy, please try again later"}
        sim.faults.rest_rate_limited = False
        sim.faults.set("rest_down")
        down = await client.get(path)
        assert down.status_code == 503 and not down.headers["content-type"].startswith("application/json")
        with pytest.raises(json.JSONDecodeError):
            down.json()
        sim.faults.set("rest_down", "close")
        with pytest.raises(httpx.RemoteProtocolError):
            await client.get(path)
        sim.faults.set("rest_down", "off")
        assert (await client.get(path)).json()["code"] == 0


# -- bounds on what a client sends, and the hostile faults -----------------------------------------


async def test_a_deeply_nested_request_is_an_error_reply_not_a_crash(mock_clock: MockClock) -> None:
    async with open_simulator(config()) as sim, open_websocket_url(sim.ws_url) as ws:
        await ws.send_message('{"id":' + "[" * 30_000 + "]" * 30_000 + "}")  # 60 KB: under the size limit
        assert (await next_message(ws))["code"] == 80014
        assert (await request(ws, "BTC-USDT@ticker"))["code"] == 0


@pytest.mark.parametrize(
    "request_bytes", [b"garbage\r\n\r\n", b"GET / HTTP/1.1\r\nHost: x\r\n", b"\x16\x03\x01\x02\x00"]
)
async def test_a_client_leaving_mid_request_ends_its_connection_not_the_server(
    mock_clock: MockClock, request_bytes: bytes
) -> None:
    # Found by an outside look: a Redis client pointed at the REST port ended `tradeloop sim`
    # (the 400 for its bad request went to a socket already reset).
    async with open_simulator(config()) as sim, httpx.AsyncClient(base_url=sim.rest_url) as client:
        url = httpx.URL(sim.rest_url)
        for _ in range(3):
            sock = trio.socket.socket()
            await sock.connect((url.host, url.port))
            await sock.send(request_bytes)
            sock.setsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_LINGER, struct.pack("ii", 1, 0))  # reset
            sock.close()
            await trio.sleep(0.1)
        assert (await client.get("/openApi/swap/v2/server/time")).json()["code"] == 0


async def test_a_request_body_past_64_kib_is_refused_with_413(mock_clock: MockClock) -> None:
    async with open_simulator(config()) as sim, httpx.AsyncClient(base_url=sim.rest_url) as client:
        assert (await client.post("/openApi/swap/v2/server/time", content=b"x" * 65_536)).status_code == 405
        refused = await client.post("/openApi/swap/v2/server/time", content=b"x" * 65_537)
        assert refused.status_code == 413 and "request body over 65536 bytes" in refused.text
        assert (await client.get("/openApi/swap/v2/server/time")).json()["code"] == 0


async def test_hostile_pushes_replace_every_push_until_cleared(mock_clock: MockClock) -> None:
    async with open_simulator(config()) as sim, open_websocket_url(sim.ws_url) as ws:
        assert (await request(ws, "BTC-USDT@kline_1m"))["code"] == 0
        for kind in (Hostile.NESTED, Hostile.GZIP_BOMB):
            sim.faults.set("hostile_ws", kind.value)
            while await ws.get_message() != hostile_frame(kind):
                pass  # what was queued before the switch
            assert await ws.get_message() == hostile_frame(kind)
        assert zlib.decompressobj(31).decompress(hostile_frame(Hostile.NESTED)) == nested_json()
        sim.faults.clear()
        assert (await next_push(ws))["dataType"] == "BTC-USDT@kline_1m"
        assert sim.faults.hostile_sent >= 4


async def test_hostile_rest_bodies(mock_clock: MockClock) -> None:
    path = "/openApi/swap/v2/server/time"
    async with open_simulator(config()) as sim, httpx.AsyncClient(base_url=sim.rest_url) as client:
        sim.faults.set("hostile_rest", "nested")
        assert (await client.get(path)).content == nested_json()
        sim.faults.set("hostile_rest", "gzip_bomb")
        async with client.stream("GET", path) as bomb:
            assert bomb.headers["content-encoding"] == "gzip"
            assert int(bomb.headers["content-length"]) == len(gzip_bomb())
        sim.faults.set("hostile_rest", "huge")
        async with client.stream("GET", path) as huge:
            assert "content-length" not in huge.headers and huge.headers["transfer-encoding"] == "chunked"
            received = 0
            with pytest.raises(httpx.ReadError):  # the read after closing: it unwinds httpx's iterators
                async for chunk in huge.aiter_raw():
                    received += len(chunk)
                    if received > 1 << 20:
                        await huge.aclose()  # 300 MB announced, produced only as they are read
            assert received > 1 << 20


# -- on every event loop ---------------------------------------------------------------------------
# The same simulator inside trio.run and asyncio.run, read by tradeloop's own WebSocket client (on
# anyio) and httpx. Real time, so a fast market keeps each test short: a candle closes every 0.1 s.

FAST = {"speed": 600.0, "push_interval": 0.01}


@pytest.fixture(params=["trio", "asyncio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


class AnyClient:
    """A WebSocket client on any event loop: messages gunzipped and decoded one at a time, the
    swap heartbeat (``Ping``) answered."""

    def __init__(self, ws: WebSocket) -> None:
        self.ws = ws
        self._pending: deque[bytes | str] = deque()

    async def message(self) -> dict[str, Any]:
        while True:
            if not self._pending:
                self._pending.extend(await self.ws.receive_batch())
            frame = self._pending.popleft()
            assert isinstance(frame, bytes), f"server sent a text frame: {frame!r}"
            text = gzip.decompress(frame).decode()
            if text == "Ping":
                await self.ws.send_text("Pong")
            else:
                return json.loads(text)  # type: ignore[no-any-return]

    async def subscribe(self, data_type: str) -> None:
        await self.ws.send_text(json.dumps({"id": data_type, "reqType": "sub", "dataType": data_type}))

    async def push(self) -> dict[str, Any]:
        while not (message := await self.message()).get("dataType"):
            assert message["code"] == 0, message
        return message


@asynccontextmanager
async def any_client(ws_url: str) -> AsyncIterator[AnyClient]:
    async with Transport().connect(ws_url) as ws:
        yield AnyClient(ws)


@pytest.mark.anyio
async def test_klines_and_tickers_over_websocket_equal_rest_on_every_backend(anyio_backend: str) -> None:
    async with open_simulator(config(**FAST)) as sim, any_client(sim.ws_url) as client, rest(sim) as http:
        await client.subscribe("BTC-USDT@kline_1m")
        await client.subscribe("BTC-USDT@ticker")
        last: dict[int, dict[str, Any]] = {}
        tickers = 0
        with anyio.fail_after(5):
            while len(last) < 3:
                push = await client.push()
                if push["dataType"] == "BTC-USDT@ticker":
                    tickers += 1
                    assert push["data"]["e"] == "24hTicker"
                    continue
                candle = candle_of(push)
                assert candle["t"] >= max(last, default=0), "an update of an older candle after a newer one"
                last[candle["t"]] = candle
        fetched = await rest_candles(http, Market.SWAP)
    opens = sorted(last)
    assert tickers > 0 and opens == [opens[0] + i * MINUTE for i in range(3)]
    for open_time in opens[:-1]:  # every candle that closed while we watched
        assert same_candle(last[open_time], fetched[open_time])


@pytest.mark.anyio
async def test_drop_all_aborts_the_socket_and_reconnecting_works_on_every_backend(anyio_backend: str) -> None:
    async with open_simulator(config(**FAST)) as sim:
        with anyio.fail_after(5):
            async with any_client(sim.ws_url) as client:
                await client.subscribe("BTC-USDT@kline_1m")
                await client.push()
                assert sim.faults.drop_all() == 1
                with pytest.raises(ConnectionClosedError):
                    while True:
                        await client.message()
            async with any_client(sim.spot_ws_url) as again:
                await again.subscribe("BTC-USDT@kline_1min")
                assert (await again.push())["dataType"] == "BTC-USDT@kline_1min"
        assert sim.stats.dropped == 1 and sim.stats.connections_total == 2


@pytest.mark.anyio
async def test_leaving_the_simulator_closes_clients_with_1001_on_every_backend(anyio_backend: str) -> None:
    async with anyio.create_task_group() as clients, open_simulator(config(**FAST)) as sim:
        subscribed = anyio.Event()

        async def watch_until_closed() -> None:
            async with any_client(sim.ws_url) as client:
                await client.subscribe("BTC-USDT@kline_1m")
                await client.push()
                subscribed.set()
                with pytest.raises(ConnectionClosedError, match="code 1001"):
                    while True:
                        await client.message()

        clients.start_soon(watch_until_closed)
        with anyio.fail_after(5):
            await subscribed.wait()
    assert sim.stats.connections_open == 0 and sim.stats.subscriptions == 0
