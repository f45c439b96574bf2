"""Replaying a given candle history: the simulator's market follows candles instead of a random walk.

``SimConfig(history={"BTC-USDT": klines})`` makes the market model of that symbol a sequence of
steps built from the candles, so that REST klines and WebSocket pushes serve exactly those candles
(any timeframe aggregates from them) and the ticker follows a fixed path inside each candle:

    open, then the extreme nearer the open's side (low for a rising candle, high for a falling
    one), then the other extreme, then the close, which holds until the candle ends

one step each (``step_seconds``), so a candle must last at least four steps. The volume goes to
the steps evenly (the remainder on the first). The book is zero-wide (bid = ask = last): candles
carry no spread. That is the same information a backtest has, and the same fill model follows:
an order placed when a candle closes fills at the next candle's open, live or backtested, provided
the ticker has not moved on before the stream layer has confirmed the close over REST; with
``push_interval=60`` it shows each open for a whole minute.

After the last candle the price stays at its close, with no volume.
"""

from __future__ import annotations

from array import array
from collections.abc import Mapping, Sequence
from decimal import Decimal
from itertools import pairwise

from ..errors import InvalidValueError
from ..models import Kline
from ..symbols import next_open_time, timeframe_ms
from .market import SymbolSpec

__all__ = ["HistorySeries", "check_history", "history_spec"]

_PATH_STEPS = 4


def _decimals(value: Decimal) -> int:
    exponent = value.as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 0


def history_spec(symbol_id: str, candles: Sequence[Kline]) -> SymbolSpec:
    """Tick and lot sizes fine enough for every number of the candles."""
    prices = [value for k in candles for value in (k.open, k.high, k.low, k.close)]
    return SymbolSpec(
        symbol_id,
        float(candles[0].open),
        max(map(_decimals, prices)),
        max(_decimals(k.volume) for k in candles),
    )


def check_history(history: Mapping[str, Sequence[Kline]], step_ms: int) -> int:
    """Validate every series (one timeframe, contiguous, the same first open time, at least four
    steps per candle); return that first open time."""
    starts = set()
    for symbol_id, candles in history.items():
        if not candles:
            raise InvalidValueError(f"history of {symbol_id}: no candles")
        timeframe = candles[0].timeframe
        length = timeframe_ms(timeframe)
        if length % step_ms or length // step_ms < _PATH_STEPS:
            raise InvalidValueError(
                f"history of {symbol_id}: a {timeframe} candle must span at least {_PATH_STEPS} whole steps "
                f"of {step_ms} ms (e.g. step_seconds={length // _PATH_STEPS / 1000:g})"
            )
        for before, after in pairwise(candles):
            if after.timeframe != timeframe or after.open_time != next_open_time(timeframe, before.open_time):
                raise InvalidValueError(
                    f"history of {symbol_id}: candles must be {timeframe} and contiguous; "
                    f"{after.open_time} does not follow {before.open_time}"
                )
        starts.add(candles[0].open_time)
    if len(starts) != 1:
        raise InvalidValueError("every history series must start at the same open time")
    return starts.pop()


class HistorySeries:
    """A symbol's steps from candles: what :class:`~tradeloop.sim.market.MarketModel` reads of a
    random-walk series (``prices``, ``volumes``, ``mean_lots``, ``extend_to``)."""

    __slots__ = ("mean_lots", "prices", "spec", "volumes")

    spread = 0
    """Ticks between bid and ask: none, candles carry no spread."""

    def __init__(self, spec: SymbolSpec, candles: Sequence[Kline], step_ms: int) -> None:
        self.spec = spec
        tick, lot = spec.tick_size, spec.lot_size
        steps = timeframe_ms(candles[0].timeframe) // step_ms
        self.prices = array("q")
        self.volumes = array("q")
        for kline in candles:
            o, h, low, c = (int(value / tick) for value in (kline.open, kline.high, kline.low, kline.close))
            first, second = (low, h) if c >= o else (h, low)
            self.prices.extend([o, first, second] + [c] * (steps - 3))
            lots = int(kline.volume / lot)
            self.volumes.extend([lots // steps + lots % steps] + [lots // steps] * (steps - 1))
        self.mean_lots = max(1.0, sum(self.volumes) / len(self.volumes))

    def extend_to(self, index: int) -> None:
        """After the history: the last close, no volume."""
        missing = index + 1 - len(self.prices)
        if missing > 0:
            self.prices.extend([self.prices[-1]] * missing)
            self.volumes.extend([0] * missing)
