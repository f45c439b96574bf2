"""The simulator's REST API in Binance's dialect: ``/api/v3`` (spot) and ``/fapi/v1`` (USDⓈ-M).

Bodies follow BINANCE.md §3: klines as 12-element rows of strings and integers, oldest first,
selected by ``startTime``/``endTime``/``limit`` as §3.1 describes; tickers and ``exchangeInfo`` with
the fields ccxt's ``load_markets`` reads (§3.2); errors as ``{"code": -1121, "msg": …}`` with HTTP
400, and HTTP 429 with ``Retry-After`` when rate limited. ccxt also asks COIN-M
(``/dapi/v1/exchangeInfo``), which lists nothing here. The HTTP machinery is the BingX server's.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Final

from ..symbols import TIMEFRAMES, Market, next_open_time
from .binance_protocol import binance_id, spot_text
from .market import SymbolSpec
from .protocol import percent_text
from .rest import RestServer, _BadParameter, _int_param, _json, _Params, _Response

__all__ = ["BinanceRestServer"]

MAX_LIMIT: Final = {Market.SPOT: 1000, Market.SWAP: 1500}
DEFAULT_LIMIT: Final = 500
PERPETUAL_DELIVERY: Final = 4133404800000
"""The delivery date Binance gives perpetuals (ccxt reads it as "no expiry")."""
_LEGAL_SYMBOL: Final = re.compile(r"^[A-Z0-9-_.]{1,20}$")
RATE_LIMITED: Final = {
    "code": -1003,
    "msg": "Too many requests; current limit of IP(127.0.0.1) is 6000 requests per minute. "
    "Please use WebSocket Streams for live updates to avoid polling the API.",
}


class _BinanceError(_BadParameter):
    """A request Binance refuses, with its error code (§3.4)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


