"""Any ccxt exchange as a tradeloop :class:`~tradeloop.exchanges.Exchange`, named ``ccxt:<id>``.

``create_exchange("ccxt:okx")`` builds a :class:`CcxtExchange` for ccxt's ``okx``. A client ccxt.pro
can push for (``watchOHLCV`` / ``watchTicker``) is watched (:meth:`CcxtExchange.watch`, run by
:mod:`tradeloop.streams.watcher`); any other, or any with ``poll=True``, is fetch-only and served by
the stream layer's REST poller. Either way its klines go through the same candle closer as a
native client's: ccxt has no closed flag, so a candle closes when a newer one opens and is
confirmed with ``fetch_ohlcv``.

ccxt runs on asyncio, in a thread of its own (:mod:`._bridge`). Close the adapter with
:meth:`CcxtExchange.aclose` (or ``async with``) to close ccxt's sockets and stop that thread.
Needs the ``ccxt`` extra: ``pip install 'tradeloop[ccxt]'``.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from typing import Any, ClassVar, NoReturn
from urllib.parse import urlsplit, urlunsplit

import ccxt  # type: ignore[import-untyped]
import ccxt.async_support  # type: ignore[import-untyped]
import ccxt.pro  # type: ignore[import-untyped]
import httpx
import trio

from ...errors import InvalidValueError, TradeloopError
from ...models import Kline, Tick
from ...symbols import Market
from ..base import Exchange, Topic, TopicKind, WsCodec, within
from ._bridge import AsyncioThread
from ._convert import to_klines, to_tick

__all__ = ["CCXT_PREFIX", "CcxtExchange", "ccxt_exchange_class"]

CCXT_PREFIX = "ccxt:"

_DEFAULT_PAGE_SIZE = 100
"""Candles asked per ``fetch_ohlcv`` when ccxt's ``features`` do not say: every exchange ccxt
lists serves at least this many, and asking more than one serves may end paging early."""

_WATCH_METHODS = {TopicKind.KLINE: "watchOHLCV", TopicKind.TICKER: "watchTicker"}


class CcxtExchange(Exchange, trio.abc.AsyncResource):
    """One ccxt client behind the Exchange interface; subclassed per ccxt id by :func:`ccxt_exchange_class`.

    ``ws_url`` / ``rest_url`` replace the scheme and host of every ``urls['api']`` entry (WebSocket
    and REST ones respectively), keeping ccxt's paths. ``poll=True`` never watches. ``options``
    go to ccxt's constructor (``{"timeout": 5000}``, API keys, …).
    """

    name: ClassVar[str] = "ccxt"
    ccxt_id: ClassVar[str]
    supports_push: ClassVar[bool] = False
    """No raw socket for the stream layer's codecs: pushes come through :meth:`watch`."""

    def __init__(
        self,
        *,
        ws_url: str | None = None,
        rest_url: str | None = None,
        poll: bool = False,
        options: Mapping[str, Any] | None = None,
    ) -> None:
        pro_class = getattr(ccxt.pro, self.ccxt_id, None)
        client_class = pro_class or getattr(ccxt.async_support, self.ccxt_id)
        self.client: Any = client_class(dict(options or {}))
        _replace_origins(self.client.urls["api"], ws_url=ws_url, rest_url=rest_url)
        self._can_watch = pro_class is not None and not poll
        self._loop = AsyncioThread(f"tradeloop {self.name}")

    async def aclose(self) -> None:
        """Close ccxt's sockets and HTTP session and stop its thread (shielded, bounded)."""
        await self._loop.aclose(self.client.close)

    # -- what the stream layer asks ---------------------------------------------------------------

    @classmethod
    def url_options(cls, market: Market, *, ws_url: str | None, rest_url: str | None) -> dict[str, str]:
        """Only origins are taken from the URLs, so one pair serves every market."""
        return {key: url for key, url in (("ws_url", ws_url), ("rest_url", rest_url)) if url}

    def check_topic(self, topic: Topic) -> None:
        if topic.kind not in _WATCH_METHODS:
            raise InvalidValueError(
                f"{self.name} serves klines and the 24h ticker, not {topic.kind.value!r} (topic {topic})"
            )

    def ws_url(self, key: Hashable) -> NoReturn:
        raise TradeloopError(f"{self.name} has no socket of its own for the stream layer: ccxt owns it")

    def new_codec(self, key: Hashable) -> WsCodec:
        self.ws_url(key)

    def kline_page_size(self, market: Market) -> int:
        """The ``fetchOHLCV`` limit ccxt's ``features`` give for ``market``, else a safe 100."""
        features: Any = self.client.features or {}
        section = features.get(market.value)
        if isinstance(section, dict) and "linear" in section:  # swap: {"linear": …, "inverse": …}
            section = section["linear"]
        fetch = section.get("fetchOHLCV") if isinstance(section, dict) else None
        limit = fetch.get("limit") if isinstance(fetch, dict) else None
        return limit if isinstance(limit, int) and limit > 0 else _DEFAULT_PAGE_SIZE

    def watches(self, topic: Topic) -> bool:
        """Whether ``topic`` is pushed (ccxt.pro watches it here) rather than polled."""
        return self._can_watch and bool(self.client.has.get(_WATCH_METHODS.get(topic.kind, "")))

    async def check_symbol(self, http: httpx.AsyncClient, symbol: str) -> None:
        markets = await self._loop.run(self.client.load_markets)
        if symbol not in markets:
            raise InvalidValueError(f"{self.name} does not list {symbol!r}")

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
        """``fetch_ohlcv`` from ``start_ms``; ccxt has no end parameter, so ``end_ms`` filters.
        ``http`` is unused: ccxt brings its own HTTP client. Raises what ccxt raises."""
        if start_ms is not None and end_ms is not None and start_ms > end_ms:
            raise InvalidValueError(f"invalid range: start_ms {start_ms} is after end_ms {end_ms}")

        async def fetch() -> list[Kline]:
            rows = await self.client.fetch_ohlcv(symbol, timeframe, since=start_ms, limit=limit)
            return to_klines(self.name, symbol, timeframe, rows, closed_before_newest=True)

        return within(await self._loop.run(fetch), start_ms, end_ms)

    async def fetch_ticker(self, http: httpx.AsyncClient, symbol: str) -> Tick:
        async def fetch() -> Tick:
            return to_tick(self.name, symbol, await self.client.fetch_ticker(symbol), self.client.milliseconds())

        return await self._loop.run(fetch)

    async def watch(self, topic: Topic, deliver: Callable[[list[Kline] | Tick], None]) -> NoReturn:
        """Push ``topic``'s updates to ``deliver`` (in this Trio run, in order) until cancelled.

        Klines come unclosed, each batch the rows ccxt returned; ticks one by one. Converted on
        the asyncio side, so each message costs Trio one callback. Raises what ccxt raises (a
        dropped socket, an exchange error) or ProtocolError for a row that is not a number.
        """
        post = self._loop.poster(deliver)
        client, symbol, timeframe = self.client, topic.symbol, topic.timeframe

        async def watch_klines() -> NoReturn:
            while True:
                rows = await client.watch_ohlcv(symbol, timeframe)
                post(to_klines(self.name, symbol, str(timeframe), rows, closed_before_newest=False))

        async def watch_ticker() -> NoReturn:
            while True:
                ticker = await client.watch_ticker(symbol)
                post(to_tick(self.name, symbol, ticker, client.milliseconds()))

        await self._loop.run(watch_klines if topic.kind is TopicKind.KLINE else watch_ticker)
        raise AssertionError("unreachable: the watch loops never return")


