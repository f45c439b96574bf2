"""Paper execution and the books: cash, positions, profit and loss, equity, drawdown.

Every figure is an exact :class:`~decimal.Decimal` sum, so equity always equals
``starting cash + realised + unrealised - fees`` to the last digit and can be recomputed from the
fills and marks alone. That is why positions are kept as FIFO lots (quantity, price): closing part
of a lot realises ``quantity × (exit - entry)`` exactly, where an average-cost book would divide
and round. The average entry price is derived from the lots, for display.

A fill is applied to the books only after the journal has committed it, so a crash can lose an
order in flight but never a fill anyone saw.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field
from decimal import Decimal

import anyio

from ..errors import InvalidValueError
from ..models import Fill, Order, Position, Side, Tick
from .journal import Journal, JournalSnapshot

__all__ = ["Instrument", "MarketBook", "PortfolioManager", "PortfolioSnapshot", "fill_price", "mark_price"]

logger = logging.getLogger(__name__)

Instrument = tuple[str, str]
"""(exchange, unified symbol)."""

_ZERO = Decimal(0)


def mark_price(tick: Tick) -> Decimal | None:
    """Price a position is valued at: the last trade, else the bid/ask midpoint."""
    if tick.last is not None:
        return tick.last
    if tick.bid is not None and tick.ask is not None:
        return (tick.bid + tick.ask) / 2
    return None


def fill_price(tick: Tick, side: Side, slippage: Decimal) -> Decimal | None:
    """Paper fill price: the ask for a buy, the bid for a sell (the last price when the feed has
    no book), moved against us by the ``slippage`` fraction.
    """
    touch = tick.ask if side is Side.BUY else tick.bid
    if touch is None:
        touch = tick.last
    if touch is None:
        return None
    return touch * (1 + slippage) if side is Side.BUY else touch * (1 - slippage)


class MarketBook:
    """The latest tick of every instrument and when (``anyio.current_time()``) it arrived.

    Receipt time, not the exchange's timestamp, decides staleness: it needs no clock agreement
    with the exchange and runs on the event loop's clock, so Trio tests drive it with a MockClock.
    """

    def __init__(self) -> None:
        self._ticks: dict[Instrument, tuple[Tick, float]] = {}

    def update(self, tick: Tick) -> None:
        self._ticks[(tick.exchange, tick.symbol)] = (tick, anyio.current_time())

    def latest(self, exchange: str, symbol: str) -> Tick | None:
        entry = self._ticks.get((exchange, symbol))
        return None if entry is None else entry[0]

    def age(self, exchange: str, symbol: str) -> float | None:
        """Seconds since the latest tick of the instrument arrived, None if none has."""
        entry = self._ticks.get((exchange, symbol))
        return None if entry is None else anyio.current_time() - entry[1]

    def ticks(self) -> tuple[Tick, ...]:
        return tuple(tick for tick, _ in self._ticks.values())


@dataclass(slots=True)
class _Book:
    """Open lots of one instrument, oldest first, and what closing lots has realised."""

    lots: deque[tuple[Decimal, Decimal]] = field(default_factory=deque)
    realised: Decimal = _ZERO

    @property
    def quantity(self) -> Decimal:
        return sum((quantity for quantity, _ in self.lots), _ZERO)

    @property
    def cost(self) -> Decimal:
        return sum((quantity * price for quantity, price in self.lots), _ZERO)

    def apply(self, change: Decimal, price: Decimal) -> Decimal:
        """Trade ``change`` (signed) at ``price``; return the PnL it realised."""
        realised = _ZERO
        while change and self.lots and (self.lots[0][0] > 0) != (change > 0):
            quantity, entry = self.lots[0]
            closed = quantity if abs(quantity) <= abs(change) else -change
            realised += closed * (price - entry)
            change += closed
            if closed == quantity:
                self.lots.popleft()
            else:
                self.lots[0] = (quantity - closed, entry)
        if change:
            self.lots.append((change, price))
        self.realised += realised
        return realised


@dataclass(frozen=True, slots=True)
class PortfolioSnapshot:
    """Everything the books hold, as values: two equal snapshots are the same portfolio."""

    starting_cash: Decimal
    cash: Decimal
    fees: Decimal
    realised_pnl: Decimal
    unrealised_pnl: Decimal
    equity: Decimal
    peak_equity: Decimal
    max_drawdown: Decimal
    positions: tuple[Position, ...]
    strategy_positions: tuple[tuple[str, str, str, Decimal], ...]
    """(strategy, exchange, symbol, signed quantity) for every non-zero strategy holding."""
    fills: int
    next_order_id: int

    @property
    def max_drawdown_fraction(self) -> Decimal:
        return self.max_drawdown / self.peak_equity if self.peak_equity > 0 else _ZERO


class PortfolioManager:
    """Paper execution against the :class:`MarketBook`, with the books marked on every tick.

    With a ``journal``, every fill is committed before it changes the books, and
    :meth:`restore` rebuilds the books from the journal exactly.
    """

    def __init__(
        self,
        starting_cash: Decimal,
        *,
        fee_rate: Decimal = _ZERO,
        slippage: Decimal = _ZERO,
        journal: Journal | None = None,
    ) -> None:
        for name, value in (("starting_cash", starting_cash), ("fee_rate", fee_rate), ("slippage", slippage)):
            if not isinstance(value, Decimal) or not value.is_finite() or value < 0:
                raise InvalidValueError(f"{name} must be a finite Decimal >= 0, got {value!r}")
        self.starting_cash = starting_cash
        self.fee_rate = fee_rate
        self.slippage = slippage
        self.market = MarketBook()
        self.fills: list[Fill] = []
        """Every fill of the journal's life, oldest first (equal to the journal's own list)."""
        self._journal = journal
        self._cash = starting_cash
        self._fees = _ZERO
        self._books: dict[Instrument, _Book] = {}
        self._marks: dict[Instrument, Decimal] = {}
        self._strategy_positions: dict[tuple[str, str, str], Decimal] = {}
        self._peak = starting_cash
        self._max_drawdown = _ZERO
        self._next_order_id = 1

    @classmethod
    async def restore(
        cls, journal: Journal, *, fee_rate: Decimal = _ZERO, slippage: Decimal = _ZERO
    ) -> PortfolioManager:
        """The portfolio a journal describes: its fills replayed, its last marks and peak restored."""
        portfolio = cls(journal.starting_cash, fee_rate=fee_rate, slippage=slippage, journal=journal)
        fills = await journal.load_fills()
        snapshot = await journal.last_snapshot()
        # Replaying fills without the marks they were made at says nothing about drawdown: the
        # peak and the drawdown come from the snapshot, then from the restored marks.
        for fill in fills:
            portfolio._apply(fill)
        portfolio._next_order_id = max(await journal.last_order_id(), 0) + 1
        if snapshot is not None:
            portfolio._marks.update(snapshot.marks)
            portfolio._peak = max(portfolio._peak, snapshot.peak_equity)
            portfolio._max_drawdown = max(portfolio._max_drawdown, snapshot.max_drawdown)
        portfolio._track_drawdown()
        if fills:
            logger.info("restored %d fills from %s", len(fills), journal.path)
        return portfolio

    # --- reading the books ---------------------------------------------------------------------

    @property
    def cash(self) -> Decimal:
        return self._cash

    @property
    def fees(self) -> Decimal:
        return self._fees

    @property
    def realised_pnl(self) -> Decimal:
        return sum((book.realised for book in self._books.values()), _ZERO)

    @property
    def unrealised_pnl(self) -> Decimal:
        return sum((self._unrealised(key, book) for key, book in self._books.items()), _ZERO)

    @property
    def equity(self) -> Decimal:
        """Cash plus the marked value of every position (a position never marked counts at cost)."""
        return self._cash + sum(
            (book.cost + self._unrealised(key, book) for key, book in self._books.items()), _ZERO
        )

    @property
    def peak_equity(self) -> Decimal:
        return self._peak

    @property
    def max_drawdown(self) -> Decimal:
        """Largest fall of equity from a previous peak, in quote currency."""
        return self._max_drawdown

    def position(self, exchange: str, symbol: str) -> Position:
        key = (exchange, symbol)
        return self._position(key, self._books.get(key, _Book()))

    def positions(self) -> tuple[Position, ...]:
        """Every instrument ever traded (flat ones too: they carry realised PnL)."""
        return tuple(self._position(key, book) for key, book in sorted(self._books.items(), key=lambda item: item[0]))

    def gross_exposure(self, *, excluding: Instrument | None = None) -> Decimal:
        """Sum of |quantity × mark| over open positions, leaving out the ``excluding`` instrument."""
        return sum(
            (abs(book.quantity * self.mark(*key)) for key, book in self._books.items() if key != excluding),
            _ZERO,
        )

    def mark(self, exchange: str, symbol: str) -> Decimal:
        """The instrument's mark, else the entry price of its open quantity, else 0."""
        key = (exchange, symbol)
        mark = self._marks.get(key)
        if mark is not None:
            return mark
        book = self._books.get(key)
        return book.cost / book.quantity if book is not None and book.quantity else _ZERO

    def strategy_position(self, strategy: str, exchange: str, symbol: str) -> Decimal:
        """What ``strategy``'s own fills add up to in the instrument (the account may hold more)."""
        return self._strategy_positions.get((strategy, exchange, symbol), _ZERO)

    def strategy_positions(self) -> dict[tuple[str, str, str], Decimal]:
        return {key: quantity for key, quantity in self._strategy_positions.items() if quantity}

    def snapshot(self) -> PortfolioSnapshot:
        return PortfolioSnapshot(
            starting_cash=self.starting_cash,
            cash=self._cash,
            fees=self._fees,
            realised_pnl=self.realised_pnl,
            unrealised_pnl=self.unrealised_pnl,
            equity=self.equity,
            peak_equity=self._peak,
            max_drawdown=self._max_drawdown,
            positions=self.positions(),
            strategy_positions=tuple(
                (*key, quantity) for key, quantity in sorted(self.strategy_positions().items())
            ),
            fills=len(self.fills),
            next_order_id=self._next_order_id,
        )

    def journal_snapshot(self, time_ms: int) -> JournalSnapshot:
        """What the journal keeps of the books besides the fills: the figures, the marks, the peak."""
        return JournalSnapshot(
            time=time_ms,
            cash=self._cash,
            equity=self.equity,
            realised_pnl=self.realised_pnl,
            unrealised_pnl=self.unrealised_pnl,
            fees=self._fees,
            peak_equity=self._peak,
            max_drawdown=self._max_drawdown,
            marks=dict(self._marks),
        )

    # --- changing the books --------------------------------------------------------------------

    def on_tick(self, tick: Tick) -> None:
        """Record the tick for execution and mark the instrument's position to it."""
        self.market.update(tick)
        price = mark_price(tick)
        if price is not None:
            self._marks[(tick.exchange, tick.symbol)] = price
            self._track_drawdown()

    def new_order_id(self) -> int:
        order_id = self._next_order_id
        self._next_order_id += 1
        return order_id

    def quote(self, exchange: str, symbol: str, side: Side) -> Decimal | None:
        """The price an order would fill at now, None without market data."""
        tick = self.market.latest(exchange, symbol)
        return None if tick is None else fill_price(tick, side, self.slippage)

    async def execute(self, order: Order) -> Fill:
        """Fill ``order`` at the current quote; journal it; only then apply it to the books.

        The caller (the risk manager) serialises calls and has checked that a quote exists.
        """
        tick = self.market.latest(order.exchange, order.symbol)
        price = None if tick is None else fill_price(tick, order.side, self.slippage)
        if tick is None or price is None:
            raise RuntimeError(f"no price to fill order {order.id} on {order.exchange}:{order.symbol}")
        fill = Fill(
            order_id=order.id,
            exchange=order.exchange,
            symbol=order.symbol,
            side=order.side,
            quantity=order.quantity,
            price=price,
            fee=order.quantity * price * self.fee_rate,
            time=tick.time,
            strategy=order.strategy,
            reason=order.reason,
        )
        if self._journal is not None:
            await self._journal.record_fill(order, fill)
        self._apply(fill)
        self._track_drawdown()
        logger.info("filled %s: %s (%s)", order, fill.price, fill.reason)
        return fill

    def _apply(self, fill: Fill) -> None:
        key = (fill.exchange, fill.symbol)
        change = fill.signed_quantity
        self._books.setdefault(key, _Book()).apply(change, fill.price)
        self._cash -= change * fill.price + fill.fee
        self._fees += fill.fee
        strategy_key = (fill.strategy, fill.exchange, fill.symbol)
        self._strategy_positions[strategy_key] = self.strategy_position(*strategy_key) + change
        self._next_order_id = max(self._next_order_id, fill.order_id + 1)
        self.fills.append(fill)

    def _track_drawdown(self) -> None:
        equity = self.equity
        if equity > self._peak:
            self._peak = equity
        self._max_drawdown = max(self._max_drawdown, self._peak - equity)

    def _unrealised(self, key: Instrument, book: _Book) -> Decimal:
        mark = self._marks.get(key)
        return _ZERO if mark is None or not book.lots else book.quantity * mark - book.cost

    def _position(self, key: Instrument, book: _Book) -> Position:
        return Position(
            exchange=key[0],
            symbol=key[1],
            quantity=book.quantity,
            cost=book.cost,
            realised_pnl=book.realised,
            mark=self._marks.get(key),
            unrealised_pnl=self._unrealised(key, book),
        )
