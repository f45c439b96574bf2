"""The embedded exchange as one object: WebSocket + REST servers on loopback, market, faults.

:func:`open_simulator` owns a task group holding every server and task; leaving it closes every
client socket (WebSocket clients get a 1001 close frame, bounded by a timeout) and leaves no task
behind. It runs on anyio, so the same simulator serves inside ``trio.run`` and ``asyncio.run``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import anyio
import anyio.abc

from .._groups import single_error_context
from ..errors import InvalidValueError
from ..symbols import Market, validate_timeframe
from .binance_rest import BinanceRestServer
from .binance_ws import BinanceHub
from .config import SimClock, SimConfig, SimStats
from .faults import Faults
from .listening import listen, port
from .market import MarketModel, SimCandle
from .rest import RestServer
from .ws import WsHub

if TYPE_CHECKING:
    from ..exchanges.base import Exchange

__all__ = ["Simulator", "open_simulator"]

logger = logging.getLogger(__name__)


class Simulator:
    """A running simulator: its URLs, clock, market truth, faults and counters."""

    def __init__(self, config: SimConfig, model: MarketModel, clock: SimClock, hub: WsHub, urls: dict[str, str]):
        self.config = config
        self._model = model
        self._clock = clock
        self._hub = hub
        self.ws_url = urls["ws"]
        """Swap WebSocket, ``ws://HOST:PORT/swap-market`` (Binance: the origin ``ws://HOST:PORT``,
        under which both markets' paths are served)."""
        self.spot_ws_url = urls["spot_ws"]
        """Spot WebSocket, ``ws://HOST:PORT/market`` (Binance: the origin, as ``ws_url``)."""
        self.rest_url = urls["rest"]
        """REST base, ``http://HOST:PORT`` (both dialects)."""

    @property
    def faults(self) -> Faults:
        return self._hub.faults

    async def handle_websocket(self, stream: anyio.abc.ByteStream) -> None:
        """Serve one WebSocket client on ``stream`` (any anyio byte stream: one end of a socket
        pair in tests); closes it when done."""
        await self._hub.handle(stream)

    @property
    def stats(self) -> SimStats:
        return self._hub.stats

    def now_ms(self) -> int:
        """The simulator's clock in epoch milliseconds."""
        return self._clock.now_ms()

    def candles(self, symbol_id: str, timeframe: str, start_ms: int, end_ms: int) -> list[SimCandle]:
        """The truth: every candle opening in ``[start_ms, end_ms]`` that has data by now, oldest
        first (the newest may still be forming: ``closed=False``, values so far).
        """
        validate_timeframe(timeframe)
        self._model.spec(symbol_id)
        now_ms = self.now_ms()
        candles = []
        for open_time in self._model.open_times(timeframe, start_ms, end_ms, now_ms, limit=2**62):
            values = self._model.candle(symbol_id, timeframe, open_time, now_ms)
            if values is not None:
                candles.append(self._model.sim_candle(symbol_id, timeframe, values))
        return candles

    def exchange(self) -> Exchange:
        """tradeloop's client of the exchange the simulator speaks, pointed at it."""
        if self.config.exchange == "binance":
            from ..exchanges.binance import Binance

            return Binance(ws_url=self.ws_url, rest_url=self.rest_url)
        from ..exchanges.bingx import BingX

        return BingX(ws_url=self.ws_url, spot_ws_url=self.spot_ws_url, rest_url=self.rest_url)

    def watch_flags(self) -> str:
        """The ``tradeloop watch`` options that point it at this simulator."""
        if self.config.exchange == "binance":
            return f"--ws-url {self.ws_url} --rest-url {self.rest_url}"
        return f"--ws-url {self.ws_url} --rest-url {self.rest_url}  (spot symbols: --ws-url {self.spot_ws_url})"

    async def server_shutdown(self, grace: float = 1.0) -> None:
        """Binance dialect: announce a restart (``serverShutdown`` on spot sockets), then close
        every socket with 1001 after ``grace`` seconds. InvalidValueError for BingX, which sends
        no such notice."""
        if not isinstance(self._hub, BinanceHub):
            raise InvalidValueError("server_shutdown is a Binance notice: open the simulator with exchange='binance'")
        await self._hub.server_shutdown(grace)

    async def burst(self, symbol_id: str, timeframe: str, count: int, *, market: Market | str = Market.SWAP) -> None:
        """Send ``count`` kline updates (close price 1..count) of one topic to its subscribers as
        fast as their sockets accept them; see :meth:`WsHub.burst`.
        """
        await self._hub.burst(symbol_id, timeframe, count, market=market)


@single_error_context
@asynccontextmanager
async def open_simulator(
    config: SimConfig | None = None, *, host: str = "127.0.0.1", ws_port: int = 0, rest_port: int = 0
) -> AsyncIterator[Simulator]:
    """Run a BingX- or Binance-compatible exchange (``config.exchange``) on ``host`` for the
    duration of the ``async with``.

    Port 0 picks a free port; the real URLs are on the yielded :class:`Simulator`. An exception
    raised in the body leaves as itself, not wrapped in an ExceptionGroup; Ctrl-C as KeyboardInterrupt.
    """
    config = config or SimConfig()
    clock = SimClock.starting_now(config.start_ms, config.speed)
    history_start = config.history_start_ms
    if history_start is None:
        history_start = clock.start_ms - round(config.history_seconds * 1000)
        history_start -= history_start % 60_000
    model = MarketModel(
        tuple(config.symbols),
        seed=config.seed,
        step_ms=config.step_ms,
        first_step_ms=history_start,
        history=config.history,
    )
    stats = SimStats()
    binance = config.exchange == "binance"
    hub = (BinanceHub if binance else WsHub)(config, model, clock, stats)
    rest = (BinanceRestServer if binance else RestServer)(model, clock, stats, hub.faults)
    ws_listener = await listen(host, ws_port)
    try:
        rest_listener = await listen(host, rest_port)
    except BaseException:
        await anyio.aclose_forcefully(ws_listener)
        raise
    url_host = f"[{host}]" if ":" in host else host
    ws_base = f"ws://{url_host}:{port(ws_listener)}"
    urls = {
        "ws": ws_base if binance else f"{ws_base}/swap-market",
        "spot_ws": ws_base if binance else f"{ws_base}/market",
        "rest": f"http://{url_host}:{port(rest_listener)}",
    }
    async with anyio.create_task_group() as nursery:
        await nursery.start(hub.serve, ws_listener)
        await nursery.start(rest.serve, rest_listener)
        nursery.start_soon(hub.publish_forever)
        logger.info("simulator serving %s, %s and %s", urls["ws"], urls["spot_ws"], urls["rest"])
        try:
            yield Simulator(config, model, clock, hub, urls)
        finally:
            with anyio.CancelScope(shield=True):
                await hub.close_all()
            nursery.cancel_scope.cancel()
