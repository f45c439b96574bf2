"""Binance: public market data of spot pairs and USDⓈ-M perpetual futures.

The exchange is three modules: :mod:`.wire` (how Binance spells symbols and which socket a stream
needs), :mod:`.codec` (the sans-IO WebSocket protocol) and :mod:`.rest` (REST paths and reply
parsing). This module binds them to URLs and performs the REST calls with the caller's HTTP client.

URLs given by the user are *origins* (``scheme://host:port``): Binance puts each market and, on
USDⓈ-M, each stream category under its own path (``/stream``, ``/market/stream``,
``/public/stream``; BINANCE.md §1.1), so the client adds the paths itself.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Final

import anyio
import httpx

from ...errors import InvalidValueError
from ...models import Kline, Tick
from ...symbols import Market, parse_symbol
from ...urls import parse_url
from .. import register_exchange
from ..base import Exchange, QueryParams, Topic, kline_query, within
from ..limits import DEFAULT_LIMITS, PeerLimits, RestBody, get_body
from .codec import BinanceCodec, socket_of, stream_name
from .rest import MAX_KLINES, PATHS, Endpoint, check_listed, parse_exchange_info, parse_klines, parse_ticker
from .wire import Socket, ambiguous_id_message, binance_id, unified_symbol

__all__ = ["Binance", "BinanceCodec", "Socket", "binance_id", "socket_of", "stream_name", "unified_symbol"]

SPOT_WS_ORIGIN: Final = "wss://stream.binance.com:9443"
USDM_WS_ORIGIN: Final = "wss://fstream.binance.com"
SPOT_REST_ORIGIN: Final = "https://api.binance.com"
USDM_REST_ORIGIN: Final = "https://fapi.binance.com"


def _origin(url: str, schemes: tuple[str, ...], what: str) -> str:
    """``url`` as an origin ``scheme://host[:port]``; InvalidValueError if it is no such URL or has a path or query."""
    parts = parse_url(url, schemes, f"Binance {what}")
    if parts.path not in ("", "/") or parts.query:
        raise InvalidValueError(
            f"invalid Binance {what} {url!r}: expected an origin such as {schemes[0]}://127.0.0.1:9000 "
            "(no path: the client adds Binance's paths per market)"
        )
    return f"{parts.scheme}://{parts.netloc}"


