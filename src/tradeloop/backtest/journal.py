"""The backtest's journal: the live journal's file, written in the Trio thread, and read back.

The live :class:`~tradeloop.trading.journal.Journal` runs every SQLite call in a worker thread so
that a slow disk never stalls the event loop. In a backtest that is exactly wrong: under a
``MockClock`` with ``autojump_threshold=0`` a task waiting for a thread counts as blocked, so
virtual time would jump to the next candle while a fill is being written, and the books would be
marked by a price from after the fill. Writing in the Trio thread keeps every step of the engine
at its virtual instant. A backtest journal can always be made again from its inputs, so it also
skips ``fsync`` (``synchronous=OFF``): a year of trades is written in a second, not minutes.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import TypeVar, TypeVarTuple

import trio

from ..trading.journal import Journal, JournalError, checkpoint, close_connection, open_connection

__all__ = ["BacktestJournal", "EquityPoint", "read_equity"]

T = TypeVar("T")
Ts = TypeVarTuple("Ts")


class BacktestJournal(Journal):
    """A :class:`Journal` whose calls run in the Trio thread, without ``fsync``."""

    # Ctrl-C. The SQLite calls run in the Trio thread here, where Python's signal handler could
    # raise KeyboardInterrupt between any two statements of a transaction; under Trio's KI
    # protection it arrives at the next checkpoint instead, with every transaction whole.

    @classmethod
    @trio.lowlevel.enable_ki_protection
    async def _connect(cls, path: Path, starting_cash: Decimal) -> sqlite3.Connection:
        # Opened in the Trio thread too: virtual time jumping while the journal opens would start
        # the run later than asked (under a MockClock with an autojump threshold, a thread is idle).
        await trio.lowlevel.checkpoint()
        connection = open_connection(path, starting_cash)
        try:
            connection.execute("PRAGMA synchronous=OFF")
        except BaseException:
            close_connection(connection)
            raise
        return connection

    @trio.lowlevel.enable_ki_protection
    async def _run(self, function: Callable[[sqlite3.Connection, *Ts], T], *args: *Ts) -> T:
        connection = self._connection
        if connection is None:
            raise JournalError(f"journal {self.path} is closed")
        await trio.lowlevel.checkpoint()
        return function(connection, *args)

    @trio.lowlevel.enable_ki_protection
    async def _close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            try:
                checkpoint(connection)
            finally:
                close_connection(connection)


@dataclass(frozen=True, slots=True)
class EquityPoint:
    """The books' equity at a moment and the marks it was valued at."""

    time: int
    equity: Decimal
    marks: dict[tuple[str, str], Decimal]


def read_equity(path: Path) -> list[EquityPoint]:
    """Every equity snapshot of a closed journal, oldest first."""
    # immutable: the engine has closed the journal and checkpointed its WAL into the file.
    connection = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True)
    try:
        rows = connection.execute("SELECT time, equity, marks FROM snapshots ORDER BY seq").fetchall()
    finally:
        connection.close()
    return [
        EquityPoint(time, Decimal(equity), {(e, symbol): Decimal(price) for e, symbol, price in json.loads(marks)})
        for time, equity, marks in rows
    ]
