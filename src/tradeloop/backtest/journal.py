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
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import TypeVar, TypeVarTuple

import trio

from ..trading.journal import Journal, JournalError

__all__ = ["BacktestJournal", "EquityPoint", "read_equity"]

T = TypeVar("T")
Ts = TypeVarTuple("Ts")


class BacktestJournal(Journal):
    """A :class:`Journal` whose calls run in the Trio thread, without ``fsync``."""

    @classmethod
    @asynccontextmanager
    async def open(cls, path: str | Path, *, starting_cash: Decimal) -> AsyncIterator[Journal]:
        async with super().open(path, starting_cash=starting_cash) as journal:
            await journal._run(_no_sync)
            yield journal

    async def _run(self, function: Callable[[sqlite3.Connection, *Ts], T], *args: *Ts) -> T:
        connection = self._connection
        if connection is None:
            raise JournalError(f"journal {self.path} is closed")
        await trio.lowlevel.checkpoint()
        return function(connection, *args)

    async def _close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            try:
                connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            finally:
                connection.close()


def _no_sync(connection: sqlite3.Connection) -> None:
    connection.execute("PRAGMA synchronous=OFF")


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
