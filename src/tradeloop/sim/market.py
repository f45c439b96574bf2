"""The simulator's market: a deterministic random walk per symbol, aggregated into candles.

Every price is an integer number of ticks and every volume an integer number of lots, so
aggregation is exact and a candle's text is the same whether it was streamed or fetched. One step
(a price and a volume) happens every ``step_ms``; the step grid is aligned to epoch multiples of
``step_ms`` and ``step_ms`` divides a minute, so every candle of every timeframe opens on a step.

A symbol's steps are generated lazily, oldest first, from ``random.Random(f"{seed}:{symbol}")``:
the same seed, symbol and start time give the same series, whichever candles are asked for first.
"""

from __future__ import annotations

import math
import random
import re
from array import array
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from operator import mul
from typing import TYPE_CHECKING

from ..errors import InvalidValueError
from ..symbols import candle_open_time, next_open_time, validate_timeframe

if TYPE_CHECKING:
    from ..models import Kline
    from .history import HistorySeries

__all__ = ["CandleValues", "MarketModel", "SimCandle", "SymbolSpec", "TickerValues", "symbol_spec"]

_MINUTE_MS = 60_000
_DAY_MS = 86_400_000
_SYMBOL_ID = re.compile(r"^[A-Z0-9]{1,20}-[A-Z0-9]{1,20}$")

# (start price, price decimals, quantity decimals) of well-known bases, so the numbers look real.
_KNOWN: dict[str, tuple[float, int, int]] = {
    "BTC": (60_000.0, 1, 4),
    "ETH": (3_000.0, 2, 3),
    "BNB": (600.0, 2, 2),
    "SOL": (150.0, 2, 2),
    "XRP": (0.6, 4, 1),
    "DOGE": (0.15, 5, 0),
    "ADA": (0.45, 4, 0),
}


@dataclass(frozen=True, slots=True)
class SymbolSpec:
    """How a symbol's numbers look: tick size ``10**-price_decimals``, lot ``10**-qty_decimals``."""

    symbol_id: str
    start_price: float
    price_decimals: int
    qty_decimals: int

    @property
    def tick_size(self) -> Decimal:
        return Decimal(1).scaleb(-self.price_decimals)

    @property
    def lot_size(self) -> Decimal:
        return Decimal(1).scaleb(-self.qty_decimals)

    def price_text(self, ticks: int) -> str:
        return _fixed(ticks, self.price_decimals)

    def qty_text(self, lots: int) -> str:
        return _fixed(lots, self.qty_decimals)

    def quote_text(self, units: int) -> str:
        """Text of a quote amount in units of one tick times one lot."""
        return _fixed(units, self.price_decimals + self.qty_decimals)


def _fixed(units: int, decimals: int) -> str:
    """``units * 10**-decimals`` as plain decimal text, exactly (no float on the way)."""
    if decimals == 0:
        return str(units)
    sign = "-" if units < 0 else ""
    whole, frac = divmod(abs(units), 10**decimals)
    return f"{sign}{whole}.{frac:0{decimals}d}"


def symbol_spec(symbol_id: str) -> SymbolSpec:
    """The spec of a BingX symbol id such as ``BTC-USDT``; ValueError for a malformed id.

    Unknown bases get a start price between 0.05 and 500 derived from the name (stable across
    runs) and about six significant digits of price.
    """
    if not isinstance(symbol_id, str) or not _SYMBOL_ID.match(symbol_id):
        raise InvalidValueError(
            f"invalid BingX symbol id {symbol_id!r}: expected BASE-QUOTE in upper case, e.g. 'BTC-USDT'"
        )
    base = symbol_id.split("-")[0]
    known = _KNOWN.get(base)
    if known is not None:
        return SymbolSpec(symbol_id, *known)
    fraction = random.Random(f"spec:{base}").random()
    price = 10 ** (math.log10(0.05) + fraction * (math.log10(500) - math.log10(0.05)))
    price_decimals = max(0, 5 - math.floor(math.log10(price)))
    qty_decimals = max(0, min(4, math.floor(math.log10(price)) + 1))
    return SymbolSpec(symbol_id, round(price, price_decimals), price_decimals, qty_decimals)


