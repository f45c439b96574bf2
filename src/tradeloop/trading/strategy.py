"""Strategies and the coordinator that feeds them.

A strategy is any object with a name, the symbols it trades, the candle timeframe it reads (or
``None`` for ticks only), a warm-up length, and two methods that turn market data into signals.
It does no I/O and holds no tasks, so it is tested with plain function calls. A complete one::

    from decimal import Decimal
    from tradeloop.models import Kline, Signal, Tick

    class BuyTheDip:
        \"\"\"Hold 0.01 BTC after a candle closes 1% below the one before, flat otherwise.\"\"\"

        name = "buy-the-dip"
        symbols = ("BTC/USDT:USDT",)
        timeframe = "1m"
        warmup = 1

        def __init__(self) -> None:
            self.previous: Decimal | None = None

        def on_kline(self, kline: Kline) -> list[Signal]:
            previous, self.previous = self.previous, kline.close
            if previous is None:
                return []
            dipped = kline.close < previous * Decimal("0.99")
            return [Signal.hold(kline, Decimal("0.01") if dipped else Decimal(0), "dip" if dipped else "no dip")]

        def on_tick(self, tick: Tick) -> list[Signal]:
            return []

Pass it in :class:`~tradeloop.trading.config.EngineConfig` ``strategies=[BuyTheDip()]``.

The :class:`StrategyCoordinator` is one task reading one channel of klines and ticks. It gives each
strategy only the closed candles and ticks it declared, once each (warm-up history and live candles
overlap; the overlap is dropped by open time), and forwards their signals on a channel. A strategy
that raises, or returns something that is not a signal for one of its symbols, is logged, counted
and disabled; the others carry on.

A strategy may also define ``on_rejected(signal, held)``: the coordinator calls it when the risk
manager refuses one of its signals, with what the strategy actually holds of that instrument, so
that its idea of its position can follow the book (the reference strategies forget the view the
refused signal expressed). Without it, a strategy that signals targets should not assume a
target is held just because it asked for it.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from .._backend import ReceiveChannel, SendChannel
from ..errors import InvalidValueError
from ..exchanges import normalize_exchange_name
from ..models import Kline, Signal, Tick
from .risk import Rejection

__all__ = ["Strategy", "StrategyCoordinator", "StrategyStatus", "strategy_exchange"]

logger = logging.getLogger(__name__)


@runtime_checkable
class Strategy(Protocol):
    """What the coordinator needs of a strategy.

    A strategy may also set ``exchange`` (a registry name) to trade on one exchange when the
    engine is configured with several; see :func:`strategy_exchange`.
    """

    @property
    def name(self) -> str:
        """Unique among the engine's strategies; orders and fills carry it."""
        ...

    @property
    def symbols(self) -> Sequence[str]:
        """Unified symbols it trades; it receives ticks (and candles) of these only."""
        ...

    @property
    def timeframe(self) -> str | None:
        """Timeframe of the closed candles it reads, or None if it reads ticks only."""
        ...

    @property
    def warmup(self) -> int:
        """Closed candles of history to replay into ``on_kline`` before live data (0 for none)."""
        ...

    def on_kline(self, kline: Kline) -> Iterable[Signal]:
        """React to a closed candle of one of its symbols."""
        ...

    def on_tick(self, tick: Tick) -> Iterable[Signal]:
        """React to a tick of one of its symbols."""
        ...


def strategy_exchange(strategy: Strategy) -> str | None:
    """The exchange a strategy is bound to (its optional ``exchange`` attribute, lower-cased), or
    None for any.
    """
    exchange = getattr(strategy, "exchange", None)
    return None if exchange is None else normalize_exchange_name(exchange)


@dataclass(frozen=True, slots=True)
class StrategyStatus:
    name: str
    enabled: bool
    klines: int
    ticks: int
    signals: int
    errors: int
    last_error: str | None


class _Slot:
    """One strategy and its bookkeeping."""

    def __init__(self, strategy: Strategy) -> None:
        self.strategy = strategy
        self.name = strategy.name
        self.exchange = strategy_exchange(strategy)
        self.symbols = frozenset(strategy.symbols)
        self.timeframe = strategy.timeframe
        self.enabled = True
        self.klines = 0
        self.ticks = 0
        self.signals = 0
        self.errors = 0
        self.last_error: str | None = None

    def wants(self, exchange: str, symbol: str) -> bool:
        return self.enabled and symbol in self.symbols and self.exchange in (None, exchange)

    def status(self) -> StrategyStatus:
        return StrategyStatus(
            self.name, self.enabled, self.klines, self.ticks, self.signals, self.errors, self.last_error
        )


