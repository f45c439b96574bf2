"""The simulator's Binance dialect seen by raw clients (trio-websocket, httpx) and by tradeloop's
Binance client, in simulated time. Frames are read by hand here, so the simulator is checked
against BINANCE.md, not against our codec."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any

import anyio
import httpx
import pytest
import trio
from test_sim_server import open_websocket_url
from trio.testing import MockClock
from trio_websocket import ConnectionClosed, WebSocketConnection

from tradeloop.errors import InvalidValueError
from tradeloop.exchanges import ExchangeError, RateLimitedError, Reconnect
from tradeloop.exchanges.binance import Binance, BinanceCodec, Socket
from tradeloop.models import Kline
from tradeloop.sim import SimConfig, Simulator, open_simulator
from tradeloop.streams.transport import Transport

START = 1_760_000_000_000 - 1_760_000_000_000 % 3_600_000 + 30_000  # 30 s into an hour
MINUTE = 60_000


@pytest.fixture
def mock_clock() -> MockClock:
    return MockClock(autojump_threshold=0.002)


def config(**overrides: Any) -> SimConfig:
    return SimConfig(**{"exchange": "binance", "start_ms": START, "history_seconds": 600.0, **overrides})


async def receive(ws: WebSocketConnection) -> Any:
    frame = await ws.get_message()
    assert isinstance(frame, str), f"Binance sends text frames, got {frame!r}"
    return json.loads(frame)


async def request(ws: WebSocketConnection, method: str, params: Any = None, rid: Any = 1) -> Any:
    """Send a request and return its reply, skipping pushes."""
    body: dict[str, Any] = {"method": method, "id": rid}
    if params is not None:
        body["params"] = params
    await ws.send_message(json.dumps(body))
    while True:
        message = await receive(ws)
        if "result" in message or "error" in message:
            return message


async def next_event(ws: WebSocketConnection, event: str) -> dict[str, Any]:
    while True:
        message = await receive(ws)
        data = message.get("data", message)
        if data.get("e") == event or (event == "book" and "u" in data):
            return message  # type: ignore[no-any-return]


async def test_raw_and_combined_sockets_ack_and_push(mock_clock: MockClock) -> None:
    async with (
        open_simulator(config()) as sim,
        open_websocket_url(sim.ws_url + "/ws") as raw,
        open_websocket_url(sim.ws_url + "/stream") as both,
    ):
        assert await request(raw, "SUBSCRIBE", ["btcusdt@kline_1m"], 7) == {"result": None, "id": 7}
        assert await request(both, "SUBSCRIBE", ["btcusdt@kline_1m", "btcusdt@ticker"], 8) == {
            "result": None,
            "id": 8,
        }
        push = await next_event(raw, "kline")
        assert push["s"] == "BTCUSDT" and set(push["k"]) >= set("tTsifLohlcvnxqVQB")
        assert push["k"]["o"].endswith("0") and len(push["k"]["o"].partition(".")[2]) == 8  # spot pads to 8
        wrapped = await next_event(both, "24hrTicker")
        assert wrapped["stream"] == "btcusdt@ticker" and {"b", "a", "B", "A"} <= set(wrapped["data"])
        assert await request(both, "LIST_SUBSCRIPTIONS", rid=9) == {
            "result": ["btcusdt@kline_1m", "btcusdt@ticker"],
            "id": 9,
        }
        assert await request(both, "GET_PROPERTY", ["combined"], 10) == {"result": True, "id": 10}


async def test_usdm_routes_streams_by_path_and_unknown_streams_are_silent(mock_clock: MockClock) -> None:
    async with (
        open_simulator(config()) as sim,
        open_websocket_url(sim.ws_url + "/market/stream?streams=btcusdt@kline_1m/btcusdt@bookTicker") as market,
        open_websocket_url(sim.ws_url + "/public/ws/btcusdt@bookTicker") as public,
    ):
        book = await next_event(public, "bookTicker")
        assert {"E", "T", "u", "b", "a"} <= set(book)
        # Acknowledged and silent: the book ticker on /market, an unknown symbol, an upper-case id.
        reply = await request(market, "SUBSCRIBE", ["dogeusdt@kline_1m", "BTCUSDT@kline_1m"], 3)
        assert reply == {"result": None, "id": 3}
        seen = set()
        with trio.move_on_after(5):
            while True:
                seen.add((await receive(market))["stream"])
        assert seen == {"btcusdt@kline_1m"}
        listed = await request(market, "LIST_SUBSCRIPTIONS", rid=4)
        assert set(listed["result"]) == {
            "btcusdt@kline_1m", "btcusdt@bookTicker", "dogeusdt@kline_1m", "BTCUSDT@kline_1m"
        }  # fmt: skip
        kline = await next_event(market, "kline")
        assert "." in kline["data"]["k"]["o"] and len(kline["data"]["k"]["o"].partition(".")[2]) == 1  # tick 0.1


@pytest.mark.parametrize(
    ("path", "body", "reply"),
    [
        ("/ws", '{"method":"SUBSCRIBE","params":["btcusdt kline"],"id":1}', {"code": 2, "id": 1}),
        ("/market/ws", '{"method":"SUBSCRIBE","params":[],"id":"abc"}', {"code": 2, "id": None}),
        ("/ws", "not json", {"code": 3, "id": None}),
        ("/ws", "[" * 60_000, {"code": 3, "id": None}),
        ("/ws", '{"method":"PING","id":5}', {"code": 2, "id": 5}),
        ("/ws", '{"method":"SET_PROPERTY","params":["combined","yes"],"id":6}', {"code": 2, "id": 6}),
    ],
)
async def test_bad_requests_get_nested_errors(mock_clock: MockClock, path: str, body: str, reply: Any) -> None:
    async with open_simulator(config()) as sim, open_websocket_url(sim.ws_url + path) as ws:
        await ws.send_message(body)
        message = await receive(ws)
        assert {"code": message["error"]["code"], "id": message["id"]} == reply
        assert isinstance(message["error"]["msg"], str) and sim.stats.request_errors == 1


async def test_more_than_five_messages_a_second_close_the_socket(mock_clock: MockClock) -> None:
    async with open_simulator(config()) as sim, open_websocket_url(sim.ws_url + "/ws") as ws:
        for number in range(5):
            assert (await request(ws, "LIST_SUBSCRIPTIONS", rid=number))["id"] == number
        await trio.sleep(1.01)
        for number in range(6):
            await ws.send_message(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": number}))
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                await ws.get_message()
        assert closed.value.reason.code == 1008


async def test_rfc_pings_are_answered_by_the_client_library(mock_clock: MockClock) -> None:
    # Pings at 1.5 s steps: none falls on the client's close (trio-websocket would answer it after closing).
    async with open_simulator(config(ping_interval=1.5, pong_timeout=3.0)) as sim:
        async with open_websocket_url(sim.ws_url + "/public/ws") as ws:
            await request(ws, "SUBSCRIBE", ["ethusdt@bookTicker"])
            with trio.move_on_after(10):
                await next_event(ws, "never")
            assert sim.stats.pings_sent >= 6 and sim.stats.pongs_received >= 6 and sim.stats.pong_timeouts == 0
        sim.faults.set("ignore_pongs")
        async with open_websocket_url(sim.ws_url + "/ws") as ws:
            with pytest.raises(ConnectionClosed):
                await next_event(ws, "never")
            assert sim.stats.pong_timeouts == 1


async def test_every_candle_ends_with_one_closed_push_equal_to_rest(mock_clock: MockClock) -> None:
    async with open_simulator(config(push_interval=0.5)) as sim, binance_client(sim) as (client, http):
        async with open_websocket_url(sim.ws_url + "/market/ws/btcusdt@kline_1m") as ws:
            finals: dict[int, dict[str, Any]] = {}
            updates: dict[int, int] = {}
            while len(finals) < 3:
                line = (await next_event(ws, "kline"))["k"]
                assert line["t"] not in finals, "a push after the closed one"
                updates[line["t"]] = updates.get(line["t"], 0) + 1
                if line["x"]:
                    finals[line["t"]] = line
        rows = await closed_pushes_equal_rest(client, http, finals)
        truth = sim.candles("BTC-USDT", "1m", min(finals), max(finals))
        assert [(c.open_time, c.close, c.closed) for c in truth] == [(r.open_time, r.close, True) for r in rows]


async def closed_pushes_equal_rest(
    client: Binance, http: httpx.AsyncClient, finals: dict[int, dict[str, Any]]
) -> list[Kline]:
    """REST's BTC/USDT:USDT 1m candles over ``finals`` (closed pushes' ``k`` by open time): one
    per push, equal to it. Returns them."""
    rows = await client.fetch_klines(http, "BTC/USDT:USDT", "1m", start_ms=min(finals), end_ms=max(finals))
    assert [row.open_time for row in rows] == sorted(finals)
    for row in rows:
        line = finals[row.open_time]
        assert [row.open, row.high, row.low, row.close, row.volume] == [Decimal(line[k]) for k in "ohlcv"]
    return rows


@asynccontextmanager
async def binance_client(sim: Simulator) -> AsyncIterator[tuple[Binance, httpx.AsyncClient]]:
    """tradeloop's Binance client pointed at the simulator, with an HTTP client."""
    client = sim.exchange()
    assert isinstance(client, Binance)
    async with httpx.AsyncClient() as http:
        yield client, http