@dataclass(frozen=True, slots=True)
class CandleValues:
    """A candle in integer units: prices in ticks, volume in lots, quote in tick-lots."""

    open_time: int
    open: int
    high: int
    low: int
    close: int
    volume: int
    quote: int
    trades: int
    last_step: int
    """Index of the newest step included."""


@dataclass(frozen=True, slots=True)
class SimCandle:
    """The simulator's truth for one candle (``closed=False``: still forming, values so far)."""

    symbol_id: str
    timeframe: str
    open_time: int
    close_time: int
    """Last millisecond of the candle (next open time - 1), as spot's ``T``."""
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    quote_volume: Decimal
    trades: int
    closed: bool


@dataclass(frozen=True, slots=True)
class TickerValues:
    """24h statistics over the steps of the last 24 hours, in integer units."""

    open: int
    high: int
    low: int
    last: int
    volume: int
    quote: int
    last_qty: int
    open_time: int
    """Time of the first step in the window."""
    last_time: int
    """Time of the newest step."""
    step: int
    """Index of the newest step (an update id for book tickers)."""
    bid: int
    bid_qty: int
    ask: int
    """One tick above the bid: the book is always one tick wide, the last trade at the bid (zero-wide
    for a replayed history, see :mod:`tradeloop.sim.history`)."""
    ask_qty: int


def _book_lots(step: int, side: int, mean_lots: float) -> int:
    """A quantity at the top of the book that changes every step, without using the walk's RNG."""
    return 1 + (step * 2_654_435_761 + side * 40_503) % max(2, round(20 * mean_lots))


class _Series:
    """One symbol's steps: parallel arrays of prices (ticks) and volumes (lots)."""

    __slots__ = ("_rng", "_sigma", "mean_lots", "prices", "spec", "volumes")

    spread = 1
    """Ticks between bid and ask."""

    def __init__(self, spec: SymbolSpec, seed: int, step_ms: int) -> None:
        self.spec = spec
        self._rng = random.Random(f"{seed}:{spec.symbol_id}")
        step_seconds = step_ms / 1000
        self._sigma = 0.0002 * math.sqrt(step_seconds)
        # About 10 000 USDT traded per second, at least one lot per step.
        lots_per_second = 10_000 / spec.start_price * 10**spec.qty_decimals
        self.mean_lots = max(1.0, lots_per_second * step_seconds)
        start_ticks = max(1, round(spec.start_price * 10**spec.price_decimals))
        self.prices = array("q", [start_ticks])
        self.volumes = array("q", [self._lots()])

    def _lots(self) -> int:
        return 1 + int(self._rng.expovariate(1 / self.mean_lots))

    def extend_to(self, index: int) -> None:
        """Generate steps up to and including ``index``."""
        prices, volumes, rng, sigma = self.prices, self.volumes, self._rng, self._sigma
        last = prices[-1]
        for _ in range(len(prices), index + 1):
            last = max(1, round(last * math.exp(rng.gauss(0.0, sigma))))
            prices.append(last)
            volumes.append(self._lots())


class _Forming:
    """Running aggregate of the newest candle of one (symbol, timeframe), extended step by step."""

    __slots__ = ("close", "first", "high", "last", "low", "open_time", "quote", "volume")

    def __init__(self, open_time: int, first: int, prices: array[int], volumes: array[int]) -> None:
        self.open_time = open_time
        self.first = first
        self.last = first
        price = prices[first]
        self.high = self.low = self.close = price
        self.volume = volumes[first]
        self.quote = price * volumes[first]

    def extend(self, last: int, prices: array[int], volumes: array[int]) -> None:
        for index in range(self.last + 1, last + 1):
            price, lots = prices[index], volumes[index]
            if price > self.high:
                self.high = price
            elif price < self.low:
                self.low = price
            self.volume += lots
            self.quote += price * lots
        if last > self.last:
            self.close = prices[last]
            self.last = last

    def values(self, prices: array[int]) -> CandleValues:
        return CandleValues(
            self.open_time,
            prices[self.first],
            self.high,
            self.low,
            self.close,
            self.volume,
            self.quote,
            self.last - self.first + 1,
            self.last,
        )


