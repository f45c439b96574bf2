"""Any ccxt exchange as a tradeloop :class:`~tradeloop.exchanges.Exchange`, named ``ccxt:<id>``.

``create_exchange("ccxt:okx")`` builds a :class:`CcxtExchange` for ccxt's ``okx``. A client ccxt.pro
can push for (``watchOHLCV`` / ``watchTicker``) is watched (:meth:`CcxtExchange.watch`, run by
:mod:`tradeloop.streams.watcher`); any other, or any with ``poll=True``, is fetch-only and served by
the stream layer's REST poller. Either way its klines go through the same candle closer as a
native client's: ccxt has no closed flag, so a candle closes when a newer one opens and is
confirmed with ``fetch_ohlcv``.

ccxt runs on asyncio: in an asyncio program, natively in the running loop; under Trio, on a loop
in a thread of its own (:mod:`._runner` chooses, when the adapter is first used). Close the adapter
with :meth:`CcxtExchange.aclose` (or ``async with``) to close ccxt's sockets and HTTP session (and
stop that thread); the next use reopens it, in whichever loop makes it.
Needs the ``ccxt`` extra: ``pip install 'tradeloop[ccxt]'``.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from typing import Any, ClassVar, NoReturn
from urllib.parse import urlsplit, urlunsplit

import anyio.abc
import ccxt  # type: ignore[import-untyped]
import ccxt.async_support  # type: ignore[import-untyped]
import ccxt.pro  # type: ignore[import-untyped]
import httpx
import trio

from ...errors import ForeignLoopError, InvalidValueError, TradeloopError
from ...models import Kline, Tick
from ...symbols import Market
from ...urls import parse_url
from ..base import Exchange, Topic, TopicKind, WsCodec, within
from ._convert import to_klines, to_tick
from ._runner import Runner, current_runner

__all__ = ["CCXT_PREFIX", "CcxtExchange", "ccxt_exchange_class"]

CCXT_PREFIX = "ccxt:"

_DEFAULT_PAGE_SIZE = 100
"""Candles asked per ``fetch_ohlcv`` when ccxt's ``features`` do not say: every exchange ccxt
lists serves at least this many, and asking more than one serves may end paging early."""

_WATCH_METHODS = {TopicKind.KLINE: "watchOHLCV", TopicKind.TICKER: "watchTicker"}


class CcxtExchange(Exchange, anyio.abc.AsyncResource, trio.abc.AsyncResource):
    """One ccxt client behind the Exchange interface; subclassed per ccxt id by :func:`ccxt_exchange_class`.

    ``ws_url`` / ``rest_url`` replace the scheme and host of every ``urls['api']`` entry (WebSocket
    and REST ones respectively), keeping ccxt's paths. ``poll=True`` never watches. ``options``
    go to ccxt's constructor (``{"timeout": 5000}``, API keys, …). An ``AsyncResource`` of anyio
    and of Trio (pure ABCs), so code checking for either closes it. Raises InvalidValueError for a
    URL of the wrong scheme, without a host or with a bad port.
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
        if ws_url is not None:
            parse_url(ws_url, ("wss", "ws"), f"{self.name} ws_url")
        if rest_url is not None:
            parse_url(rest_url, ("https", "http"), f"{self.name} rest_url")
        pro_class = getattr(ccxt.pro, self.ccxt_id, None)
        client_class = pro_class or getattr(ccxt.async_support, self.ccxt_id)
        self.client: Any = client_class(dict(options or {}))
        _replace_origins(self.client.urls["api"], ws_url=ws_url, rest_url=rest_url)
        self._can_watch = pro_class is not None and not poll
        self._runner: Runner | None = None

    async def aclose(self) -> None:
        """Close ccxt's sockets and HTTP session, and stop its thread on Trio (shielded, bounded)."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.aclose(self.client.close)

    def _here(self) -> Runner:
        """Where ccxt runs for the calling loop: chosen on first use, kept until :meth:`aclose`.

        Raises ForeignLoopError when called from another event loop than the one it was first used
        in: ccxt's sockets and session belong to that loop.
        """
        runner = self._runner
        if runner is None:
            runner = self._runner = current_runner(f"tradeloop {self.name}", self._reopen)
        elif not runner.serves_current_loop():
            raise ForeignLoopError(
                f"{self.name}'s ccxt client is open in another event loop: use it from that loop, "
                "or aclose() it there first (the next use reopens it in its own loop)"
            )
        return runner

    def _reopen(self) -> None:
        """Bind the client to the running loop and open it (in ccxt's loop, before any request).

        ccxt keeps the loop that first opened a client and refuses requests once it was closed, so
        a client closed by an earlier run (perhaps on another loop) is pointed here and reopened.
        """
        self.client.asyncio_loop = None
        self.client.open()

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
        markets = await self._here().run(self.client.load_markets)
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

        return within(await self._here().run(fetch), start_ms, end_ms)

    async def fetch_ticker(self, http: httpx.AsyncClient, symbol: str) -> Tick:
        async def fetch() -> Tick:
            return to_tick(self.name, symbol, await self.client.fetch_ticker(symbol), self.client.milliseconds())

        return await self._here().run(fetch)

    async def watch(self, topic: Topic, deliver: Callable[[list[Kline] | Tick], None]) -> NoReturn:
        """Push ``topic``'s updates to ``deliver`` (in the caller's loop, in order) until cancelled.

        Klines come unclosed, each batch the rows ccxt returned; ticks one by one. Under Trio they
        are converted on the asyncio side, so each message costs Trio one callback. Raises what ccxt raises (a
        dropped socket, an exchange error) or ProtocolError for a row that is not a number.
        """
        post = self._here().poster(deliver)
        client, symbol, timeframe = self.client, topic.symbol, topic.timeframe

        async def watch_klines() -> NoReturn:
            while True:
                rows = await client.watch_ohlcv(symbol, timeframe)
                post(to_klines(self.name, symbol, str(timeframe), rows, closed_before_newest=False))

        async def watch_ticker() -> NoReturn:
            while True:
                ticker = await client.watch_ticker(symbol)
                post(to_tick(self.name, symbol, ticker, client.milliseconds()))

        await self._here().run(watch_klines if topic.kind is TopicKind.KLINE else watch_ticker)
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
