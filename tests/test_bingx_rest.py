"""BingX REST: reply parsing from the documented bodies, and the calls against a loopback HTTP server."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from functools import partial
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import bingx_frames as frames
import h11
import httpx
import pytest
import trio

from tradeloop import InvalidValueError
from tradeloop.exchanges import ErrorKind, ExchangeError, ProtocolError, RateLimitedError
from tradeloop.exchanges.bingx import BingX
from tradeloop.exchanges.bingx.rest import (
    PATHS,
    Endpoint,
    parse_envelope,
    parse_klines,
    parse_server_time,
    parse_ticker,
)
from tradeloop.models import Kline, Tick
from tradeloop.symbols import Market

SWAP, SPOT = Market.SWAP, Market.SPOT


def test_paths_are_the_documented_ones() -> None:
    assert PATHS == {
        (SWAP, Endpoint.KLINES): "/openApi/swap/v3/quote/klines",
        (SPOT, Endpoint.KLINES): "/openApi/spot/v2/market/kline",
        (SWAP, Endpoint.TICKER): "/openApi/swap/v2/quote/ticker",
        (SPOT, Endpoint.TICKER): "/openApi/spot/v1/ticker/24hr",
        (SWAP, Endpoint.SERVER_TIME): "/openApi/swap/v2/server/time",
    }


# --- parsing the documented bodies ----------------------------------------------------------------


def test_r1_swap_klines() -> None:
    (kline,) = parse_klines(SWAP, frames.R1_SWAP_KLINES, "KNC/USDT:USDT", "1h")
    assert kline == Kline(
        "bingx",
        "KNC/USDT:USDT",
        "1h",
        1702717200000,
        open=Decimal("0.7034"),
        high=Decimal("0.7081"),
        low=Decimal("0.7033"),
        close=Decimal("0.7065"),
        volume=Decimal("635494.00"),
        closed=False,  # the newest candle, and swap sends no server time to prove it over
    )


def test_r2_spot_klines_come_out_oldest_first_and_the_newest_is_still_open() -> None:
    klines = parse_klines(SPOT, frames.R2_SPOT_KLINES, "BTC/USDT", "1m")
    assert [k.open_time for k in klines] == [1702720380000 + i * 60_000 for i in range(5)]
    assert [k.closed for k in klines] == [True, True, True, True, False]
    oldest = klines[0]
    assert (oldest.open, oldest.high, oldest.low, oldest.close, oldest.volume) == (
        Decimal("42199.72"),
        Decimal("42204.53"),
        Decimal("42180.2"),
        Decimal("42182.76"),
        Decimal("1.1"),
    )
    assert {(k.exchange, k.symbol, k.timeframe) for k in klines} == {("bingx", "BTC/USDT", "1m")}


def test_the_newest_candle_is_closed_once_the_server_clock_reaches_the_next_open() -> None:
    body = json.loads(frames.R2_SPOT_KLINES)
    body["timestamp"] = 1702720680000  # the newest candle (…620000) ends here
    klines = parse_klines(SPOT, json.dumps(body).encode(), "BTC/USDT", "1m")
    assert all(k.closed for k in klines)
    body["timestamp"] = 1702720679999
    assert not parse_klines(SPOT, json.dumps(body).encode(), "BTC/USDT", "1m")[-1].closed


def test_klines_are_sorted_and_deduplicated_by_open_time() -> None:
    row = json.loads(frames.R1_SWAP_KLINES)["data"][0]
    rows = [row | {"time": t, "close": str(t % 7)} for t in (1702720800000, 1702717200000, 1702720800000)]
    body = json.dumps({"code": 0, "msg": "", "data": rows}).encode()
    klines = parse_klines(SWAP, body, "KNC/USDT:USDT", "1h")
    assert [(k.open_time, k.closed) for k in klines] == [(1702717200000, True), (1702720800000, False)]
    assert parse_klines(SWAP, b'{"code":0,"msg":"","data":[]}', "KNC/USDT:USDT", "1h") == []


def test_r3_swap_ticker() -> None:
    tick = parse_ticker(SWAP, frames.R3_SWAP_TICKER, "SFP/USDT:USDT")
    assert tick == Tick(
        "bingx",
        "SFP/USDT:USDT",
        1702719833853,  # the later of openTime and closeTime: swap replies carry no server time
        Decimal("0.7409"),
        bid=Decimal("0.7413"),
        ask=Decimal("0.7414"),
        bid_size=Decimal("84"),
        ask_size=Decimal("99"),
        volume_24h=Decimal("4308212"),
    )


def test_r4_spot_ticker() -> None:
    tick = parse_ticker(SPOT, frames.R4_SPOT_TICKER, "BTC/USDT")
    assert tick == Tick(
        "bingx",
        "BTC/USDT",
        1702720823624,
        Decimal("42215.15"),
        bid=Decimal("42214.65"),
        ask=Decimal("42215.55"),
        bid_size=Decimal("0.8962"),
        ask_size=Decimal("2.20125"),
        volume_24h=Decimal("5099.21"),
    )
    with pytest.raises(ProtocolError, match="no ticker for 'ETH-USDT'") as info:
        parse_ticker(SPOT, frames.R4_SPOT_TICKER, "ETH/USDT")
    assert info.value.kind is ErrorKind.BAD_FIELD


def test_r5_server_time() -> None:
    assert parse_server_time(frames.R5_SERVER_TIME) == 1675319535362


# --- error replies --------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [200, 429])
def test_rate_limit_code(status: int) -> None:
    with pytest.raises(RateLimitedError) as info:
        parse_envelope(frames.RATE_LIMITED, status=status)
    assert info.value.code == 100410
    assert "busy" in info.value.message


def test_http_429_without_a_body_is_rate_limited() -> None:
    with pytest.raises(RateLimitedError) as info:
        parse_envelope(b"Too Many Requests", status=429)
    assert info.value.code == 429


@pytest.mark.parametrize("status", [200, 400])
def test_error_codes_are_read_whatever_the_status(status: int) -> None:
    with pytest.raises(ExchangeError) as info:
        parse_klines(SWAP, frames.INVALID_PARAMS, "BTC/USDT:USDT", "1m", status=status)
    assert not isinstance(info.value, RateLimitedError)
    assert info.value.code == 80014
    assert info.value.message.startswith("Invalid parameters")


def test_the_error_body_as_docs_quote_it_is_not_json() -> None:
    # BINGX.md §3 copies ccxt's comment, whose inner quotes are unescaped: no server could send it.
    with pytest.raises(ProtocolError) as info:
        parse_envelope(frames.INVALID_PARAMS_AS_QUOTED, status=400)
    assert info.value.kind is ErrorKind.BAD_JSON


def test_an_html_5xx_is_a_retryable_exchange_error() -> None:
    with pytest.raises(ExchangeError) as info:
        parse_server_time(b"<html><body><h1>502 Bad Gateway</h1></body></html>", status=502)
    assert info.value.code == 502
    with pytest.raises(ExchangeError, match="HTTP 500") as info:
        parse_ticker(SWAP, b"<html>oops</html>", "BTC/USDT:USDT", status=500)
    assert info.value.code == 500


def test_a_success_code_on_an_error_status_is_still_an_error() -> None:
    with pytest.raises(ExchangeError) as info:
        parse_server_time(frames.R5_SERVER_TIME, status=503)
    assert info.value.code == 503


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        (b"<html>hello</html>", ErrorKind.BAD_JSON),
        (b"", ErrorKind.BAD_JSON),
        (b"null", ErrorKind.BAD_FIELD),
        (b'{"msg":"","data":[]}', ErrorKind.BAD_FIELD),
        (b'{"code":"0","data":[]}', ErrorKind.BAD_FIELD),
        (b'{"code":0,"msg":""}', ErrorKind.BAD_FIELD),
        (b'{"code":0,"msg":"","data":{}}', ErrorKind.BAD_FIELD),
        (
            b'{"code":0,"msg":"","data":[{"open":"1","close":"1","high":"1","low":"1","volume":"1"}]}',
            ErrorKind.BAD_FIELD,
        ),
        (
            b'{"code":0,"msg":"","data":[{"open":"x","close":"1","high":"1","low":"1","volume":"1","time":1}]}',
            ErrorKind.BAD_FIELD,
        ),
        (b'{"code":0,"msg":"","data":[[1,2,3]]}', ErrorKind.BAD_FIELD),
    ],
)
def test_unreadable_bodies(body: bytes, kind: ErrorKind) -> None:
    with pytest.raises(ProtocolError) as info:
        parse_klines(SWAP, body, "BTC/USDT:USDT", "1m")
    assert info.value.kind is kind


def test_bad_fields_name_the_endpoint_and_field() -> None:
    with pytest.raises(ProtocolError, match="'serverTime'") as info:
        parse_server_time(b'{"code":0,"msg":"","data":{"serverTime":"soon"}}')
    assert info.value.topic == "/openApi/swap/v2/server/time"


# --- the HTTP calls, against a loopback server ----------------------------------------------------


@dataclass
class RestServer:
    """A tiny HTTP/1.1 server on loopback answering each path with a canned (status, body).

    ``content_encoding`` is sent as the header of that name (the bodies are sent as given);
    ``chunked`` sends them without a length, in chunks of 64 KiB. With ``answers_per_connection``
    a connection that has answered that many requests is closed when the next one arrives,
    unanswered: a server whose keep-alive ended as the client reused the connection.
    """

    replies: dict[str, tuple[int, bytes]]
    url: str = ""
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    content_encoding: str | None = None
    chunked: bool = False
    answers_per_connection: int | None = None
    connections: int = 0

    async def handle(self, stream: trio.SocketStream) -> None:
        with contextlib.suppress(trio.BrokenResourceError):  # a client may give up on a body
            await self._serve(stream)

    async def _serve(self, stream: trio.SocketStream) -> None:
        self.connections += 1
        connection = h11.Connection(h11.SERVER)
        answered = 0
        while True:
            event = connection.next_event()
            if event is h11.NEED_DATA:
                connection.receive_data(await stream.receive_some(65536))
            elif isinstance(event, h11.Request):
                if answered == self.answers_per_connection:
                    return
                answered += 1
                target = urlsplit(event.target.decode())
                self.requests.append((target.path, dict(parse_qsl(target.query))))
                status, body = self.replies.get(target.path, (404, b"not found"))
            elif isinstance(event, h11.EndOfMessage):
                headers = [("content-type", "application/json")]
                if self.content_encoding is not None:
                    headers.append(("content-encoding", self.content_encoding))
                if not self.chunked:
                    headers.append(("content-length", str(len(body))))
                pieces = [body[i : i + 65536] for i in range(0, len(body), 65536)] if self.chunked else [body]
                for reply in (
                    h11.Response(status_code=status, headers=headers),
                    *(h11.Data(data=piece) for piece in pieces),
                    h11.EndOfMessage(),
                ):
                    await stream.send_all(connection.send(reply) or b"")
                if connection.our_state is not h11.DONE or connection.their_state is not h11.DONE:
                    return
                connection.start_next_cycle()
            else:  # the client closed the connection
                return


async def serve_rest(nursery: trio.Nursery, **options: Any) -> RestServer:
    """A RestServer (``options`` are its fields) serving in ``nursery``, its URL set."""
    rest = RestServer({}, **options)
    listeners = await nursery.start(partial(trio.serve_tcp, rest.handle, 0, host="127.0.0.1"))
    host, port = listeners[0].socket.getsockname()[:2]
    rest.url = f"http://{host}:{port}/"  # trailing slash on purpose: the client must not double it
    return rest


@pytest.fixture
async def server(nursery: trio.Nursery) -> AsyncIterator[RestServer]:
    yield await serve_rest(nursery)
    nursery.cancel_scope.cancel()


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    # base_url points nowhere useful: the exchange must build absolute URLs from its rest_url.
    async with httpx.AsyncClient(base_url="http://127.0.0.1:9", timeout=5) as client:
        yield client


async def test_fetch_klines_asks_for_the_range_and_returns_it(server: RestServer, http: httpx.AsyncClient) -> None:
    server.replies[PATHS[(SPOT, Endpoint.KLINES)]] = (200, frames.R2_SPOT_KLINES)
    bingx = BingX(rest_url=server.url)
    with trio.fail_after(10):
        klines = await bingx.fetch_klines(http, "BTC/USDT", "1m", start_ms=1702720440000, end_ms=1702720560000, limit=3)
    assert server.requests == [
        (
            "/openApi/spot/v2/market/kline",
            {
                "symbol": "BTC-USDT",
                "interval": "1m",
                "limit": "3",
                "startTime": "1702720440000",
                "endTime": "1702720560000",
            },
        )
    ]
    # The server here ignored the range; the client still returns only what was asked for.
    assert [(k.open_time, k.closed) for k in klines] == [
        (1702720440000, True),
        (1702720500000, True),
        (1702720560000, True),
    ]


async def test_fetch_ticker_and_server_time(server: RestServer, http: httpx.AsyncClient) -> None:
    server.replies[PATHS[(SWAP, Endpoint.TICKER)]] = (200, frames.R3_SWAP_TICKER)
    server.replies[PATHS[(SWAP, Endpoint.SERVER_TIME)]] = (200, frames.R5_SERVER_TIME)
    bingx = BingX(rest_url=server.url)
    with trio.fail_after(10):
        tick = await bingx.fetch_ticker(http, "SFP/USDT:USDT")
        server_time = await bingx.fetch_server_time(http)
    assert tick.last == Decimal("0.7409")
    assert server_time == 1675319535362
    assert server.requests == [
        ("/openApi/swap/v2/quote/ticker", {"symbol": "SFP-USDT"}),
        ("/openApi/swap/v2/server/time", {}),
    ]


async def test_fetch_errors_come_back_typed(server: RestServer, http: httpx.AsyncClient) -> None:
    server.replies[PATHS[(SWAP, Endpoint.KLINES)]] = (429, frames.RATE_LIMITED)
    server.replies[PATHS[(SWAP, Endpoint.TICKER)]] = (500, b"<html>Internal Server Error</html>")
    bingx = BingX(rest_url=server.url)
    with trio.fail_after(10):
        with pytest.raises(RateLimitedError):
            await bingx.fetch_klines(http, "BTC/USDT:USDT", "1m")
        with pytest.raises(ExchangeError) as info:
            await bingx.fetch_ticker(http, "BTC/USDT:USDT")
    assert info.value.code == 500


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda b, h: b.fetch_klines(h, "BTC/USDT:USDT", "1m", limit=1441), "invalid limit 1441"),
        (lambda b, h: b.fetch_klines(h, "BTC/USDT:USDT", "1m", limit=0), "invalid limit 0"),
        (lambda b, h: b.fetch_klines(h, "BTC/USDT:USDT", "2m"), "invalid timeframe '2m'"),
        (lambda b, h: b.fetch_klines(h, "BTC/USDT:USDT", "1m", start_ms=2, end_ms=1), "start_ms 2 is after"),
        (lambda b, h: b.fetch_klines(h, "BTC/USD:BTC", "1m"), "'BTC/USD:BTC'"),
        (lambda b, h: b.fetch_ticker(h, "btc-usdt"), "invalid symbol 'btc-usdt'"),
    ],
)
async def test_bad_arguments_fail_before_any_request(
    server: RestServer,
    http: httpx.AsyncClient,
    call: Callable[[BingX, httpx.AsyncClient], Awaitable[object]],
    match: str,
) -> None:
    with pytest.raises(ValueError, match=match):
        await call(BingX(rest_url=server.url), http)
    assert server.requests == []


async def test_a_kept_alive_connection_closed_unanswered_is_retried_once_on_a_new_one(
    nursery: trio.Nursery, http: httpx.AsyncClient
) -> None:
    server = await serve_rest(nursery, answers_per_connection=1)
    server.replies[PATHS[(SWAP, Endpoint.SERVER_TIME)]] = (200, frames.R5_SERVER_TIME)
    bingx = BingX(rest_url=server.url)
    with trio.fail_after(10):
        for _ in range(3):
            assert await bingx.fetch_server_time(http) == 1675319535362
    assert server.connections == 3  # each reuse met a closed connection and went to a new one
    assert len(server.requests) == 3


async def test_a_server_that_never_answers_fails_after_the_one_retry(
    nursery: trio.Nursery, http: httpx.AsyncClient
) -> None:
    server = await serve_rest(nursery, answers_per_connection=0)
    bingx = BingX(rest_url=server.url)
    with trio.fail_after(10), pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
        await bingx.fetch_server_time(http)
    assert server.connections == 2


def test_urls() -> None:
    bingx = BingX()
    assert bingx.ws_url(SWAP) == "wss://open-api-swap.bingx.com/swap-market"
    assert bingx.ws_url(SPOT) == "wss://open-api-ws.bingx.com/market"
    assert bingx.rest_url == "https://open-api.bingx.com"
    sim = BingX(ws_url="ws://127.0.0.1:1/swap-market", spot_ws_url="ws://127.0.0.1:1/market", rest_url="http://x/")
    assert (sim.ws_url(SWAP), sim.ws_url(SPOT), sim.rest_url) == (
        "ws://127.0.0.1:1/swap-market",
        "ws://127.0.0.1:1/market",
        "http://x",
    )
    assert sim.new_codec(SPOT).market is SPOT
    one_path = BingX(ws_url="ws://127.0.0.1:1/swap-market", spot_ws_url="ws://127.0.0.1:1/swap-market")
    assert one_path.ws_url(SPOT) == one_path.ws_url(SWAP)  # a server serving both markets on one path
    with pytest.raises(InvalidValueError, match="for a spot symbol: /swap-market is the path of the swap socket"):
        BingX.url_options(SPOT, ws_url="ws://127.0.0.1:1/swap-market", rest_url=None)
    with pytest.raises(InvalidValueError, match="for a swap symbol: /market is the path of the spot socket"):
        BingX.url_options(SWAP, ws_url="ws://127.0.0.1:1/market/", rest_url=None)
