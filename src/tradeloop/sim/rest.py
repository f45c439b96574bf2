"""The simulator's REST API: a small HTTP/1.1 server (h11 on anyio) with BingX's public endpoints.

Envelopes, field types and error behaviour follow BINGX.md §3: swap sends strings inside
``{"code","msg","data"}``, spot sends JSON numbers inside ``{"code","timestamp","data"}``, and a
bad parameter is an error envelope (80014 swap, 100400 spot) with HTTP 200. Connections are
kept alive (httpx reuses them); every read and write is bounded by a timeout, and a request body
(GET needs none) by :data:`MAX_REQUEST_BODY`.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any
from urllib.parse import parse_qs, urlsplit

import anyio
import anyio.abc
import h11

from ..symbols import TIMEFRAMES, Market, next_open_time
from .config import SimClock, SimStats
from .faults import Faults, Hostile, RestDown, gzip_bomb, huge_body, nested_json
from .listening import Listener, serve
from .market import MarketModel, SymbolSpec, TickerValues
from .protocol import SPOT_ERROR, SWAP_ERROR, number, percent_text

__all__ = ["RestServer"]

logger = logging.getLogger(__name__)
_CONNECTION_ENDED = (anyio.BrokenResourceError, anyio.ClosedResourceError)
"""What a REST connection raises once its client is gone."""

MAX_LIMIT = 1440
DEFAULT_LIMIT = 500
IDLE_TIMEOUT = 60.0
"""Keep-alive: close a connection idle (or sending a request) for this long."""
SEND_TIMEOUT = 30.0
MAX_REQUEST_BODY = 65_536
"""Bytes of request body read before answering 413: a client cannot keep the server reading."""
RATE_LIMITED_BODY = {"code": 100410, "msg": "The current system is busy, please try again later"}
DOWN_BODY = b"<html><body><h1>503 Service Temporarily Unavailable</h1></body></html>\n"


@dataclass(frozen=True, slots=True)
class _Response:
    status: int
    body: bytes | Iterable[bytes]
    """Bytes are sent with a Content-Length; an iterable is sent chunked, as it is produced."""
    content_type: str = "application/json"
    content_encoding: str | None = None
    close: bool = False
    """Tell the client the connection ends after this response (``Connection: close``)."""
    headers: tuple[tuple[str, str], ...] = ()


class _BadParameter(Exception):
    """A request parameter is missing or wrong: answered with the market's error envelope."""


_Params = dict[str, str]