async def test_client_rest_calls_and_symbol_checks(mock_clock: MockClock) -> None:
    async with open_simulator(config()) as sim, binance_client(sim) as (client, http):
        newest = await client.fetch_klines(http, "BTC/USDT", "1m", limit=3)
        assert len(newest) == 3 and newest[-1].open_time == START - START % MINUTE and not newest[-1].closed
        assert all(kline.closed for kline in newest[:-1])
        truth = sim.candles("BTC-USDT", "1m", newest[0].open_time, newest[-1].open_time)
        assert [k.close for k in newest] == [c.close for c in truth]
        page = await client.fetch_klines(http, "BTC/USDT:USDT", "1m", start_ms=0, limit=5000)
        assert len(page) == 11  # 600 s of history plus the forming candle, under one 1500-row page
        spot, usdm = await client.fetch_ticker(http, "ETH/USDT"), await client.fetch_ticker(http, "ETH/USDT:USDT")
        assert spot.bid is not None and spot.ask is not None and usdm.bid is None
        assert spot.last == usdm.last and spot.time == sim.now_ms()
        await client.validate_symbols(http, ["BTC/USDT", "ETH/USDT:USDT"])
        requests = sim.stats.rest_requests
        with pytest.raises(InvalidValueError, match="unknown symbol 'DOGE/USDT:USDT'"):
            await client.check_symbol(http, "DOGE/USDT:USDT")
        assert sim.stats.rest_requests == requests  # exchangeInfo is fetched once per market
        with pytest.raises(ExchangeError) as caught:
            await client.fetch_klines(http, "DOGE/USDT", "1m")
        assert caught.value.code == -1121 and caught.value.message == "Invalid symbol."
        sim.faults.set("rest_rate_limited")
        with pytest.raises(RateLimitedError):
            await client.fetch_ticker(http, "BTC/USDT")


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"symbol": "DOGEUSDT", "interval": "1m"}, -1121),
        ({"symbol": "btcusdt", "interval": "1m"}, -1100),
        ({"interval": "1m"}, -1102),
        ({"symbol": "BTCUSDT", "interval": "1s"}, -1120),
        ({"symbol": "BTCUSDT", "interval": "1m", "limit": "1001"}, -1130),
    ],
)
async def test_rest_errors_are_binance_codes_with_http_400(
    mock_clock: MockClock, params: dict[str, str], code: int
) -> None:
    async with open_simulator(config()) as sim, httpx.AsyncClient() as http:
        reply = await http.get(sim.rest_url + "/api/v3/klines", params=params)
        assert reply.status_code == 400 and reply.json()["code"] == code
        used = [(await http.get(sim.rest_url + "/api/v3/time")).headers["X-MBX-USED-WEIGHT-1M"] for _ in range(2)]
        assert int(used[1]) in (int(used[0]) + 1, 1)  # one more, unless a new minute began
        sim.faults.set("rest_rate_limited")
        limited = await http.get(sim.rest_url + "/fapi/v1/time")
        assert limited.status_code == 429 and limited.headers["Retry-After"] == "1"


