"""Candle history in memory: one instrument's candles of one timeframe as columns of integers.

A year of one-minute candles is 525,600 rows. As :class:`~tradeloop.models.Kline` objects with five
Decimals each that is about 300 MB; as six ``array('q')`` columns (prices in units of the
smallest price step the data uses, volumes likewise) it is 25 MB, and a Kline is built only when
the replay hands it out. Scaled integers are exact, so the Decimals handed out equal the text
the data came as (``Decimal("60000.5")`` stays ``60000.5``).
"""

from __future__ import annotations

from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from itertools import pairwise

from ..errors import InvalidValueError, preview
from ..models import Kline
from ..symbols import TIMEFRAMES, candle_open_time, next_open_time, timeframe_ms, validate_timeframe

__all__ = ["CandleSeries", "Gap", "MarketHistory", "SeriesBuilder", "series_from_klines"]

_INT64 = 2**63 - 1
_DAY_MS = 86_400_000
_MAX_DIGITS = 38
_PREVIEW = 40
"""Characters of a refused value shown in its error."""
"""Digits a price or volume may have: more cannot fit the 64-bit columns scaled to the data's decimals anyway."""


@dataclass(frozen=True, slots=True)
class Gap:
    """Candles missing between two that exist: ``missing`` open times from ``first_missing``."""

    first_missing: int
    missing: int