class RestServer:
    """Answers BingX's public REST endpoints from the market model."""

    def __init__(self, model: MarketModel, clock: SimClock, stats: SimStats, faults: Faults) -> None:
        self.model = model
        self.clock = clock
        self.stats = stats
        self.faults = faults
        self._routes: dict[str, tuple[Market, Callable[[_Params], Any]]] = self.routes()

    def routes(self) -> dict[str, tuple[Market, Callable[[_Params], Any]]]:
        """Path -> (market, handler of the query parameters returning the reply's data)."""
        return {
            "/openApi/swap/v3/quote/klines": (Market.SWAP, partial(self._klines, Market.SWAP)),
            "/openApi/spot/v2/market/kline": (Market.SPOT, partial(self._klines, Market.SPOT)),
            "/openApi/spot/v1/market/kline": (Market.SPOT, partial(self._klines, Market.SPOT)),
            "/openApi/spot/v2/quote/klines": (Market.SPOT, partial(self._klines, Market.SPOT)),
            "/openApi/swap/v2/quote/ticker": (Market.SWAP, self._swap_ticker),
            "/openApi/spot/v1/ticker/24hr": (Market.SPOT, self._spot_ticker),
            "/openApi/spot/v2/quote/ticker": (Market.SPOT, self._spot_ticker),
            "/openApi/swap/v2/server/time": (Market.SWAP, self._server_time),
            "/openApi/spot/v1/server/time": (Market.SPOT, self._server_time),
            "/openApi/swap/v2/quote/contracts": (Market.SWAP, self._contracts),
            "/openApi/spot/v1/common/symbols": (Market.SPOT, self._spot_symbols),
            # ccxt's load_markets also asks for coin-M contracts: the simulator has none.
            "/openApi/cswap/v1/market/contracts": (Market.SWAP, lambda params: []),
        }

    # -- the dialect: BingX's envelopes here; the Binance server overrides these -----------------

    def rate_limited(self) -> _Response:
        return _Response(429, _json(RATE_LIMITED_BODY))

    def success(self, market: Market, data: Any, now_ms: int) -> _Response:
        if market is Market.SWAP:
            return _Response(200, _json({"code": 0, "msg": "", "data": data}))
        return _Response(200, _json({"code": 0, "timestamp": now_ms, "data": data}))

    def failure(self, market: Market, exc: _BadParameter, now_ms: int) -> _Response:
        """A bad parameter: BingX answers HTTP 200 with the market's error envelope."""
        if market is Market.SWAP:
            return _Response(200, _json({"code": SWAP_ERROR, "msg": f"Invalid parameters, err: {exc}", "data": {}}))
        body = {"code": SPOT_ERROR, "msg": f"Invalid parameters, err: {exc}", "debugMsg": "", "timestamp": now_ms}
        return _Response(200, _json(body))

    # -- HTTP -----------------------------------------------------------------------------------

    async def serve(
        self, listener: Listener, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        async with anyio.create_task_group() as connections:
            connections.start_soon(serve, listener, self._handle, connections)
            task_status.started()

    async def _handle(self, stream: anyio.abc.ByteStream) -> None:
        connection = h11.Connection(h11.SERVER)
        try:
            while True:
                response: _Response | None = None
                with anyio.move_on_after(IDLE_TIMEOUT):
                    target = await self._read_request(connection, stream)
                    if target is None:
                        return
                    self.stats.rest_requests += 1
                    response = self.respond(target)
                if response is None:  # idle timeout, or the REST-down fault closing the connection
                    return
                with anyio.fail_after(SEND_TIMEOUT):
                    await _send(connection, stream, response)
                if connection.our_state is not h11.DONE or connection.their_state is not h11.DONE:
                    return
                connection.start_next_cycle()
        except h11.RemoteProtocolError as exc:
            logger.debug("bad HTTP request: %s", exc)
            if connection.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                status = exc.error_status_hint
                refusal = _Response(status, f"{status} {exc}".encode(), "text/plain", close=True)
                # The client may be gone already (a partial request, then close): its connection
                # ends here, never the server (found by an outside look: one such client ended
                # `tradeloop sim`).
                with anyio.move_on_after(SEND_TIMEOUT), contextlib.suppress(*_CONNECTION_ENDED):
                    await _send(connection, stream, refusal)
        except (*_CONNECTION_ENDED, TimeoutError) as exc:
            logger.debug("REST connection ended: %r", exc)
        finally:
            await anyio.aclose_forcefully(stream)

    @staticmethod
    async def _read_request(connection: h11.Connection, stream: anyio.abc.ByteStream) -> str | None:
        """The target of the next request (body read and ignored); None if the client left.

        Raises h11.RemoteProtocolError (status 413) for a body over :data:`MAX_REQUEST_BODY`.
        """
        target: str | None = None
        body_size = 0
        while True:
            event = connection.next_event()
            if event is h11.NEED_DATA:
                connection.receive_data(await _receive(stream))
            elif isinstance(event, h11.Request):
                method = event.method.decode("ascii", "replace")
                target = event.target.decode("ascii", "replace")
                target = target if method == "GET" else f"!{method} {target}"
            elif isinstance(event, h11.Data):
                body_size += len(event.data)
                if body_size > MAX_REQUEST_BODY:
                    raise h11.RemoteProtocolError(f"request body over {MAX_REQUEST_BODY} bytes", 413)
            elif isinstance(event, h11.EndOfMessage):
                return target
            elif isinstance(event, h11.ConnectionClosed):
                return None

    # -- routing --------------------------------------------------------------------------------

    def respond(self, target: str) -> _Response | None:
        """The response to a GET of ``target`` (``!METHOD target`` for other methods)."""
        if self.faults.rest_down is RestDown.CLOSE:
            return None
        if self.faults.rest_down is RestDown.HTTP_503:
            return _Response(503, DOWN_BODY, "text/html")
        if self.faults.rest_rate_limited:
            return self.rate_limited()
        if self.faults.hostile_rest is not None:
            self.faults.hostile_sent += 1
            return _hostile_response(self.faults.hostile_rest)
        if target.startswith("!"):
            return _Response(405, b"405 method not allowed", "text/plain")
        url = urlsplit(target)
        route = self._routes.get(url.path)
        if route is None:
            return _Response(404, b"404 page not found", "text/plain")
        market, handler = route
        params = {key: values[-1] for key, values in parse_qs(url.query, keep_blank_values=True).items()}
        now_ms = self.clock.now_ms()
        try:
            data = handler(params)
        except _BadParameter as exc:
            return self.failure(market, exc, now_ms)
        return self.success(market, data, now_ms)

    # -- endpoints ------------------------------------------------------------------------------

    def _symbol(self, params: _Params, *, required: bool = True) -> str | None:
        symbol_id = params.get("symbol")
        if symbol_id is None or symbol_id == "":
            if required:
                raise _BadParameter("symbol is required")
            return None
        if symbol_id not in self.model.specs:
            raise _BadParameter(f"unknown symbol {symbol_id!r}, expected one of {', '.join(self.model.specs)}")
        return symbol_id

    def _klines(self, market: Market, params: _Params) -> list[Any]:
        symbol_id = self._symbol(params)
        assert symbol_id is not None
        timeframe = params.get("interval", "")
        if timeframe not in TIMEFRAMES:
            raise _BadParameter(f"interval {timeframe!r} is not one of {', '.join(TIMEFRAMES)}")
        start_ms = _int_param(params, "startTime")
        end_ms = _int_param(params, "endTime")
        if start_ms is not None and end_ms is not None and start_ms > end_ms:
            raise _BadParameter(f"startTime {start_ms} is after endTime {end_ms}")
        limit = _int_param(params, "limit")
        if limit is None:
            limit = DEFAULT_LIMIT
        elif not 1 <= limit <= MAX_LIMIT:
            raise _BadParameter(f"limit {limit} is out of range 1..{MAX_LIMIT}")
        if params.get("timeZone", "0") != "0":
            raise _BadParameter("the simulator serves UTC candles only (timeZone=0)")
        now_ms = self.clock.now_ms()
        spec = self.model.spec(symbol_id)
        price, qty = spec.price_text, spec.qty_text
        rows: list[Any] = []
        for open_time in reversed(self.model.open_times(timeframe, start_ms, end_ms, now_ms, limit)):
            c = self.model.candle(symbol_id, timeframe, open_time, now_ms)
            assert c is not None
            if market is Market.SWAP:
                rows.append(
                    {
                        "open": price(c.open),
                        "close": price(c.close),
                        "high": price(c.high),
                        "low": price(c.low),
                        "volume": qty(c.volume),
                        "time": c.open_time,
                    }
                )
            else:
                rows.append(
                    [
                        c.open_time,
                        number(price(c.open)),
                        number(price(c.high)),
                        number(price(c.low)),
                        number(price(c.close)),
                        number(qty(c.volume)),
                        next_open_time(timeframe, c.open_time) - 1,
                        number(spec.quote_text(c.quote)),
                    ]
                )
        return rows

    def _swap_ticker(self, params: _Params) -> Any:
        """One ticker object for a symbol, a list of all without one (BINGX.md §3)."""
        only = self._symbol(params, required=False)
        tickers = [
            {
                "symbol": symbol_id,
                "priceChange": spec.price_text(t.last - t.open),
                "priceChangePercent": percent_text(t.last - t.open, t.open),
                "lastPrice": spec.price_text(t.last),
                "lastQty": spec.qty_text(t.last_qty),
                "highPrice": spec.price_text(t.high),
                "lowPrice": spec.price_text(t.low),
                "volume": spec.qty_text(t.volume),
                "quoteVolume": spec.quote_text(t.quote),
                "openPrice": spec.price_text(t.open),
                "openTime": t.open_time,
                "closeTime": t.last_time,
                "askPrice": spec.price_text(t.ask),
                "askQty": spec.qty_text(t.ask_qty),
                "bidPrice": spec.price_text(t.bid),
                "bidQty": spec.qty_text(t.bid_qty),
            }
            for symbol_id, spec, t, now_ms in self._tickers(only)
        ]
        return tickers if only is None else tickers[0]

    def _spot_ticker(self, params: _Params) -> Any:
        """Always a list, of one symbol or all."""
        return [
            {
                "symbol": symbol_id,
                "openPrice": number(spec.price_text(t.open)),
                "highPrice": number(spec.price_text(t.high)),
                "lowPrice": number(spec.price_text(t.low)),
                "lastPrice": number(spec.price_text(t.last)),
                "priceChange": number(spec.price_text(t.last - t.open)),
                "priceChangePercent": percent_text(t.last - t.open, t.open) + "%",
                "volume": number(spec.qty_text(t.volume)),
                "quoteVolume": number(spec.quote_text(t.quote)),
                "openTime": now_ms - 86_400_000,
                "closeTime": now_ms,
                "askPrice": number(spec.price_text(t.ask)),
                "askQty": number(spec.qty_text(t.ask_qty)),
                "bidPrice": number(spec.price_text(t.bid)),
                "bidQty": number(spec.qty_text(t.bid_qty)),
            }
            for symbol_id, spec, t, now_ms in self._tickers(self._symbol(params, required=False))
        ]

    def _tickers(self, only: str | None) -> Iterator[tuple[str, SymbolSpec, TickerValues, int]]:
        """Each served symbol (or ``only``) with its spec, 24h ticker and the time: both markets'
        ticker endpoints share the data and differ only in field names and number types."""
        now_ms = self.clock.now_ms()
        for symbol_id in self.model.specs if only is None else [only]:
            yield symbol_id, self.model.spec(symbol_id), self.model.ticker(symbol_id, now_ms), now_ms

    def _server_time(self, params: _Params) -> Any:
        return {"serverTime": self.clock.now_ms()}

    def _contracts(self, params: _Params) -> Any:
        contracts = []
        for contract_id, spec in enumerate(self.model.specs.values(), start=100):
            base, quote = spec.symbol_id.split("-")
            contracts.append(
                {
                    "contractId": str(contract_id),
                    "symbol": spec.symbol_id,
                    "size": str(spec.lot_size),
                    "quantityPrecision": spec.qty_decimals,
                    "pricePrecision": spec.price_decimals,
                    "feeRate": "0.0005",
                    "makerFeeRate": "0.0002",
                    "takerFeeRate": "0.0005",
                    "tradeMinLimit": 0,
                    "tradeMinQuantity": float(spec.lot_size),
                    "tradeMinUSDT": 2,
                    "maxLongLeverage": 125,
                    "maxShortLeverage": 125,
                    "currency": quote,
                    "asset": base,
                    "status": 1,
                    "apiStateOpen": "true",
                    "apiStateClose": "true",
                    "ensureTrigger": True,
                    "triggerFeeRate": "0.00020000",
                }
            )
        return contracts

    def _spot_symbols(self, params: _Params) -> Any:
        symbols = [
            {
                "symbol": spec.symbol_id,
                "minQty": float(spec.lot_size),
                "maxQty": 1_000_000,
                "minNotional": 5,
                "maxNotional": 20_000,
                "status": 1,
                "tickSize": float(spec.tick_size),
                "stepSize": float(spec.lot_size),
                "apiStateSell": True,
                "apiStateBuy": True,
                "timeOnline": 0,
                "offTime": 0,
                "maintainTime": 0,
            }
            for spec in self.model.specs.values()
        ]
        return {"symbols": symbols}


def _int_param(params: _Params, name: str) -> int | None:
    text = params.get(name)
    if text is None or text == "":
        return None
    if not text.isdigit():
        raise _BadParameter(f"{name} {text!r} is not a non-negative integer")
    return int(text)


def _json(body: Any) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()


def _hostile_response(kind: Hostile) -> _Response:
    if kind is Hostile.NESTED:
        return _Response(200, nested_json())
    if kind is Hostile.GZIP_BOMB:
        return _Response(200, gzip_bomb(), content_encoding="gzip")
    return _Response(200, huge_body())


async def _receive(stream: anyio.abc.ByteStream) -> bytes:
    """The next bytes from the client; b"" (h11's end of input) once it closed its side."""
    try:
        return await stream.receive(65536)
    except anyio.EndOfStream:
        return b""


async def _send(connection: h11.Connection, stream: anyio.abc.ByteStream, response: _Response) -> None:
    headers = [("Content-Type", response.content_type), *response.headers]
    if response.content_encoding is not None:
        headers.append(("Content-Encoding", response.content_encoding))
    if response.close:
        headers.append(("Connection", "close"))
    chunks = response.body
    if isinstance(chunks, bytes):
        headers.append(("Content-Length", str(len(chunks))))
        chunks = (chunks,)
    await stream.send(connection.send(h11.Response(status_code=response.status, headers=headers)) or b"")
    for chunk in chunks:
        await stream.send(connection.send(h11.Data(data=chunk)) or b"")
    await stream.send(connection.send(h11.EndOfMessage()) or b"")