async def test_speed_runs_market_time_faster(mock_clock: MockClock) -> None:
    async with open_simulator(config(speed=60.0, push_interval=0.25)) as sim, binance_client(sim) as (client, http):
        async with open_websocket_url(sim.ws_url + "/ws/ethusdt@kline_1m") as ws:
            started = trio.current_time()
            closed: dict[int, Decimal] = {}
            while len(closed) < 3:
                line = (await next_event(ws, "kline"))["k"]
                if line["x"]:
                    closed[line["t"]] = Decimal(line["c"])
            elapsed = trio.current_time() - started
        first = min(closed)
        assert list(closed) == [first, first + MINUTE, first + 2 * MINUTE]
        assert 2.0 <= elapsed <= 4.0  # three one-minute candles in three seconds of trio time
        history = await client.fetch_klines(http, "ETH/USDT", "1m", start_ms=first, end_ms=first + 2 * MINUTE)
        assert {kline.open_time: kline.close for kline in history} == closed  # REST history keeps pace


@pytest.mark.parametrize("speed", [0, -1.0, float("inf"), float("nan"), True, "60"])
def test_speed_must_be_a_positive_factor(speed: object) -> None:
    with pytest.raises(InvalidValueError, match="invalid speed"):
        SimConfig(speed=speed)  # type: ignore[arg-type]


