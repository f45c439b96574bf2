"""The risk manager: every signal becomes an order or a counted rejection with a reason.

Limits (all optional; ``None`` is no limit):

Amounts are in quote currency (USDT), all > 0; ``max_drawdown`` is a fraction (0.05 = 5%).

- ``max_position_notional``: |account position| × price per instrument after the order;
- ``max_gross_exposure``: sum of |position| × mark over all instruments after the order;
- ``max_order_notional``: quantity × price of one order (a fat-finger bound);
- ``max_daily_loss``: equity lost since the start of the UTC day (market time), in quote
  currency, and ``max_drawdown``: equity lost from its peak, as a fraction of that peak — either
  one trips the **kill switch**: every strategy's holding is flattened and no new order is accepted;
- ``max_tick_age``: seconds since the instrument's latest tick; older data gets no order;
- ``max_orders_per_minute``: orders approved in any 60 s of Trio's clock.

- ``max_candle_lag`` (default 3): a signal prompted by a closed candle (``Signal.candle``) is
  refused (``stale_signal``) once that many newer candles have closed by the instrument's latest
  tick, except its part that brings the strategy's own position towards flat (a late exit is
  made, a late flip only closes). Candles reach strategies that late from a backlog (an
  engine taking over a stream a dead engine left unprocessed) or a backfill after a gap: their
  signals would trade the current price on old information, several round trips in the same
  millisecond (an outside look saw exactly that). Not 1: the simulator at ``--speed 120``
  pushes two candles' worth at once, so a close arrives a candle late.

Orders that only shrink a position skip the position and exposure limits: risk must never stop
a strategy from getting out.

Restarts. The kill switch, the peak the drawdown is measured from and the day's starting equity
(with the UTC day it belongs to) are a :class:`~tradeloop.trading.journal.RiskRecord` the engine
journals and hands back here on restart: a tripped switch stays tripped, and the daily loss of a
restart on the same day still counts from that day's start. Only :meth:`RiskManager.reset` (``tradeloop run
--reset-kill-switch``) clears the switch; it also restarts the peak and the day's start at the
current equity, or the limits would trip again at once.

Rejections are fed back: the ``on_rejection`` callback hears of every refused signal with what the
strategy actually holds, so a strategy never goes on believing it holds a target it was refused
(see :meth:`~tradeloop.trading.strategy.StrategyCoordinator.rejected`); with a journal, each
rejection is journaled with its reason. The feedback can arrive after the strategy has already
signalled again (signals queue while an order is journaled), so the targets are also reconciled
here: after a refused flip or exit (a target off the side the strategy holds), a target back on
the side it still holds means its view came back to its position, which is kept as it is;
resizing it to the new target would trade a sliver the opposite way to the signal's reason.

Execution is serialised by one lock, which the kill switch's flatten takes too: once the switch
trips, no order approved earlier can reopen a position after the flatten.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from decimal import Decimal, InvalidOperation
from enum import StrEnum

import anyio

from .._backend import ReceiveChannel
from ..errors import InvalidValueError
from ..models import Fill, Order, Side, Signal
from ..symbols import next_open_time, utc_text
from .journal import Journal, RejectionRecord, RiskRecord
from .portfolio import PortfolioManager

__all__ = ["RejectReason", "Rejection", "RiskLimits", "RiskManager", "RiskState"]

logger = logging.getLogger(__name__)

_DAY_MS = 86_400_000
_RATE_WINDOW = 60.0
_RECENT_REJECTIONS = 20
_ZERO = Decimal(0)


class RejectReason(StrEnum):
    KILL_SWITCH = "kill_switch"
    NO_MARKET_DATA = "no_market_data"
    STALE_MARKET_DATA = "stale_market_data"
    STALE_SIGNAL = "stale_signal"
    MAX_ORDER_NOTIONAL = "max_order_notional"
    MAX_POSITION = "max_position_notional"
    MAX_GROSS_EXPOSURE = "max_gross_exposure"
    ORDER_RATE = "max_orders_per_minute"


@dataclass(frozen=True, slots=True)
class RiskLimits:
    """Bounds the risk manager enforces; every field is validated (ValueError names it)."""

    max_position_notional: Decimal | None = None
    max_gross_exposure: Decimal | None = None
    max_order_notional: Decimal | None = None
    max_daily_loss: Decimal | None = None
    max_drawdown: Decimal | None = None
    """A fraction of peak equity in (0, 1], e.g. 0.2 for 20%."""
    max_tick_age: float | None = 10.0
    max_orders_per_minute: int | None = 60
    max_candle_lag: int | None = 3
    """Candles a signal's candle may lag the market: once that many newer candles have closed
    (by the instrument's latest tick), a signal from it only brings the strategy's own position
    towards flat (the rest is refused)."""

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if value is None:
                continue
            if field.name in ("max_orders_per_minute", "max_candle_lag"):
                if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                    raise InvalidValueError(f"risk limit {field.name!r} must be an integer >= 1, got {value!r}")
                continue
            if field.name == "max_tick_age":
                if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                    raise InvalidValueError(f"risk limit {field.name!r} must be a number of seconds > 0, got {value!r}")
                continue
            number = _decimal(field.name, value)
            if not number:
                raise InvalidValueError(
                    f"risk limit {field.name!r} 0 would stop every order; expected a number > 0, or no limit"
                )
            if field.name == "max_drawdown" and not 0 < number <= 1:
                raise InvalidValueError(
                    f"risk limit 'max_drawdown' {value!r} = {percent(number)} of the peak; "
                    "expected a fraction above 0 and at most 1 (0.2 = 20%)"
                )
            object.__setattr__(self, field.name, number)


def _above(value: Decimal, limit: Decimal) -> str:
    """``value`` with two decimals, or as many more as it takes to show it above ``limit``
    (a loss of 500.004 over a limit of 500 reads 500.004, not 500.00).
    """
    for places in range(2, 9):
        text = f"{value:.{places}f}"
        if Decimal(text) > limit:
            return text
    return f"{value:f}"


def percent(fraction: Decimal) -> str:
    """``Decimal("0.05")`` as ``"5%"``, exactly (no float rounding, no trailing zeros)."""
    text = f"{(fraction * 100).normalize():f}"
    return f"{text}%"


def _decimal(name: str, value: object) -> Decimal:
    """A finite Decimal >= 0 from a Decimal, int, float or string."""
    try:
        number = Decimal(str(value)) if isinstance(value, Decimal | int | float | str) else None
    except InvalidOperation:
        number = None
    if isinstance(value, bool) or number is None or not number.is_finite() or number < 0:
        raise InvalidValueError(f"risk limit {name!r} must be a number >= 0, got {value!r}")
    return number


@dataclass(frozen=True, slots=True)
class Rejection:
    signal: Signal
    reason: RejectReason
    detail: str
    held: Decimal = _ZERO
    """What the signal's strategy holds of the instrument, refused its signal."""


@dataclass(frozen=True, slots=True)
class RiskState:
    """What the risk manager has done, for the live view and the summary."""

    killed: bool
    kill_reason: str | None
    kill_time: int | None
    """When the switch tripped (Unix ms), possibly in an earlier run."""
    kill_restored: bool
    """The switch was already tripped when this run started (restored from the journal)."""
    signals: int
    orders: int
    unchanged: int
    """Signals asking for the position the strategy already holds."""
    rejections: Mapping[RejectReason, int]
    recent_rejections: tuple[Rejection, ...]
    day_start_equity: Decimal
    peak_equity: Decimal

    @property
    def total_rejections(self) -> int:
        return sum(self.rejections.values())


class RiskManager:
    """Turns signals into paper orders on ``portfolio`` within ``limits``.

    Call :meth:`after_mark` after every tick the portfolio is marked to: it trips the kill switch,
    which sets :attr:`killed`; the owner then calls :meth:`flatten`.
    """

    def __init__(
        self,
        limits: RiskLimits,
        portfolio: PortfolioManager,
        *,
        restored: RiskRecord | None = None,
        journal: Journal | None = None,
        on_rejection: Callable[[Rejection], None] | None = None,
    ) -> None:
        self.limits = limits
        self._portfolio = portfolio
        self._journal = journal
        self._on_rejection = on_rejection
        self.killed = anyio.Event()
        self._kill_reason: str | None = None
        self._kill_time: int | None = None
        self._kill_restored = False
        self._lock = anyio.Lock()
        self._order_times: deque[float] = deque()
        self._signals = 0
        self._orders = 0
        self._unchanged = 0
        self._rejections: Counter[RejectReason] = Counter()
        self._recent: deque[Rejection] = deque(maxlen=_RECENT_REJECTIONS)
        self._refused_exits: set[tuple[str, str, str]] = set()
        """(strategy, exchange, symbol) whose last signal, a flip or an exit, was refused."""
        self._day: int | None = None
        self._day_start_equity = portfolio.equity
        self._peak = portfolio.equity
        if restored is not None:
            self._peak = max(self._peak, restored.peak_equity)
            if restored.day is not None and restored.day_start_equity is not None:
                self._day, self._day_start_equity = restored.day, restored.day_start_equity
            if restored.kill_reason is not None:
                self._kill_reason, self._kill_time, self._kill_restored = restored.kill_reason, restored.kill_time, True
                self.killed.set()

    @property
    def kill_reason(self) -> str | None:
        return self._kill_reason

    def record(self) -> RiskRecord:
        """What the journal keeps so that a restart resumes this state."""
        return RiskRecord(
            kill_reason=self._kill_reason,
            kill_time=self._kill_time,
            peak_equity=self._peak,
            day=self._day,
            day_start_equity=self._day_start_equity if self._day is not None else None,
        )

    def reset(self, time_ms: int | None = None) -> RiskRecord:
        """Clear a tripped kill switch; the peak and the day's start restart at the current equity.

        ``time_ms`` (default: now) decides the UTC day. Returns the state to journal.
        """
        when = _now_ms() if time_ms is None else time_ms
        equity = self._portfolio.equity
        logger.warning("kill switch reset (was: %s)", self._kill_reason)
        self._kill_reason = self._kill_time = None
        self._kill_restored = False
        self.killed = anyio.Event()
        self._peak = self._day_start_equity = equity
        self._day = when // _DAY_MS
        return self.record()

    def state(self) -> RiskState:
        return RiskState(
            killed=self._kill_reason is not None,
            kill_reason=self._kill_reason,
            kill_time=self._kill_time,
            kill_restored=self._kill_restored,
            signals=self._signals,
            orders=self._orders,
            unchanged=self._unchanged,
            rejections=dict(self._rejections),
            recent_rejections=tuple(self._recent),
            day_start_equity=self._day_start_equity,
            peak_equity=self._peak,
        )

    async def run(self, signals: ReceiveChannel[Signal]) -> None:
        """Submit every signal until the channel closes."""
        with signals:
            async for signal in signals:
                await self.submit(signal)

    async def submit(self, signal: Signal) -> Fill | Rejection | None:
        """Check ``signal`` and, if it passes, execute it: the fill, the rejection, or None when
        the strategy already holds what it asks for.
        """
        async with self._lock:
            self._signals += 1
            decision = self._evaluate(signal)
            if isinstance(decision, Order):
                self._refused_exits.discard((signal.strategy, signal.exchange, signal.symbol))
                self._orders += 1
                self._order_times.append(anyio.current_time())
                return await self._portfolio.execute(decision)
        if decision is None:
            self._unchanged += 1
            return None
        if signal.target is not None and not signal.target * decision.held > 0:
            self._refused_exits.add((signal.strategy, signal.exchange, signal.symbol))
        logger.info("rejected %s %s: %s", signal.strategy, signal.symbol, decision.detail)
        if self._on_rejection is not None:
            self._on_rejection(decision)
        if self._journal is not None:
            # Counted once journaled: a run stopped meanwhile neither journals nor counts it.
            await self._journal.record_rejection(_rejection_record(decision))
        self._rejections[decision.reason] += 1
        self._recent.append(decision)
        return decision

    def after_mark(self, time_ms: int) -> None:
        """Track the day's starting equity and the run's peak; trip the kill switch on a breach.

        ``time_ms`` is the market time of the tick just marked; it decides the UTC day.
        """
        equity = self._portfolio.equity
        day = time_ms // _DAY_MS
        if day != self._day:
            self._day, self._day_start_equity = day, equity
        self._peak = max(self._peak, equity)
        if self._kill_reason is not None:
            return
        limits = self.limits
        loss = self._day_start_equity - equity
        if limits.max_daily_loss is not None and loss > limits.max_daily_loss:
            self.kill(
                f"daily loss {_above(loss, limits.max_daily_loss)} since the UTC day's start "
                f"({self._day_start_equity:.2f}) "
                f"exceeds max_daily_loss {limits.max_daily_loss}",
                time_ms,
            )
        elif limits.max_drawdown is not None and self._peak - equity > limits.max_drawdown * self._peak:
            fall = self._peak - equity
            self.kill(
                f"drawdown {_above(fall / self._peak * 100, limits.max_drawdown * 100)}% "
                f"({fall:.2f} from the peak {self._peak:.2f}) "
                f"exceeds max_drawdown {percent(limits.max_drawdown)}",
                time_ms,
            )

    def kill(self, reason: str, time_ms: int | None = None) -> None:
        """Trip the kill switch: from now on every signal is rejected. Idempotent.

        ``time_ms`` is when (Unix ms; default: now).
        """
        if self._kill_reason is None:
            self._kill_reason = reason
            self._kill_time = _now_ms() if time_ms is None else time_ms
            logger.warning("kill switch: %s", reason)
            self.killed.set()

    async def flatten(self) -> list[Fill]:
        """Close every strategy's holding at the market (staleness and limits do not apply)."""
        fills = []
        async with self._lock:
            for (strategy, exchange, symbol), quantity in self._portfolio.strategy_positions().items():
                side = Side.SELL if quantity > 0 else Side.BUY
                if self._portfolio.quote(exchange, symbol, side) is None:
                    logger.error("kill switch cannot flatten %s %s of %s: no price", quantity, symbol, strategy)
                    continue
                reason = f"kill switch: {self._kill_reason}"
                order = Order(self._portfolio.new_order_id(), exchange, symbol, side, abs(quantity), strategy, reason)
                self._orders += 1
                fills.append(await self._portfolio.execute(order))
        return fills

    def _stale_since(self, signal: Signal) -> str | None:
        """Why ``signal`` comes too late to act on, or None: its candle is ``max_candle_lag``
        candles behind the instrument's latest tick."""
        lag, latest = self.limits.max_candle_lag, self._portfolio.market.latest(signal.exchange, signal.symbol)
        if lag is None or signal.candle is None or latest is None:
            return None
        timeframe, closed = signal.candle[0], next_open_time(*signal.candle)
        stale_from = closed
        for _ in range(lag):
            stale_from = next_open_time(timeframe, stale_from)
        if latest.time < stale_from:
            return None
        return (
            f"a signal from the {timeframe} candle closed at {utc_text(closed)}; the market is at "
            f"{utc_text(latest.time)}, {lag} candle(s) on (max_candle_lag {lag})"
        )

    def _evaluate(self, signal: Signal) -> Order | Rejection | None:
        portfolio, limits = self._portfolio, self.limits
        exchange, symbol = signal.exchange, signal.symbol

        def reject(reason: RejectReason, detail: str) -> Rejection:
            return Rejection(signal, reason, detail, portfolio.strategy_position(signal.strategy, exchange, symbol))

        if self._kill_reason is not None:
            return reject(RejectReason.KILL_SWITCH, f"kill switch is on: {self._kill_reason}")
        if signal.target is not None:
            holding = portfolio.strategy_position(signal.strategy, exchange, symbol)
            key = (signal.strategy, exchange, symbol)
            if key in self._refused_exits and signal.target * holding > 0:
                self._refused_exits.discard(key)  # back to the side it holds: keep the position as is
                return None
            change = signal.target - holding
        else:
            assert signal.side is not None and signal.quantity is not None
            change = signal.side.sign * signal.quantity
        if not change:
            return None
        side = Side.BUY if change > 0 else Side.SELL
        quantity = abs(change)
        age = portfolio.market.age(exchange, symbol)
        price = portfolio.quote(exchange, symbol, side)
        if age is None or price is None:
            return reject(RejectReason.NO_MARKET_DATA, f"no price for {exchange}:{symbol} yet")
        if limits.max_tick_age is not None and age > limits.max_tick_age:
            detail = f"last tick of {symbol} is {age:.1f} s old (max_tick_age {limits.max_tick_age} s)"
            return reject(RejectReason.STALE_MARKET_DATA, detail)
        stale = self._stale_since(signal)
        if stale is not None:
            # Too late to open anything; still in time to get out: only the part of the order
            # that brings the strategy's own position towards flat is kept (a late flip closes).
            own = portfolio.strategy_position(signal.strategy, exchange, symbol)
            if own * change >= 0:
                return reject(RejectReason.STALE_SIGNAL, stale)
            change = max(change, -own) if change < 0 else min(change, -own)
            quantity = abs(change)
        held = portfolio.position(exchange, symbol).quantity
        after = held + change
        grows = not (abs(after) <= abs(held) and after * held >= 0)  # it opens or grows a position
        notional = quantity * price
        if limits.max_order_notional is not None and notional > limits.max_order_notional:
            detail = f"order notional {notional} exceeds max_order_notional {limits.max_order_notional}"
            return reject(RejectReason.MAX_ORDER_NOTIONAL, detail)
        if grows:
            exposure = abs(after) * price
            if limits.max_position_notional is not None and exposure > limits.max_position_notional:
                detail = (
                    f"{symbol} position {after} worth {exposure} exceeds "
                    f"max_position_notional {limits.max_position_notional}"
                )
                return reject(RejectReason.MAX_POSITION, detail)
            gross = portfolio.gross_exposure(excluding=(exchange, symbol)) + exposure
            if limits.max_gross_exposure is not None and gross > limits.max_gross_exposure:
                detail = f"gross exposure {gross} exceeds max_gross_exposure {limits.max_gross_exposure}"
                return reject(RejectReason.MAX_GROSS_EXPOSURE, detail)
        if limits.max_orders_per_minute is not None:
            now = anyio.current_time()
            while self._order_times and self._order_times[0] <= now - _RATE_WINDOW:
                self._order_times.popleft()
            if len(self._order_times) >= limits.max_orders_per_minute:
                detail = f"{len(self._order_times)} orders in the last minute (max {limits.max_orders_per_minute})"
                return reject(RejectReason.ORDER_RATE, detail)
        return Order(portfolio.new_order_id(), exchange, symbol, side, quantity, signal.strategy, signal.reason)


def _rejection_record(rejection: Rejection) -> RejectionRecord:
    signal = rejection.signal
    if signal.target is not None:
        asked = f"target {signal.target}"
    else:
        assert signal.side is not None
        asked = f"{signal.side.value} {signal.quantity}"
    return RejectionRecord(
        time=_now_ms(),
        strategy=signal.strategy,
        exchange=signal.exchange,
        symbol=signal.symbol,
        signal=asked,
        signal_reason=signal.reason,
        reason=rejection.reason.value,
        detail=rejection.detail,
    )


def _now_ms() -> int:
    return time.time_ns() // 1_000_000