@register_exchange
class Binance(Exchange):
    """Binance, live by default; pass ``ws_url`` / ``rest_url`` origins for another server (the
    simulator serves both markets on one origin each)."""

    name = "binance"
    max_topics_per_socket = 1024
    max_subscriptions_per_second = 4.0
    """Binance allows 5 incoming messages a second per socket, pongs included, and closes the
    socket with 1008 past that (BINANCE.md §1.5, pitfall 3): 4 requests leave room for a pong."""
    pushes_closed_flag = True
    connection_lifetime = 86_400.0

    def __init__(
        self, *, ws_url: str | None = None, rest_url: str | None = None, limits: PeerLimits = DEFAULT_LIMITS
    ) -> None:
        self.limits = limits
        """Bounds on what the exchange may send (REST body size; the frame decoder caps messages)."""
        ws = None if ws_url is None else _origin(ws_url, ("wss", "ws"), "ws_url")
        rest = None if rest_url is None else _origin(rest_url, ("https", "http"), "rest_url")
        self._ws_origins = {Market.SPOT: ws or SPOT_WS_ORIGIN, Market.SWAP: ws or USDM_WS_ORIGIN}
        self._rest_origins = {Market.SPOT: rest or SPOT_REST_ORIGIN, Market.SWAP: rest or USDM_REST_ORIGIN}
        self._listed: dict[Market, dict[str, str]] = {}
        self._listing_locks = {Market.SPOT: anyio.Lock(), Market.SWAP: anyio.Lock()}

    def __repr__(self) -> str:
        return f"Binance(ws_origins={self._ws_origins!r}, rest_origins={self._rest_origins!r})"

    # -- sockets ----------------------------------------------------------------------------------

    def socket_key(self, topic: Topic) -> Socket:
        return socket_of(topic)

    def ws_url(self, key: Hashable) -> str:
        """``…/stream`` (combined: every push names its stream) under the socket's path."""
        socket = _socket(key)
        return f"{self._ws_origins[socket.market]}{socket.path}/stream"

    def new_codec(self, key: Hashable) -> BinanceCodec:
        return BinanceCodec(_socket(key), limits=self.limits)

    def check_topic(self, topic: Topic) -> None:
        stream_name(topic)

    @classmethod
    def normalize_symbol(cls, text: str) -> str:
        """A unified symbol as is; a bare id such as ``BTCUSDT`` is ambiguous on Binance (spot and
        USDⓈ-M share it), so it is refused with both unified spellings, not guessed."""
        if isinstance(text, str) and "/" not in text:
            raise InvalidValueError(ambiguous_id_message(text))
        binance_id(text)  # refuses what Binance cannot serve (COIN-M)
        return parse_symbol(text).unified

    @classmethod
    def url_options(cls, market: Market, *, ws_url: str | None, rest_url: str | None) -> dict[str, str]:
        """Binance takes origins, one for both markets: ``--ws-url ws://HOST:PORT``."""
        options = {"ws_url": ws_url, "rest_url": rest_url}
        return {name: url for name, url in options.items() if url}

    def kline_page_size(self, market: Market) -> int:
        return MAX_KLINES[Market(market)]

    # -- symbols ----------------------------------------------------------------------------------

    async def check_symbol(self, http: httpx.AsyncClient, symbol: str) -> None:
        """InvalidValueError unless Binance lists ``symbol`` on its market.

        Binance acknowledges a subscription to an unknown symbol and then never pushes
        (BINANCE.md §1.4, pitfall 2), so symbols are checked against ``exchangeInfo``, fetched once
        per market and cached (a failed fetch raises and is retried on the next call).
        """
        market, symbol_id = binance_id(symbol)
        check_listed(market, await self.listed_symbols(http, market), symbol, symbol_id)

    async def listed_symbols(self, http: httpx.AsyncClient, market: Market) -> dict[str, str]:
        """Every id ``market`` lists, with its status, from ``exchangeInfo`` (cached after one fetch)."""
        async with self._listing_locks[market]:
            listed = self._listed.get(market)
            if listed is None:
                response = await self._get(http, market, Endpoint.EXCHANGE_INFO, {})
                listed = self._listed[market] = parse_exchange_info(
                    market, response.content, status=response.status, max_depth=self.limits.max_json_depth
                )
        return listed

    # -- REST -------------------------------------------------------------------------------------

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
        """See :meth:`Exchange.fetch_klines`; ``limit`` above the market's page size
        (:meth:`kline_page_size`) asks for a full page, so the caller pages on."""
        market, symbol_id = binance_id(symbol)
        if not isinstance(limit, int) or limit < 1:
            raise InvalidValueError(f"invalid limit {limit!r}: expected a positive number of candles")
        params = kline_query(symbol_id, timeframe, min(limit, MAX_KLINES[market]), start_ms, end_ms)
        response = await self._get(http, market, Endpoint.KLINES, params)
        return within(
            parse_klines(
                response.content, symbol, timeframe, status=response.status, max_depth=self.limits.max_json_depth
            ),
            start_ms,
            end_ms,
        )

    async def fetch_ticker(self, http: httpx.AsyncClient, symbol: str) -> Tick:
        market, symbol_id = binance_id(symbol)
        response = await self._get(http, market, Endpoint.TICKER, {"symbol": symbol_id})
        return parse_ticker(response.content, symbol, status=response.status, max_depth=self.limits.max_json_depth)

    async def _get(self, http: httpx.AsyncClient, market: Market, endpoint: Endpoint, params: QueryParams) -> RestBody:
        """GET within ``limits.max_body_size`` (exchangeInfo lists every symbol: it gets 64 times
        that); ProtocolError TOO_LARGE beyond it."""
        limit = self.limits.max_body_size * (64 if endpoint is Endpoint.EXCHANGE_INFO else 1)
        url = self._rest_origins[market] + PATHS[(market, endpoint)]
        return await get_body(http, url, params=params, max_size=limit)


def _socket(key: Hashable) -> Socket:
    """The socket a key names: a :class:`Socket`, or a Market (USDⓈ-M: its ``/market`` socket,
    where klines and tickers flow)."""
    if isinstance(key, Socket):
        return key
    if key == Market.SWAP:
        return Socket.USDM_MARKET
    if key == Market.SPOT:
        return Socket.SPOT
    raise InvalidValueError(f"invalid Binance socket {key!r}: expected one of {', '.join(Socket)} or a market")