async def test_server_shutdown_notice_then_close_and_the_lifetime_cut(mock_clock: MockClock) -> None:
    async with open_simulator(config(connection_lifetime=30.0)) as sim:
        async with (
            open_websocket_url(sim.ws_url + "/ws") as raw,
            open_websocket_url(sim.ws_url + "/market/ws") as usdm,
            trio.open_nursery() as nursery,
        ):
            nursery.start_soon(sim.server_shutdown)
            notice = await receive(raw)
            assert notice["e"] == "serverShutdown" and notice["E"] == sim.now_ms()
            assert isinstance(BinanceCodec(Socket.SPOT).decode(json.dumps(notice)), Reconnect)
            for ws in (raw, usdm):
                with pytest.raises(ConnectionClosed) as closed:
                    await ws.get_message()  # USDⓈ-M gets no notice, only the close
                assert closed.value.reason.code == 1001
        async with open_websocket_url(sim.ws_url + "/stream") as ws:
            opened = trio.current_time()
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    await ws.get_message()
            assert closed.value.reason.code == 1001 and trio.current_time() - opened == pytest.approx(30, abs=0.1)
    async with open_simulator(SimConfig()) as bingx:
        with pytest.raises(InvalidValueError, match="Binance notice"):
            await bingx.server_shutdown()


@pytest.fixture(params=["trio", "asyncio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.mark.anyio
async def test_closed_kline_pushes_equal_rest_on_every_backend(anyio_backend: str) -> None:
    """Real time on Trio and asyncio, through tradeloop's own (anyio) WebSocket transport, which
    answers the RFC 6455 pings; a fast market closes a candle every 0.1 s."""
    async with (
        open_simulator(config(speed=600.0, push_interval=0.01)) as sim,
        binance_client(sim) as (client, http),
        Transport().connect(sim.ws_url + "/market/ws/btcusdt@kline_1m") as ws,
    ):
        finals: dict[int, dict[str, Any]] = {}
        with anyio.fail_after(5):
            while len(finals) < 2:
                for frame in await ws.receive_batch():
                    assert isinstance(frame, str), f"Binance sends text frames, got {frame!r}"
                    line = json.loads(frame)["k"]
                    assert line["t"] not in finals, "a push after the closed one"
                    if line["x"]:
                        finals[line["t"]] = line
        await closed_pushes_equal_rest(client, http, finals)