class MarketModel:
    """Steps and candles of every configured symbol, generated on demand.

    ``first_step_ms`` is the time of step 0 (the oldest history); a time before it has no data.
    Methods taking ``now_ms`` see only the steps at or before it.
    """

    def __init__(
        self,
        symbol_ids: tuple[str, ...],
        *,
        seed: int,
        step_ms: int,
        first_step_ms: int,
        history: Mapping[str, Sequence[Kline]] | None = None,
    ) -> None:
        if step_ms <= 0 or _MINUTE_MS % step_ms:
            raise InvalidValueError(
                f"invalid step of {step_ms} ms: it must divide one minute (e.g. 0.01, 0.5, 1, 5, 15, 60 s)"
            )
        if first_step_ms % step_ms:
            raise InvalidValueError(f"first step time {first_step_ms} is not a multiple of the step {step_ms} ms")
        self.step_ms = step_ms
        self.first_step_ms = first_step_ms
        self._seed = seed
        from .history import history_spec  # history builds on this module's SymbolSpec

        self._history = dict(history or {})
        self.specs = {
            symbol_id: history_spec(symbol_id, self._history[symbol_id])
            if symbol_id in self._history
            else symbol_spec(symbol_id)
            for symbol_id in symbol_ids
        }
        self._series: dict[str, _Series | HistorySeries] = {}
        self._closed: dict[tuple[str, str], dict[int, CandleValues]] = {}
        self._forming: dict[tuple[str, str], _Forming] = {}
        self._tickers: dict[str, TickerValues] = {}

    # -- steps ------------------------------------------------------------------------------------

    def spec(self, symbol_id: str) -> SymbolSpec:
        try:
            return self.specs[symbol_id]
        except KeyError:
            raise InvalidValueError(
                f"unknown symbol {symbol_id!r}: the simulator serves {', '.join(self.specs)}"
            ) from None

    def _series_of(self, symbol_id: str) -> _Series | HistorySeries:
        series = self._series.get(symbol_id)
        if series is None:
            from .history import HistorySeries

            spec = self.spec(symbol_id)
            candles = self._history.get(symbol_id)
            series = self._series[symbol_id] = (
                _Series(spec, self._seed, self.step_ms)
                if candles is None
                else HistorySeries(spec, candles, self.step_ms)
            )
        return series

    def step_index(self, time_ms: int) -> int:
        """Index of the newest step at or before ``time_ms`` (-1 before the first step)."""
        return (time_ms - self.first_step_ms) // self.step_ms

    def step_time(self, index: int) -> int:
        return self.first_step_ms + index * self.step_ms

    def _steps(self, symbol_id: str, last: int) -> _Series | HistorySeries:
        series = self._series_of(symbol_id)
        if last >= len(series.prices):
            series.extend_to(last)
        return series

    # -- candles ----------------------------------------------------------------------------------

    def candle(self, symbol_id: str, timeframe: str, open_time: int, now_ms: int) -> CandleValues | None:
        """The candle of ``timeframe`` opening at ``open_time`` as seen at ``now_ms``.

        None when none of its steps has happened yet (or all are before the history). Closed
        candles are computed once and cached; the newest one is extended incrementally, so
        pushing it often costs only the new steps.
        """
        close_time = next_open_time(timeframe, open_time)
        first = max(0, -(-(open_time - self.first_step_ms) // self.step_ms))
        last_of_candle = self.step_index(close_time - 1)
        last = min(last_of_candle, self.step_index(now_ms))
        if last < first:
            return None
        key = (symbol_id, timeframe)
        complete = last == last_of_candle
        if complete:
            cached = self._closed.setdefault(key, {}).get(open_time)
            if cached is not None:
                return cached
        series = self._steps(symbol_id, last)
        forming = self._forming.get(key)
        if forming is not None and forming.open_time == open_time and forming.last <= last:
            forming.extend(last, series.prices, series.volumes)
            values = forming.values(series.prices)
        elif forming is None or open_time > forming.open_time:
            forming = self._forming[key] = _Forming(open_time, first, series.prices, series.volumes)
            forming.extend(last, series.prices, series.volumes)
            values = forming.values(series.prices)
        else:
            values = self._aggregate(series, open_time, first, last)
        if complete:
            self._closed[key][open_time] = values
        return values

    @staticmethod
    def _aggregate(series: _Series | HistorySeries, open_time: int, first: int, last: int) -> CandleValues:
        prices = series.prices[first : last + 1]
        volumes = series.volumes[first : last + 1]
        return CandleValues(
            open_time,
            prices[0],
            max(prices),
            min(prices),
            prices[-1],
            sum(volumes),
            sum(map(mul, prices, volumes)),
            last - first + 1,
            last,
        )

    def is_complete(self, timeframe: str, values: CandleValues) -> bool:
        """Whether ``values`` holds every step of its candle (its final value)."""
        close_time = next_open_time(timeframe, values.open_time)
        return values.last_step == self.step_index(close_time - 1)

    def open_times(
        self, timeframe: str, start_ms: int | None, end_ms: int | None, now_ms: int, limit: int
    ) -> list[int]:
        """Open times of candles with data, opening in ``[start_ms, end_ms]``, oldest first.

        With a start, the ``limit`` oldest from there; without, the ``limit`` newest up to
        ``end_ms`` (default ``now_ms``), the way exchanges page klines.
        """
        validate_timeframe(timeframe)
        if now_ms < self.first_step_ms:
            return []
        first_open = candle_open_time(timeframe, self.first_step_ms)
        newest = candle_open_time(timeframe, now_ms if end_ms is None else min(end_ms, now_ms))
        opens: list[int] = []
        if start_ms is not None:
            current = max(first_open, candle_open_time(timeframe, start_ms))
            if current < start_ms:
                current = next_open_time(timeframe, current)
            while current <= newest and len(opens) < limit:
                opens.append(current)
                current = next_open_time(timeframe, current)
            return opens
        current = newest
        while current >= first_open and len(opens) < limit:
            opens.append(current)
            current = candle_open_time(timeframe, current - 1)
        opens.reverse()
        return opens

    def sim_candle(self, symbol_id: str, timeframe: str, values: CandleValues) -> SimCandle:
        spec = self.spec(symbol_id)
        tick, lot = spec.tick_size, spec.lot_size
        return SimCandle(
            symbol_id=symbol_id,
            timeframe=timeframe,
            open_time=values.open_time,
            close_time=next_open_time(timeframe, values.open_time) - 1,
            open=values.open * tick,
            high=values.high * tick,
            low=values.low * tick,
            close=values.close * tick,
            volume=values.volume * lot,
            quote_volume=values.quote * tick * lot,
            trades=values.trades,
            closed=self.is_complete(timeframe, values),
        )

    # -- 24h ticker -------------------------------------------------------------------------------

    def ticker(self, symbol_id: str, now_ms: int) -> TickerValues:
        """24h statistics of the steps in ``(now - 24h, now]``, cached per newest step.

        The window is built from cached one-minute candles plus the partial minutes at both ends,
        so a ticker costs about 1 440 small tuples however short the step is.
        """
        last = self.step_index(now_ms)
        if last < 0:
            raise InvalidValueError(f"no market data before {self.first_step_ms} (asked for {now_ms})")
        cached = self._tickers.get(symbol_id)
        if cached is not None and cached.step == last:
            return cached
        series = self._steps(symbol_id, last)
        first = max(0, self.step_index(now_ms - _DAY_MS) + 1)
        parts: list[CandleValues] = []
        minute = candle_open_time("1m", self.step_time(first))
        if minute < self.step_time(first):
            head_last = min(last, self.step_index(minute + _MINUTE_MS - 1))
            parts.append(self._aggregate(series, minute, first, head_last))
            minute += _MINUTE_MS
        newest_minute = candle_open_time("1m", now_ms)
        while minute <= newest_minute:
            values = self.candle(symbol_id, "1m", minute, now_ms)
            if values is not None:
                parts.append(values)
            minute += _MINUTE_MS
        ticker = TickerValues(
            open=parts[0].open,
            high=max(part.high for part in parts),
            low=min(part.low for part in parts),
            last=series.prices[last],
            volume=sum(part.volume for part in parts),
            quote=sum(part.quote for part in parts),
            last_qty=series.volumes[last],
            open_time=self.step_time(first),
            last_time=self.step_time(last),
            step=last,
            bid=series.prices[last],
            bid_qty=_book_lots(last, 1, series.mean_lots),
            ask=series.prices[last] + series.spread,
            ask_qty=_book_lots(last, 2, series.mean_lots),
        )
        self._tickers[symbol_id] = ticker
        return ticker
