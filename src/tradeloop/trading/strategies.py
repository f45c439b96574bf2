"""Two reference strategies: an SMA crossover and a Donchian breakout.

Both read one price series per symbol, either the close of each closed candle (``source="kline"``,
the classic form) or the price of each tick (``source="tick"``: last, else the bid/ask midpoint).
Tick mode exists because a candle strategy on the shortest timeframe, 1m, trades a few times an
hour, which is right for real use and useless for a 20-second demo; on ticks the same rules react
to the price path second by second. Nothing else differs between the modes.

Positions are sized in quote currency (``size``, e.g. 500 USDT), converted to a quantity at the
signal's price and rounded down to ``quantity_step``, so one parameter set fits BTC and ETH alike.
Each strategy signals a *target* position only when its view changes, never on every bar.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from decimal import ROUND_DOWN, Decimal, InvalidOperation
from typing import Any

from ..errors import InvalidValueError
from ..exchanges import normalize_exchange_name
from ..models import Kline, Signal, Tick
from ..symbols import parse_symbol, validate_timeframe

__all__ = ["STRATEGY_TYPES", "Breakout", "PriceSeriesStrategy", "SmaCrossover", "create_strategy"]

_SOURCES = ("kline", "tick")


def _param_error(owner: str, name: str, requirement: str, value: object) -> ValueError:
    return ValueError(f"{owner}: parameter {name!r} must be {requirement}, got {value!r}")


def _int_param(owner: str, name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise _param_error(owner, name, f"an integer >= {minimum}", value)
    return value


def _decimal_param(owner: str, name: str, value: object) -> Decimal:
    """A positive finite Decimal from a Decimal, int, float (by its shortest repr) or string."""
    if isinstance(value, bool) or not isinstance(value, Decimal | int | float | str):
        raise _param_error(owner, name, "a positive number", value)
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise _param_error(owner, name, "a positive number", value) from None
    if not number.is_finite() or number <= 0:
        raise _param_error(owner, name, "a positive number", value)
    return number


class PriceSeriesStrategy(ABC):
    """Shared plumbing: parameter checks, one price series per symbol, sizing, target changes.

    Subclasses implement :meth:`decide`, returning the desired direction (+1 long, 0 flat, -1
    short) and a reason, or None to keep the current view.
    """

    kind = "price-series"

    def __init__(
        self,
        *,
        symbols: Sequence[str],
        size: Decimal | int | float | str,
        history: int,
        name: str | None = None,
        exchange: str | None = None,
        source: str = "kline",
        timeframe: str = "1m",
        allow_short: bool = False,
        quantity_step: Decimal | int | float | str = Decimal("0.0001"),
    ) -> None:
        owner = type(self).__name__
        if isinstance(symbols, str) or not isinstance(symbols, Sequence) or not symbols:
            raise _param_error(owner, "symbols", "a non-empty list of unified symbols", symbols)
        try:
            for symbol in symbols:
                parse_symbol(symbol)
        except ValueError as exc:
            raise InvalidValueError(f"{owner}: parameter 'symbols': {exc}") from None
        if source not in _SOURCES:
            raise _param_error(owner, "source", f"one of {', '.join(_SOURCES)}", source)
        try:
            validate_timeframe(timeframe)
        except ValueError as exc:
            raise InvalidValueError(f"{owner}: parameter 'timeframe': {exc}") from None
        if not isinstance(allow_short, bool):
            raise _param_error(owner, "allow_short", "true or false", allow_short)
        if name is not None and (not isinstance(name, str) or not name):
            raise _param_error(owner, "name", "a non-empty string", name)
        if exchange is not None:
            try:
                exchange = normalize_exchange_name(exchange)
            except ValueError:
                raise _param_error(owner, "exchange", "an exchange name", exchange) from None
        self.name = name or self.kind
        self.exchange = exchange
        self.symbols = tuple(symbols)
        self.source = source
        self.timeframe: str | None = timeframe if source == "kline" else None
        self.size = _decimal_param(owner, "size", size)
        self.quantity_step = _decimal_param(owner, "quantity_step", quantity_step)
        self.allow_short = allow_short
        self.warmup = history if source == "kline" else 0
        self._history = history
        self._prices: dict[tuple[str, str], deque[Decimal]] = {}
        self._direction: dict[tuple[str, str], int] = {}
        self._target: dict[tuple[str, str], Decimal] = {}

    def on_kline(self, kline: Kline) -> list[Signal]:
        return self._observe(kline, kline.close) if self.source == "kline" else []

    def on_tick(self, tick: Tick) -> list[Signal]:
        if self.source != "tick":
            return []
        price = tick.last
        if price is None and tick.bid is not None and tick.ask is not None:
            price = (tick.bid + tick.ask) / 2
        return [] if price is None else self._observe(tick, price)

    def on_rejected(self, signal: Signal, held: Decimal) -> None:
        """The risk manager refused ``signal``: take the view of what is held (``held``), not of
        what was asked, so the next signal comes when the view changes from the held position.

        Without this, a refused flip from long to short leaves the strategy believing it is
        short; when its view turns long again it asks for the long target, now a few units off
        the long it still holds, and a tiny sell goes out with a "long" reason. A refusal of an
        older signal, already superseded by a newer target, changes nothing.
        """
        key = (signal.exchange, signal.symbol)
        if signal.target is None or self._target.get(key) != signal.target:
            return
        self._direction[key] = (held > 0) - (held < 0)
        self._target[key] = held

    @abstractmethod
    def decide(self, prices: Sequence[Decimal]) -> tuple[int, str] | None:
        """Direction wanted after ``prices`` (oldest first, the newest last), with the reason."""

    def _observe(self, market: Kline | Tick, price: Decimal) -> list[Signal]:
        key = (market.exchange, market.symbol)
        prices = self._prices.setdefault(key, deque(maxlen=self._history + 1))
        prices.append(price)
        if len(prices) <= self._history:
            return []
        decision = self.decide(prices)
        if decision is None:
            return []
        direction, reason = decision
        if direction < 0 and not self.allow_short:
            direction = 0
        if self._direction.get(key) == direction:
            return []
        self._direction[key] = direction
        quantity = (self.size / price).quantize(self.quantity_step, rounding=ROUND_DOWN)
        self._target[key] = direction * quantity
        return [Signal.hold(market, direction * quantity, reason)]


class SmaCrossover(PriceSeriesStrategy):
    """Long while the fast simple moving average is above the slow one; flat (or short) below.

    Parameters: ``fast`` and ``slow`` window lengths (1 <= fast < slow), plus those of
    :class:`PriceSeriesStrategy`.
    """

    kind = "sma_crossover"

    def __init__(self, *, fast: int = 10, slow: int = 30, **common: Any) -> None:
        fast = _int_param(type(self).__name__, "fast", fast, 1)
        slow = _int_param(type(self).__name__, "slow", slow, 2)
        if fast >= slow:
            raise _param_error(type(self).__name__, "fast", f"less than slow ({slow})", fast)
        self.fast = fast
        self.slow = slow
        super().__init__(history=slow, **common)

    def decide(self, prices: Sequence[Decimal]) -> tuple[int, str] | None:
        window = list(prices)[-self.slow :]
        fast_sum = sum(window[-self.fast :], Decimal(0))
        slow_sum = sum(window, Decimal(0))
        # Compare the averages exactly, by cross-multiplying rather than dividing.
        difference = fast_sum * self.slow - slow_sum * self.fast
        if not difference:
            return None
        fast, slow = fast_sum / self.fast, slow_sum / self.slow
        relation = ">" if difference > 0 else "<"
        return (1 if difference > 0 else -1), f"SMA{self.fast} {fast:.6g} {relation} SMA{self.slow} {slow:.6g}"


class Breakout(PriceSeriesStrategy):
    """Donchian breakout: long when the price exceeds the highest of the last ``lookback`` prices,
    flat (or short) when it falls below the lowest; otherwise keep the current view.
    """

    kind = "breakout"

    def __init__(self, *, lookback: int = 20, **common: Any) -> None:
        self.lookback = _int_param(type(self).__name__, "lookback", lookback, 1)
        super().__init__(history=self.lookback, **common)

    def decide(self, prices: Sequence[Decimal]) -> tuple[int, str] | None:
        *channel, price = prices
        high, low = max(channel), min(channel)
        if price > high:
            return 1, f"{price} broke above the {self.lookback}-price high {high}"
        if price < low:
            return -1, f"{price} broke below the {self.lookback}-price low {low}"
        return None


STRATEGY_TYPES: Mapping[str, Callable[..., PriceSeriesStrategy]] = {
    SmaCrossover.kind: SmaCrossover,
    Breakout.kind: Breakout,
}
"""Strategies a config file can name in ``type``."""


def create_strategy(kind: str, params: Mapping[str, Any]) -> PriceSeriesStrategy:
    """Build a reference strategy from its ``type`` and parameters (a config table).

    ValueError names an unknown type, an unknown or missing parameter, and what is allowed.
    """
    factory = STRATEGY_TYPES.get(kind)
    if factory is None:
        raise InvalidValueError(f"unknown strategy type {kind!r}: expected one of {', '.join(STRATEGY_TYPES)}")
    allowed, required = _parameters(factory)
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise InvalidValueError(
            f"strategy type {kind!r}: unknown parameter {unknown[0]!r}; allowed: {', '.join(sorted(allowed))}"
        )
    missing = sorted(required - set(params))
    if missing:
        raise InvalidValueError(f"strategy type {kind!r}: parameter {missing[0]!r} is missing")
    return factory(**params)


def _parameters(factory: Callable[..., PriceSeriesStrategy]) -> tuple[set[str], set[str]]:
    """Keyword parameters a strategy class accepts, and those without a default: its own and its
    bases' (``history`` is derived)."""
    names: set[str] = set()
    required: set[str] = set()
    for cls in inspect.getmro(factory) if isinstance(factory, type) else ():
        if "__init__" in cls.__dict__:
            parameters = inspect.signature(cls.__dict__["__init__"]).parameters.values()
            keywords = [p for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY]
            names.update(p.name for p in keywords)
            required.update(p.name for p in keywords if p.default is inspect.Parameter.empty)
    names.discard("history")
    required.discard("history")
    return names, required
