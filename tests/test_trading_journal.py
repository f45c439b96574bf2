"""The journal: restart restores the books exactly; a file that is not our journal is refused, untouched."""

from __future__ import annotations

import sqlite3
import sys
import tempfile
from decimal import Decimal
from itertools import count
from pathlib import Path
from types import FrameType
from typing import Any

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

import tradeloop.trading.journal
from tradeloop.backtest.journal import BacktestJournal
from tradeloop.models import Fill, Order, Side, Tick
from tradeloop.trading.journal import SCHEMA_VERSION, Journal, JournalError
from tradeloop.trading.portfolio import PortfolioManager

D = Decimal
BTC = "BTC/USDT:USDT"
CASH = D("10000")


async def trade(portfolio: PortfolioManager, side: Side, quantity: str, price: str) -> None:
    portfolio.on_tick(Tick("bingx", BTC, 1_700_000_000_000, D(price), D(price), D(price)))
    order = Order(portfolio.new_order_id(), "bingx", BTC, side, D(quantity), "s", "r")
    await portfolio.execute(order)


async def test_restart_restores_the_portfolio_exactly(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    async with Journal.open(path, starting_cash=CASH) as journal:
        portfolio = PortfolioManager(CASH, fee_rate=D("0.0005"), journal=journal)
        await trade(portfolio, Side.BUY, "0.5", "30000.5")
        await trade(portfolio, Side.SELL, "0.2", "31000.25")
        await trade(portfolio, Side.BUY, "0.1", "29000")
        portfolio.on_tick(Tick("bingx", BTC, 1_700_000_000_001, D("28000.75")))
        await journal.record_snapshot(portfolio.journal_snapshot(1_700_000_000_001))
        before = portfolio.snapshot()
        assert await journal.load_fills() == portfolio.fills
    async with Journal.open(path, starting_cash=CASH) as journal:
        restored = await PortfolioManager.restore(journal, fee_rate=D("0.0005"))
        assert restored.snapshot() == before
        assert restored.fills == await journal.load_fills()
        assert restored.new_order_id() == 4
        assert restored.market.latest("bingx", BTC) is None  # restored marks are no fresh market data


async def test_new_journal_uses_wal_and_records_the_schema(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    async with Journal.open(path, starting_cash=CASH):
        pass
    connection = sqlite3.connect(path)
    try:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert connection.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
    finally:
        connection.close()


async def refused(path: Path, match: str, cash: Decimal = CASH) -> None:
    before = await trio.Path(path).read_bytes()
    with pytest.raises(JournalError, match=match):
        async with Journal.open(path, starting_cash=cash):
            pytest.fail("opened")
    assert await trio.Path(path).read_bytes() == before


async def test_a_file_that_is_not_sqlite_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("my trading notes\n" * 100)
    await refused(path, "not an SQLite database")


async def test_another_applications_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    connection = sqlite3.connect(path)
    connection.execute("CREATE TABLE fills (x)")
    connection.commit()
    connection.close()
    await refused(path, "another application")


async def test_a_corrupt_journal_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    async with Journal.open(path, starting_cash=CASH) as journal:
        portfolio = PortfolioManager(CASH, journal=journal)
        for _ in range(50):
            await trade(portfolio, Side.BUY, "1", "100")
    data = bytearray(path.read_bytes())
    page = 4096
    assert len(data) > 2 * page
    data[page + 8 : 2 * page] = b"\xa5" * (page - 8)  # scribble over the second page
    path.write_bytes(bytes(data))
    await refused(path, "corrupt")


async def test_a_truncated_header_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    path.write_bytes(b"SQLite")
    await refused(path, "not an SQLite database")


async def test_starting_cash_must_match(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    async with Journal.open(path, starting_cash=CASH):
        pass
    await refused(path, "starting_cash 5000 differs", cash=D("5000"))


_OPEN_ELSEWHERE = """
import sys, trio
from decimal import Decimal
from tradeloop.trading.journal import Journal, JournalError
async def main():
    try:
        async with Journal.open(sys.argv[1], starting_cash=Decimal(10000)):
            print("opened")
    except JournalError as exc:
        print(exc)
trio.run(main)
"""


async def opened_by_another_process(path: Path) -> str:
    result = await trio.run_process([sys.executable, "-c", _OPEN_ELSEWHERE, str(path)], capture_stdout=True)
    return result.stdout.decode().strip()


async def test_a_journal_in_use_is_refused_to_another_process_and_in_this_one(tmp_path: Path) -> None:
    # Found by an outside look: the journal's lock went with a descriptor we closed after SQLite
    # took it, so a second engine process ran on the same journal (and a run left it unreadable).
    path = tmp_path / "journal.sqlite"
    async with Journal.open(path, starting_cash=CASH):
        assert await opened_by_another_process(path) == f"journal {path} is in use by another engine"
        with pytest.raises(JournalError, match="in use by another engine in this process"):
            async with Journal.open(path, starting_cash=CASH):
                pytest.fail("opened twice")
        # The refused attempt did not release the lock either.
        assert await opened_by_another_process(path) == f"journal {path} is in use by another engine"
    assert await opened_by_another_process(path) == "opened"  # released on close
    async with Journal.open(path, starting_cash=CASH):
        pass


async def test_an_empty_file_becomes_a_journal(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    path.touch()
    async with Journal.open(path, starting_cash=CASH) as journal:
        assert await journal.load_fills() == []


async def test_a_cancelled_write_is_all_or_nothing(tmp_path: Path) -> None:
    """Cancel fills at many points: the journal and the books agree every time."""
    path = tmp_path / "journal.sqlite"
    async with Journal.open(path, starting_cash=CASH) as journal:
        portfolio = PortfolioManager(CASH, journal=journal)
        for attempt in range(30):
            with trio.move_on_after(attempt * 0.0002):
                await trade(portfolio, Side.BUY, "1", "100")
            assert await journal.load_fills() == portfolio.fills
        assert 0 < len(portfolio.fills) <= 30
    with pytest.raises(JournalError, match="closed"):
        await journal.load_fills()


class _InterruptAtLine:
    """A tracer that raises KeyboardInterrupt at the ``line``-th line the journal module runs: a
    Ctrl-C that Python's signal handler raises there (outside Trio's KI protection)."""

    def __init__(self, line: int) -> None:
        self.remaining = line
        self.fired = False

    def __call__(self, frame: FrameType, event: str, arg: Any) -> Any:
        return self._line if frame.f_code.co_filename == tradeloop.trading.journal.__file__ else None

    def _line(self, frame: FrameType, event: str, arg: Any) -> Any:
        if event == "line" and not self.fired:
            self.remaining -= 1
            if self.remaining == 0:
                self.fired = True
                raise KeyboardInterrupt
        return self._line


def _order_and_fill(order_id: int) -> tuple[Order, Fill]:
    order = Order(order_id, "bingx", BTC, Side.BUY, D("1"), "s", "r")
    return order, Fill(order_id, "bingx", BTC, Side.BUY, D("1"), D("100"), D("0.05"), 1_700_000_000_000, "s", "r")


async def test_an_interrupt_at_any_line_of_a_write_leaves_the_journal_usable(tmp_path: Path) -> None:
    """Ctrl-C at each line of a fill's transaction in turn: the fill is whole or absent, the next
    write succeeds and the journal closes (the Trio-thread journal of backtests, where it can land)."""
    for line in count(1):
        path = tmp_path / f"journal-{line}.sqlite"
        interrupt = _InterruptAtLine(line)
        async with BacktestJournal.open(path, starting_cash=CASH) as journal:
            sys.settrace(interrupt)
            try:
                await journal.record_fill(*_order_and_fill(1))
            except KeyboardInterrupt:
                pass
            finally:
                sys.settrace(None)
            await journal.record_fill(*_order_and_fill(2))
        async with Journal.open(path, starting_cash=CASH) as journal:
            assert [fill.order_id for fill in await journal.load_fills()] in ([2], [1, 2])
            assert await journal.last_order_id() == 2
        if not interrupt.fired:  # the write ran to its end: every line was tried
            assert line > 5
            break


_steps = st.lists(
    st.tuples(
        st.sampled_from(["BTC/USDT:USDT", "ETH/USDT:USDT"]),
        st.decimals(min_value=D("1"), max_value=D("1000"), places=1),
        st.one_of(st.none(), st.sampled_from(list(Side))),
        st.decimals(min_value=D("0.1"), max_value=D("5"), places=1),
    ),
    min_size=1,
    max_size=25,
)


@settings(max_examples=40, deadline=None)
@given(steps=_steps)
async def test_any_history_restores_exactly(steps: list[tuple[str, Decimal, Side | None, Decimal]]) -> None:
    """Random marks and fills, a final snapshot, a restart: the same books, drawdown included."""
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "journal.sqlite"
        async with Journal.open(path, starting_cash=CASH) as journal:
            portfolio = PortfolioManager(CASH, fee_rate=D("0.001"), journal=journal)
            for symbol, price, side, quantity in steps:
                portfolio.on_tick(Tick("bingx", symbol, 1_700_000_000_000, price, price, price))
                if side is not None:
                    await portfolio.execute(Order(portfolio.new_order_id(), "bingx", symbol, side, quantity, "s", "r"))
            await journal.record_snapshot(portfolio.journal_snapshot(0))
        async with Journal.open(path, starting_cash=CASH) as journal:
            restored = await PortfolioManager.restore(journal, fee_rate=D("0.001"))
    assert restored.snapshot() == portfolio.snapshot()