def _replace_origins(urls: dict[str, Any], *, ws_url: str | None, rest_url: str | None) -> None:
    """Point every URL of ccxt's ``urls['api']`` (nested) at a new scheme and host, paths kept."""
    for key, value in urls.items():
        if isinstance(value, dict):
            _replace_origins(value, ws_url=ws_url, rest_url=rest_url)
        elif isinstance(value, str):
            origin = ws_url if value.startswith(("ws://", "wss://")) else rest_url
            if origin:
                new = urlsplit(origin)
                urls[key] = urlunsplit(urlsplit(value)._replace(scheme=new.scheme, netloc=new.netloc))


_CLASSES: dict[str, type[CcxtExchange]] = {}


def ccxt_exchange_class(ccxt_id: str) -> type[CcxtExchange]:
    """The adapter class for ccxt's ``ccxt_id`` (lower case), named ``ccxt:<id>``; InvalidValueError
    naming the id and where the ids are listed if ccxt has no such exchange."""
    if ccxt_id not in ccxt.exchanges:
        raise InvalidValueError(
            f"unknown ccxt exchange {ccxt_id!r}: the ids are listed by python -c 'import ccxt; print(ccxt.exchanges)'"
        )
    cls = _CLASSES.get(ccxt_id)
    if cls is None:
        cls = type(f"Ccxt_{ccxt_id}", (CcxtExchange,), {"name": CCXT_PREFIX + ccxt_id, "ccxt_id": ccxt_id})
        _CLASSES[ccxt_id] = cls
    return cls