class StrategyCoordinator:
    """Feeds strategies from one channel of market data and forwards their signals.

    ``signals`` is closed when :meth:`run` returns, so the consumer (the risk manager) ends too.
    """

    def __init__(self, strategies: Sequence[Strategy], signals: SendChannel[Signal]) -> None:
        names = [strategy.name for strategy in strategies]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise InvalidValueError(f"strategy names must be unique, repeated: {', '.join(duplicates)}")
        self._slots = [_Slot(strategy) for strategy in strategies]
        self._signals = signals
        self._last_closed: dict[tuple[str, str, str], int] = {}
        self.admit: Callable[[Kline], bool] = _admit_all
        """Asked first for every closed candle (the source's ``should_process``): a refused
        copy reaches no strategy and is not counted as seen, so a fresh copy still gets through."""
        self.processed: Callable[[Kline], None] = _processed_nowhere
        """Told of every admitted closed candle once each strategy reading it has handled it
        (the source's ``mark_processed``), before any of its signals is sent on."""

    def status(self) -> tuple[StrategyStatus, ...]:
        return tuple(slot.status() for slot in self._slots)

    def warm_up(self, history: Iterable[Kline]) -> None:
        """Replay closed candles into the strategies that read them, discarding their signals.

        History only builds state: a signal computed from it would trade at a price minutes old.
        """
        for kline in history:
            if kline.closed and self.admit(kline):
                for slot in self._kline_slots(kline):
                    self._call(slot, kline)

    async def run(self, market: ReceiveChannel[Kline | Tick]) -> None:
        """Dispatch until ``market`` is closed (or the task is cancelled)."""
        with market, self._signals:
            async for item in market:
                if isinstance(item, Tick):
                    slots = [slot for slot in self._slots if slot.wants(item.exchange, item.symbol)]
                elif not item.closed or not self.admit(item):
                    continue
                else:
                    slots = self._kline_slots(item)
                # Every strategy handles the item before any signal is sent (an await): a shared
                # source's hand-over could otherwise begin between two strategies of one candle.
                signals = [signal for slot in slots for signal in self._call(slot, item)]
                if isinstance(item, Kline):
                    self.processed(item)
                for signal in signals:
                    await self._signals.send(signal)

    def rejected(self, rejection: Rejection) -> None:
        """Tell the strategy behind a refused signal what it actually holds (its ``on_rejected``).

        Called by the risk manager; an error in the callback disables that strategy like any other.
        """
        slot = next((slot for slot in self._slots if slot.name == rejection.signal.strategy), None)
        callback = None if slot is None else getattr(slot.strategy, "on_rejected", None)
        if slot is None or callback is None or not slot.enabled:
            return
        try:
            callback(rejection.signal, rejection.held)
        except Exception as exc:
            self._disable(slot, exc, rejection)

    def _kline_slots(self, kline: Kline) -> list[_Slot]:
        """Strategies that should see a closed ``kline`` the source admitted; records it so a
        repeat of the candle is skipped."""
        key = (kline.exchange, kline.symbol, kline.timeframe)
        last = self._last_closed.get(key)
        if last is not None and kline.open_time <= last:
            return []
        self._last_closed[key] = kline.open_time
        return [
            slot
            for slot in self._slots
            if slot.timeframe == kline.timeframe and slot.wants(kline.exchange, kline.symbol)
        ]

    def _call(self, slot: _Slot, item: Kline | Tick) -> list[Signal]:
        """Run one strategy callback in isolation: any error disables that strategy alone."""
        try:
            if isinstance(item, Tick):
                slot.ticks += 1
                produced = list(slot.strategy.on_tick(item))
            else:
                slot.klines += 1
                produced = list(slot.strategy.on_kline(item))
            for signal in produced:
                if not isinstance(signal, Signal):
                    raise TypeError(f"returned {signal!r}, not a Signal")
                if signal.symbol not in slot.symbols or slot.exchange not in (None, signal.exchange):
                    raise InvalidValueError(f"signalled {signal.exchange}:{signal.symbol}, which it does not trade")
        except Exception as exc:
            self._disable(slot, exc, item)
            return []
        slot.signals += len(produced)
        return [dataclasses.replace(signal, strategy=slot.name) for signal in produced]

    def _disable(self, slot: _Slot, exc: Exception, item: object) -> None:
        slot.enabled = False
        slot.errors += 1
        slot.last_error = f"{type(exc).__name__}: {exc}"
        logger.exception("strategy %r failed on %r and is disabled", slot.name, item)


def _admit_all(kline: Kline) -> bool:
    return True


def _processed_nowhere(kline: Kline) -> None:
    """A source of one's own keeps no acknowledgements."""
