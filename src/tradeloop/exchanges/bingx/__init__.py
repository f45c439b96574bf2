"""BingX: public market data of USDT-margined perpetual swaps and spot pairs.

The exchange is three modules: :mod:`.wire` (how BingX spells symbols, timeframes and numbers),
:mod:`.codec` (the sans-IO WebSocket protocol) and :mod:`.rest` (REST paths and reply parsing).
This module binds them to URLs and performs the REST calls with the caller's HTTP client, every
frame and body read within one :class:`~tradeloop.exchanges.limits.PeerLimits`.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Final
from urllib.parse import urlsplit

import httpx

from ...errors import InvalidValueError
from ...models import Kline, Tick
from ...symbols import Market, validate_timeframe
from ...urls import parse_url
from .. import register_exchange
from ..base import Exchange, QueryParams, Topic, kline_query, within
from ..limits import DEFAULT_LIMITS, PeerLimits, RestBody, get_body
from .codec import BingXCodec, data_type
from .rest import MAX_KLINES, PATHS, Endpoint, parse_klines, parse_server_time, parse_ticker
from .wire import bingx_id, unified_symbol

__all__ = ["BingX", "BingXCodec", "bingx_id", "data_type", "unified_symbol"]

SWAP_WS_URL: Final = "wss://open-api-swap.bingx.com/swap-market"
SPOT_WS_URL: Final = "wss://open-api-ws.bingx.com/market"
REST_URL: Final = "https://open-api.bingx.com"


@register_exchange
class BingX(Exchange):
    """BingX, live by default; pass other URLs for the embedded simulator or the VST demo.

    Raises InvalidValueError for a URL of the wrong scheme, without a host or with a bad port.

    ``limits`` bounds what the exchange (or whatever answers at those URLs) can make tradeloop
    allocate: inflated frame size, REST body size, JSON depth.
    """

    name = "bingx"

    def __init__(
        self,
        *,
        ws_url: str = SWAP_WS_URL,
        spot_ws_url: str = SPOT_WS_URL,
        rest_url: str = REST_URL,
        limits: PeerLimits = DEFAULT_LIMITS,
    ) -> None:
        parse_url(ws_url, ("wss", "ws"), "BingX ws_url")
        parse_url(spot_ws_url, ("wss", "ws"), "BingX spot_ws_url")
        parse_url(rest_url, ("https", "http"), "BingX rest_url")
        self._ws_urls = {Market.SWAP: ws_url, Market.SPOT: spot_ws_url}
        self.rest_url = rest_url.rstrip("/")
        self.limits = limits

    def __repr__(self) -> str:
        swap, spot = self._ws_urls[Market.SWAP], self._ws_urls[Market.SPOT]
        return f"BingX(ws_url={swap!r}, spot_ws_url={spot!r}, rest_url={self.rest_url!r})"

    @classmethod
    def url_options(cls, market: Market, *, ws_url: str | None, rest_url: str | None) -> dict[str, str]:
        """As :meth:`Exchange.url_options`, refusing the other market's socket for ``market``: BingX
        would reject every subscription with a confusing reason ("unknown kline interval '1min'"),
        the real mistake being the URL. (The constructor takes any path: a proxy, or a test server
        serving both markets on one path.)"""
        if ws_url:
            other = Market.SPOT if market is Market.SWAP else Market.SWAP
            if urlsplit(ws_url).path.rstrip("/") == _SOCKET_PATHS[other]:
                example = "BTC/USDT" if market is Market.SPOT else "BTC/USDT:USDT"
                raise InvalidValueError(
                    f"invalid BingX WebSocket URL {ws_url!r} for a {market.value} symbol: "
                    f"{_SOCKET_PATHS[other]} is the path of the {other.value} socket; {market.value} symbols "
                    f"(such as {example!r}) stream from {_SOCKET_PATHS[market]}"
                )
        return super().url_options(market, ws_url=ws_url, rest_url=rest_url)

    def ws_url(self, key: Hashable) -> str:
        return self._ws_urls[Market(str(key))]

    def new_codec(self, key: Hashable) -> BingXCodec:
        return BingXCodec(Market(str(key)), limits=self.limits)

    def check_topic(self, topic: Topic) -> None:
        data_type(topic)

    async def fetch_klines(
        self,
        http: httpx.AsyncClient,
        symbol: str,
        timeframe: str,
        *,
        start_ms: int | None = None,
        end_ms: int | None = None,
        limit: int = 500,
    ) -> list[Kline]:
        market, symbol_id = bingx_id(symbol)
        validate_timeframe(timeframe)
        if not 1 <= limit <= MAX_KLINES:
            raise InvalidValueError(f"invalid limit {limit!r}: BingX returns 1 to {MAX_KLINES} candles per request")
        params = kline_query(symbol_id, timeframe, limit, start_ms, end_ms)
        response = await self._get(http, market, Endpoint.KLINES, params)
        klines = parse_klines(
            market, response.content, symbol, timeframe, status=response.status, max_depth=self.limits.max_json_depth
        )
        return within(klines, start_ms, end_ms)

    async def fetch_ticker(self, http: httpx.AsyncClient, symbol: str) -> Tick:
        market, symbol_id = bingx_id(symbol)
        response = await self._get(http, market, Endpoint.TICKER, {"symbol": symbol_id})
        return parse_ticker(
            market, response.content, symbol, status=response.status, max_depth=self.limits.max_json_depth
        )

    async def fetch_server_time(self, http: httpx.AsyncClient) -> int:
        """BingX's clock, epoch milliseconds (the swap API's; both markets share it)."""
        response = await self._get(http, Market.SWAP, Endpoint.SERVER_TIME, {})
        return parse_server_time(response.content, status=response.status, max_depth=self.limits.max_json_depth)

    async def _get(self, http: httpx.AsyncClient, market: Market, endpoint: Endpoint, params: QueryParams) -> RestBody:
        """GET an absolute URL (never the client's base_url): one client may serve several exchanges.

        The body is read within ``limits.max_body_size`` (ProtocolError TOO_LARGE beyond it).
        """
        url = self.rest_url + PATHS[(market, endpoint)]
        response = await get_body(http, url, params=params, max_size=self.limits.max_body_size)
        return response


_SOCKET_PATHS: Final = {Market.SWAP: urlsplit(SWAP_WS_URL).path, Market.SPOT: urlsplit(SPOT_WS_URL).path}