class BinanceRestServer(RestServer):
    """Answers Binance's public REST endpoints from the market model.

    Every answer carries ``X-MBX-USED-WEIGHT-1M``: here one unit per request in the current minute
    of the simulator's clock (Binance weighs endpoints differently; nothing here enforces a limit).
    """

    _minute = -1
    _used = 0

    def routes(self) -> dict[str, tuple[Market, Callable[[_Params], Any]]]:
        spot, swap = Market.SPOT, Market.SWAP
        return {
            "/api/v3/klines": (spot, lambda params: self._binance_klines(spot, params)),
            "/fapi/v1/klines": (swap, lambda params: self._binance_klines(swap, params)),
            "/api/v3/ticker/24hr": (spot, lambda params: self._binance_tickers(spot, params)),
            "/fapi/v1/ticker/24hr": (swap, lambda params: self._binance_tickers(swap, params)),
            "/api/v3/exchangeInfo": (spot, lambda params: self._exchange_info(spot)),
            "/fapi/v1/exchangeInfo": (swap, lambda params: self._exchange_info(swap)),
            "/dapi/v1/exchangeInfo": (swap, lambda params: {"timezone": "UTC", "symbols": []}),
            "/api/v3/time": (spot, lambda params: {"serverTime": self.clock.now_ms()}),
            "/fapi/v1/time": (swap, lambda params: {"serverTime": self.clock.now_ms()}),
            "/api/v3/ping": (spot, lambda params: {}),
            "/fapi/v1/ping": (swap, lambda params: {}),
        }

    def rate_limited(self) -> _Response:
        return _Response(429, _json(RATE_LIMITED), headers=(("Retry-After", "1"),))

    def success(self, market: Market, data: Any, now_ms: int) -> _Response:
        minute = now_ms // 60_000
        if minute != self._minute:
            self._minute, self._used = minute, 0
        self._used += 1
        return _Response(200, _json(data), headers=(("X-MBX-USED-WEIGHT-1M", str(self._used)),))

    def failure(self, market: Market, exc: _BadParameter, now_ms: int) -> _Response:
        code = exc.code if isinstance(exc, _BinanceError) else -1100
        return _Response(400, _json({"code": code, "msg": str(exc)}))

    # -- endpoints ------------------------------------------------------------------------------

    def _binance_symbol(self, params: _Params, *, required: bool = True) -> str | None:
        """The model's id of the ``symbol`` parameter (``BTCUSDT`` -> ``BTC-USDT``)."""
        text = params.get("symbol", "")
        if not text:
            if required:
                raise _BinanceError(-1102, "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed.")
            return None
        if not _LEGAL_SYMBOL.match(text):
            raise _BinanceError(
                -1100, "Illegal characters found in parameter 'symbol'; legal range is '^[A-Z0-9-_.]{1,20}$'."
            )
        for symbol_id in self.model.specs:
            if binance_id(symbol_id) == text:
                return symbol_id
        raise _BinanceError(-1121, "Invalid symbol.")

    def _binance_klines(self, market: Market, params: _Params) -> list[Any]:
        symbol_id = self._binance_symbol(params)
        assert symbol_id is not None
        timeframe = params.get("interval", "")
        if not timeframe:
            raise _BinanceError(-1102, "Mandatory parameter 'interval' was not sent, was empty/null, or malformed.")
        if timeframe not in TIMEFRAMES:
            raise _BinanceError(-1120, "Invalid interval.")
        start_ms = _int_param(params, "startTime")
        end_ms = _int_param(params, "endTime")
        limit = _int_param(params, "limit")
        if limit is None:
            limit = DEFAULT_LIMIT
        elif not 1 <= limit <= MAX_LIMIT[market]:
            raise _BinanceError(-1130, "Data sent for parameter 'limit' is not valid.")
        if start_ms is not None and end_ms is not None and start_ms > end_ms:
            return []
        now_ms = self.clock.now_ms()
        spec = self.model.spec(symbol_id)
        n = _texts(market, spec)
        rows: list[Any] = []
        for open_time in self.model.open_times(timeframe, start_ms, end_ms, now_ms, limit):
            c = self.model.candle(symbol_id, timeframe, open_time, now_ms)
            assert c is not None
            rows.append(
                [
                    c.open_time,
                    n(spec.price_text(c.open)),
                    n(spec.price_text(c.high)),
                    n(spec.price_text(c.low)),
                    n(spec.price_text(c.close)),
                    n(spec.qty_text(c.volume)),
                    next_open_time(timeframe, c.open_time) - 1,
                    n(spec.quote_text(c.quote)),
                    c.trades,
                    n(spec.qty_text(c.volume // 2)),
                    n(spec.quote_text(c.quote // 2)),
                    "0",
                ]
            )
        return rows

    def _binance_tickers(self, market: Market, params: _Params) -> Any:
        """One object with ``symbol``, an array of every symbol without (§3.3)."""
        only = self._binance_symbol(params, required=False)
        tickers = []
        for symbol_id, spec, t, now_ms in self._tickers(only):
            n = _texts(market, spec)
            row: dict[str, Any] = {
                "symbol": binance_id(symbol_id),
                "priceChange": n(spec.price_text(t.last - t.open)),
                "priceChangePercent": percent_text(t.last - t.open, t.open),
                "weightedAvgPrice": n(spec.price_text(t.last)),
                "lastPrice": n(spec.price_text(t.last)),
                "lastQty": n(spec.qty_text(t.last_qty)),
            }
            if market is Market.SPOT:
                row["prevClosePrice"] = n(spec.price_text(t.open))
                row["bidPrice"], row["bidQty"] = n(spec.price_text(t.bid)), n(spec.qty_text(t.bid_qty))
                row["askPrice"], row["askQty"] = n(spec.price_text(t.ask)), n(spec.qty_text(t.ask_qty))
            row.update(
                {
                    "openPrice": n(spec.price_text(t.open)),
                    "highPrice": n(spec.price_text(t.high)),
                    "lowPrice": n(spec.price_text(t.low)),
                    "volume": n(spec.qty_text(t.volume)),
                    "quoteVolume": n(spec.quote_text(t.quote)),
                    "openTime": now_ms - 86_400_000,
                    "closeTime": now_ms,
                    "firstId": 0,
                    "lastId": t.step,
                    "count": t.step + 1,
                }
            )
            tickers.append(row)
        return tickers if only is None else tickers[0]

    def _exchange_info(self, market: Market) -> Any:
        symbols = []
        for spec in self.model.specs.values():
            base, quote = spec.symbol_id.split("-")
            tick, lot = str(spec.tick_size), str(spec.lot_size)
            lots = {"minQty": lot, "maxQty": "100000", "stepSize": lot}
            notional = "NOTIONAL" if market is Market.SPOT else "MIN_NOTIONAL"
            filters = [
                {"filterType": "PRICE_FILTER", "minPrice": tick, "maxPrice": "1000000", "tickSize": tick},
                {"filterType": "LOT_SIZE", **lots},
                {"filterType": "MARKET_LOT_SIZE", **lots},
                {"filterType": notional, "minNotional": "5", "notional": "5"},
            ]
            entry: dict[str, Any] = {"symbol": binance_id(spec.symbol_id)}
            if market is Market.SWAP:
                entry.update(
                    {"pair": entry["symbol"], "contractType": "PERPETUAL", "deliveryDate": PERPETUAL_DELIVERY}
                )
                entry.update({"onboardDate": 1569398400000, "status": "TRADING", "marginAsset": quote})
            else:
                entry["status"] = "TRADING"
            entry.update(
                {
                    "baseAsset": base,
                    "baseAssetPrecision": 8,
                    "quoteAsset": quote,
                    "quotePrecision": 8,
                    "quoteAssetPrecision": 8,
                    "pricePrecision": spec.price_decimals,
                    "quantityPrecision": spec.qty_decimals,
                    "orderTypes": ["LIMIT", "MARKET"],
                    "filters": filters,
                }
            )
            if market is Market.SPOT:
                entry.update({"isSpotTradingAllowed": True, "isMarginTradingAllowed": False})
                entry.update({"permissions": [], "permissionSets": [["SPOT"]]})
            else:
                entry.update({"underlyingType": "COIN", "timeInForce": ["GTC", "IOC", "FOK", "GTX"]})
            symbols.append(entry)
        weight = 6000 if market is Market.SPOT else 2400
        rate_limits = [{"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": weight}]
        return {
            "timezone": "UTC",
            "serverTime": self.clock.now_ms(),
            "rateLimits": rate_limits,
            "exchangeFilters": [],
            "symbols": symbols,
        }


def _texts(market: Market, spec: SymbolSpec) -> Callable[[str], str]:
    """How ``market`` writes a decimal of ``spec``: spot pads to 8 places, USDⓈ-M keeps its precision."""
    return spot_text if market is Market.SPOT else str