class CandleSeries:
    """Candles of one (exchange, symbol, timeframe), oldest first, one per open time, no gaps in
    the sense of order (gaps in time are allowed and reported by :meth:`gaps`).

    Build one with :class:`SeriesBuilder`.
    """

    __slots__ = (
        "_price_unit",
        "_volume_unit",
        "closes",
        "exchange",
        "highs",
        "lows",
        "open_times",
        "opens",
        "price_decimals",
        "symbol",
        "timeframe",
        "volume_decimals",
        "volumes",
    )

    def __init__(
        self,
        exchange: str,
        symbol: str,
        timeframe: str,
        columns: tuple[array[int], array[int], array[int], array[int], array[int], array[int]],
        price_decimals: int,
        volume_decimals: int,
    ) -> None:
        self.exchange = exchange
        self.symbol = symbol
        self.timeframe = timeframe
        self.open_times, self.opens, self.highs, self.lows, self.closes, self.volumes = columns
        self.price_decimals = price_decimals
        self.volume_decimals = volume_decimals
        self._price_unit = Decimal(1).scaleb(-price_decimals)
        self._volume_unit = Decimal(1).scaleb(-volume_decimals)

    def __len__(self) -> int:
        return len(self.open_times)

    def price(self, units: int) -> Decimal:
        return Decimal(units) * self._price_unit

    def kline(self, index: int) -> Kline:
        """The closed candle at ``index``."""
        unit = self._price_unit
        return Kline(
            self.exchange,
            self.symbol,
            self.timeframe,
            self.open_times[index],
            Decimal(self.opens[index]) * unit,
            Decimal(self.highs[index]) * unit,
            Decimal(self.lows[index]) * unit,
            Decimal(self.closes[index]) * unit,
            Decimal(self.volumes[index]) * self._volume_unit,
            True,
        )

    def index_range(self, start_ms: int, end_ms: int) -> range:
        """Indices of the candles opening in ``[start_ms, end_ms)``."""
        return range(bisect_left(self.open_times, start_ms), bisect_left(self.open_times, end_ms))

    def closed_before(self, time_ms: int) -> int:
        """How many candles have closed at or before ``time_ms`` (the index after the last one)."""
        return bisect_right(self.open_times, time_ms - timeframe_ms(self.timeframe))

    def gaps(self, start_ms: int, end_ms: int) -> list[Gap]:
        """Runs of missing candles opening in ``[start_ms, end_ms)``."""
        gaps: list[Gap] = []
        expected = candle_open_time(self.timeframe, start_ms)
        if expected < start_ms:
            expected = next_open_time(self.timeframe, expected)
        for index in self.index_range(start_ms, end_ms):
            open_time = self.open_times[index]
            if open_time > expected:
                gaps.append(Gap(expected, self._count(expected, open_time)))
            expected = next_open_time(self.timeframe, open_time)
        if expected < end_ms:
            gaps.append(Gap(expected, self._count(expected, end_ms)))
        return gaps

    def _count(self, start_ms: int, end_ms: int) -> int:
        """Candles opening in ``[start_ms, end_ms)``, ``start_ms`` an open time: by division, but
        for months (a range back to year 1 was minutes of counting one candle at a time)."""
        if self.timeframe != "1M":
            return max(0, -(-(end_ms - start_ms) // timeframe_ms(self.timeframe)))
        count, current = 0, start_ms
        while current < end_ms:
            count += 1
            current = next_open_time(self.timeframe, current)
        return count

    def aggregate(self, timeframe: str, indices: range) -> Iterator[Kline]:
        """Candles of ``timeframe`` (a multiple of this series' timeframe) built from the candles
        at ``indices``, oldest first: open = first open, high = max, low = min, close = last close,
        volume = sum. A bucket holds only the candles of ``indices`` (and of the data) it covers.
        """
        opens, highs, lows, closes, volumes = self.opens, self.highs, self.lows, self.closes, self.volumes
        bucket: int | None = None
        first = high = low = close = volume = 0
        for index in indices:
            open_time = candle_open_time(timeframe, self.open_times[index])
            if open_time != bucket:
                if bucket is not None:
                    yield self._bucket_kline(timeframe, bucket, first, high, low, close, volume)
                bucket, first, high, low, volume = open_time, opens[index], highs[index], lows[index], 0
            high = max(high, highs[index])
            low = min(low, lows[index])
            close = closes[index]
            volume += volumes[index]
        if bucket is not None:
            yield self._bucket_kline(timeframe, bucket, first, high, low, close, volume)

    def _bucket_kline(
        self, timeframe: str, open_time: int, first: int, high: int, low: int, close: int, volume: int
    ) -> Kline:
        unit = self._price_unit
        return Kline(
            self.exchange,
            self.symbol,
            timeframe,
            open_time,
            Decimal(first) * unit,
            Decimal(high) * unit,
            Decimal(low) * unit,
            Decimal(close) * unit,
            Decimal(volume) * self._volume_unit,
            True,
        )


MarketHistory = Mapping[tuple[str, str], CandleSeries]
"""Candles by (exchange, unified symbol): what a backtest replays."""


def _scaled(text: str | Decimal) -> tuple[int, int]:
    """``text`` as (integer, decimals) with value ``integer * 10**-decimals``, exactly.

    Raises InvalidValueError saying what is wrong with it.
    """
    if isinstance(text, str) and text.isascii():
        whole, _, fraction = text.strip().partition(".")
        if (whole.isdigit() or not whole) and (fraction.isdigit() or not fraction) and (whole or fraction):
            significant = (whole + fraction).lstrip("0")
            if len(significant) <= _MAX_DIGITS and len(fraction) <= _MAX_DIGITS:
                return int(significant or "0"), len(fraction)  # the common case, five times faster than Decimal
            raise InvalidValueError(f"{preview(text, _PREVIEW)} has over {_MAX_DIGITS} digits")
    try:
        value = text if isinstance(text, Decimal) else Decimal(text.strip())
    except InvalidOperation:
        raise InvalidValueError(f"{text!r} is not a number") from None
    except ValueError as exc:  # past Python's 4300-digit limit on int and Decimal conversions
        raise InvalidValueError(f"{preview(str(text), _PREVIEW)} is not a number: {exc}") from None
    if not value.is_finite():
        raise InvalidValueError(f"{text!r} is not a finite number")
    sign, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)
    if len(digits) + max(exponent, 0) > _MAX_DIGITS or -exponent > _MAX_DIGITS:
        # Before any arithmetic: 1E9999999 took seconds to multiply out before it was refused.
        raise InvalidValueError(f"{preview(str(text), _PREVIEW)} has over {_MAX_DIGITS} digits")
    integer = int("".join(map(str, digits)) or "0") * (-1 if sign else 1)
    if exponent > 0:
        return integer * 10**exponent, 0
    return integer, -exponent


def _candle_at(open_time: int) -> str:
    return f"candle {open_time}"


class SeriesBuilder:
    """Collects candle rows (any order) and builds a validated :class:`CandleSeries`.

    Every problem is an :class:`~tradeloop.errors.InvalidValueError` naming where the row came
    from and what is wrong: ``place(at)`` names a row by the ``at`` it was added with (a file's
    line number; by default its open time), ``source`` the whole input. Rows are kept as seven
    ``array('q')`` columns (56 bytes a row), not as objects: a CSV of three million rows took
    3.4 GB as tuples with a location string each.

    ``timeframe`` None: the shortest step between two open times, which must be a timeframe
    tradeloop knows (a CSV's rows say nothing else about it).
    """

    def __init__(
        self,
        exchange: str,
        symbol: str,
        timeframe: str | None,
        *,
        source: str = "the candles",
        place: Callable[[int], str] = _candle_at,
    ) -> None:
        self.exchange = exchange
        self.symbol = symbol
        self.timeframe = None if timeframe is None else validate_timeframe(timeframe)
        self.source = source
        self._place = place
        # open time, open, high, low, close (price units), volume (volume units), at
        self._columns = tuple(array("q") for _ in range(7))
        self._price_decimals = 0
        self._volume_decimals = 0

    def __len__(self) -> int:
        return len(self._columns[0])

    def add(
        self,
        open_time: int,
        open_: str | Decimal,
        high: str | Decimal,
        low: str | Decimal,
        close: str | Decimal,
        volume: str | Decimal,
        at: int | None = None,
    ) -> None:
        at = open_time if at is None else at
        prices = [self._scaled(value, name, at) for name, value in zip(_PRICES, (open_, high, low, close), strict=True)]
        volume_units, volume_decimals = self._scaled(volume, "volume", at)
        decimals = max(d for _, d in prices)
        o, h, lo, c = (units * 10 ** (decimals - d) for units, d in prices)
        if min(o, h, lo, c) <= 0:
            raise InvalidValueError(f"{self._place(at)}: prices must be > 0")
        if volume_units < 0:
            raise InvalidValueError(f"{self._place(at)}: volume must be >= 0")
        if not lo <= min(o, c) <= max(o, c) <= h:
            raise InvalidValueError(
                f"{self._place(at)}: expected low <= open, close <= high; got open {open_}, high {high}, "
                f"low {low}, close {close}"
            )
        if self.timeframe is not None:
            self._check_aligned(self.timeframe, open_time, at)
        try:
            if decimals > self._price_decimals:
                self._rescale((1, 2, 3, 4), 10 ** (decimals - self._price_decimals))
                self._price_decimals = decimals
            if volume_decimals > self._volume_decimals:
                self._rescale((5,), 10 ** (volume_decimals - self._volume_decimals))
                self._volume_decimals = volume_decimals
            price_scale = 10 ** (self._price_decimals - decimals)
            volume_units *= 10 ** (self._volume_decimals - volume_decimals)
            row = (open_time, o * price_scale, h * price_scale, lo * price_scale, c * price_scale, volume_units, at)
            if max(row[2], row[5]) > _INT64:
                raise OverflowError
            for column, value in zip(self._columns, row, strict=True):
                column.append(value)
        except OverflowError:
            raise InvalidValueError(f"{self._place(at)}: a value has too many digits") from None

    def _scaled(self, text: str | Decimal, name: str, at: int) -> tuple[int, int]:
        try:
            return _scaled(text)
        except InvalidValueError as exc:
            raise InvalidValueError(f"{self._place(at)}: {name}: {exc}") from None

    def _check_aligned(self, timeframe: str, open_time: int, at: int) -> None:
        if candle_open_time(timeframe, open_time) != open_time:
            where = self._place(at)
            raise InvalidValueError(f"{where}: open time {open_time} is not the start of a {timeframe} candle")

    def _rescale(self, columns: tuple[int, ...], factor: int) -> None:
        """Multiply the rows so far by ``factor`` (a row came with more decimals). Raises OverflowError."""
        rescaled = [array("q", [value * factor for value in self._columns[index]]) for index in columns]
        for index, column in zip(columns, rescaled, strict=True):  # all or none: after any overflow
            self._columns[index][:] = column

    def _infer_timeframe(self, open_times: array[int]) -> str:
        steps = [after - before for before, after in pairwise(open_times) if after > before]
        if not steps:
            raise InvalidValueError(f"{self.source}: one candle does not tell its timeframe; give two or more")
        step = min(steps)
        for name, length in TIMEFRAMES.items():
            if length == step and name != "1M":
                return name
        if 28 * _DAY_MS <= step <= 31 * _DAY_MS and all(candle_open_time("1M", t) == t for t in open_times):
            return "1M"  # months differ in length: every candle opens on the first of one
        raise InvalidValueError(
            f"{self.source}: candles {step} ms apart are not a known timeframe "
            f"({', '.join(name for name in TIMEFRAMES if name != '1M')})"
        )

    def build(self) -> CandleSeries:
        times = self._columns[0]
        order = sorted(range(len(times)), key=times.__getitem__)
        columns = tuple(array("q", [column[i] for i in order]) for column in self._columns)
        open_times, places = columns[0], columns[6]
        for index in range(1, len(open_times)):
            if open_times[index] == open_times[index - 1]:
                first, second = self._place(places[index - 1]), self._place(places[index])
                raise InvalidValueError(f"{second}: a second candle opening at {open_times[index]} (first at {first})")
        timeframe = self.timeframe
        if timeframe is None:
            timeframe = self._infer_timeframe(open_times)
            for open_time, row_at in zip(open_times, places, strict=True):
                self._check_aligned(timeframe, open_time, row_at)
        return CandleSeries(
            self.exchange,
            self.symbol,
            timeframe,
            (columns[0], columns[1], columns[2], columns[3], columns[4], columns[5]),
            self._price_decimals,
            self._volume_decimals,
        )


_PRICES = ("open", "high", "low", "close")


def series_from_klines(klines: Iterable[Kline], *, exchange: str, symbol: str, timeframe: str) -> CandleSeries:
    """A series from klines (e.g. fetched over REST, or made in a test)."""
    builder = SeriesBuilder(exchange, symbol, timeframe)
    for kline in klines:
        builder.add(kline.open_time, kline.open, kline.high, kline.low, kline.close, kline.volume)
    return builder.build()
