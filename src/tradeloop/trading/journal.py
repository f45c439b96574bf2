"""The trading journal: orders, fills and equity snapshots in one SQLite file.

Threads. SQLite blocks, so every call runs in a worker thread (``trio.to_thread.run_sync``) on one
long-lived connection, behind a ``CapacityLimiter(1)`` so exactly one thread uses it at a time.
One connection rather than one per call because it *holds the file*: the connection runs in
``locking_mode=EXCLUSIVE``, so a second engine pointed at the same journal gets a clear error
instead of interleaving its fills into ours; and it pays the open-time checks once, not per fill.
Calls are never abandoned on cancellation: a write in flight finishes (commit or rollback) before
the cancelled task moves on, so the caller knows exactly what is on disk.

Durability. WAL mode with ``synchronous=FULL``: a committed transaction survives a crash or power
loss. An order and its fill are written in one transaction, and the portfolio applies a fill
only after that commit returns: a fill anyone saw is a fill on disk.

Identity. The file carries an ``application_id`` and a ``schema_version`` table. A file that is
not SQLite, belongs to another application, has another schema version or fails SQLite's
``quick_check`` is refused with :class:`JournalError`; it is never modified. Missing or empty
files become new journals.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import TypeVar, TypeVarTuple

import trio

from ..errors import TradeloopError
from ..models import Fill, Order, Side

__all__ = ["SCHEMA_VERSION", "Journal", "JournalError", "JournalSnapshot"]

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1
APPLICATION_ID = 0x544C4A4E  # "TLJN"
_SQLITE_HEADER = b"SQLite format 3\x00"
_LOCK_TIMEOUT = 1.0
"""Seconds SQLite waits for another process's lock before we report the journal as in use."""
_CLOSE_TIMEOUT = 5.0

_SCHEMA = (
    "CREATE TABLE schema_version (version INTEGER NOT NULL)",
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE orders (
        id INTEGER PRIMARY KEY, exchange TEXT NOT NULL, symbol TEXT NOT NULL, side TEXT NOT NULL,
        quantity TEXT NOT NULL, strategy TEXT NOT NULL, reason TEXT NOT NULL)""",
    """CREATE TABLE fills (
        seq INTEGER PRIMARY KEY AUTOINCREMENT, order_id INTEGER NOT NULL UNIQUE REFERENCES orders(id),
        exchange TEXT NOT NULL, symbol TEXT NOT NULL, side TEXT NOT NULL, quantity TEXT NOT NULL,
        price TEXT NOT NULL, fee TEXT NOT NULL, time INTEGER NOT NULL, strategy TEXT NOT NULL,
        reason TEXT NOT NULL)""",
    """CREATE TABLE snapshots (
        seq INTEGER PRIMARY KEY AUTOINCREMENT, time INTEGER NOT NULL, cash TEXT NOT NULL, equity TEXT NOT NULL,
        realised_pnl TEXT NOT NULL, unrealised_pnl TEXT NOT NULL, fees TEXT NOT NULL,
        peak_equity TEXT NOT NULL, max_drawdown TEXT NOT NULL, marks TEXT NOT NULL)""",
)

T = TypeVar("T")
Ts = TypeVarTuple("Ts")


class JournalError(TradeloopError):
    """The journal file cannot be used: not a journal, corrupt, in use, or for another account."""


@dataclass(frozen=True, slots=True)
class JournalSnapshot:
    """The books' figures at a moment; ``marks`` restore the valuation on restart."""

    time: int
    cash: Decimal
    equity: Decimal
    realised_pnl: Decimal
    unrealised_pnl: Decimal
    fees: Decimal
    peak_equity: Decimal
    max_drawdown: Decimal
    marks: Mapping[tuple[str, str], Decimal]


class Journal:
    """An open journal. Use :meth:`open`; every method is safe to cancel (see the module docs)."""

    def __init__(self, path: Path, connection: sqlite3.Connection, starting_cash: Decimal) -> None:
        self.path = path
        self.starting_cash = starting_cash
        """Fixed when the journal was created: the account's cash before its first fill."""
        self._connection: sqlite3.Connection | None = connection
        self._limiter = trio.CapacityLimiter(1)

    @classmethod
    @asynccontextmanager
    async def open(cls, path: str | Path, *, starting_cash: Decimal) -> AsyncIterator[Journal]:
        """Open (or create) the journal at ``path`` for an account starting with ``starting_cash``.

        Raises JournalError if the file is not a usable journal of that account.
        """
        path = Path(path)
        connection = await trio.to_thread.run_sync(_open, path, starting_cash)
        journal = cls(path, connection, starting_cash)
        try:
            yield journal
        finally:
            await journal._close()

    async def record_fill(self, order: Order, fill: Fill) -> None:
        """Commit ``order`` and its ``fill`` in one transaction; returns once they are durable."""
        await self._run(_insert_fill, order, fill)

    async def record_snapshot(self, snapshot: JournalSnapshot) -> None:
        await self._run(_insert_snapshot, snapshot)

    async def load_fills(self) -> list[Fill]:
        """Every fill, in the order it was committed."""
        return await self._run(_select_fills)

    async def last_snapshot(self) -> JournalSnapshot | None:
        return await self._run(_select_last_snapshot)

    async def last_order_id(self) -> int:
        """Highest order id journaled, 0 if none."""
        return await self._run(_select_last_order_id)

    async def _run(self, function: Callable[[sqlite3.Connection, *Ts], T], *args: *Ts) -> T:
        connection = self._connection
        if connection is None:
            raise JournalError(f"journal {self.path} is closed")
        return await trio.to_thread.run_sync(function, connection, *args, limiter=self._limiter)

    async def _close(self) -> None:
        """Checkpoint and close; shielded, and bounded even if the disk hangs."""
        connection, self._connection = self._connection, None
        if connection is None:
            return
        with trio.move_on_after(_CLOSE_TIMEOUT, shield=True) as scope:
            await trio.to_thread.run_sync(_close, connection, limiter=self._limiter, abandon_on_cancel=True)
        if scope.cancelled_caught:
            logger.warning("closing journal %s took over %.0f s; it ends in the background", self.path, _CLOSE_TIMEOUT)


# --- blocking helpers, run in a worker thread ---------------------------------------------------


def _open(path: Path, starting_cash: Decimal) -> sqlite3.Connection:
    _check_header(path)
    try:
        connection = sqlite3.connect(path, timeout=_LOCK_TIMEOUT, isolation_level=None, check_same_thread=False)
    except sqlite3.Error as exc:
        raise JournalError(f"cannot open journal {path}: {exc}") from exc
    try:
        _prepare(connection, path, starting_cash)
    except BaseException:
        connection.close()
        raise
    return connection


def _check_header(path: Path) -> None:
    """Refuse a non-empty file that is not SQLite before SQLite gets a chance to touch it."""
    try:
        with path.open("rb") as file:
            header = file.read(len(_SQLITE_HEADER))
    except FileNotFoundError:
        return
    except OSError as exc:
        raise JournalError(f"cannot read journal {path}: {exc}") from exc
    if header and header != _SQLITE_HEADER:
        raise JournalError(f"{path} is not a tradeloop journal (not an SQLite database); refusing to use it")


def _prepare(connection: sqlite3.Connection, path: Path, starting_cash: Decimal) -> None:
    try:
        connection.execute("PRAGMA locking_mode=EXCLUSIVE")
        connection.execute("BEGIN IMMEDIATE")  # takes the lock, which exclusive mode then keeps
        application_id = connection.execute("PRAGMA application_id").fetchone()[0]
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if application_id == 0 and not tables:
            connection.execute(f"PRAGMA application_id={APPLICATION_ID}")
            for statement in _SCHEMA:
                connection.execute(statement)
            connection.execute("INSERT INTO schema_version VALUES (?)", (SCHEMA_VERSION,))
            connection.execute("INSERT INTO meta VALUES ('starting_cash', ?)", (str(starting_cash),))
            connection.execute("COMMIT")
            logger.info("created journal %s", path)
        else:
            _check_existing(connection, path, application_id, starting_cash)
            connection.execute("COMMIT")
        # WAL after the first transaction: switching an empty file's mode is what creates it.
        mode = connection.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode != "wal":
            raise JournalError(f"journal {path}: SQLite refused WAL mode (got {mode!r})")
        connection.execute("PRAGMA synchronous=FULL")
    except sqlite3.OperationalError as exc:
        if "locked" in str(exc) or "busy" in str(exc):
            raise JournalError(f"journal {path} is in use by another engine") from exc
        raise JournalError(f"journal {path} is unreadable or corrupt: {exc}") from exc
    except sqlite3.DatabaseError as exc:
        raise JournalError(f"journal {path} is unreadable or corrupt: {exc}") from exc


def _check_existing(connection: sqlite3.Connection, path: Path, application_id: int, starting_cash: Decimal) -> None:
    if application_id != APPLICATION_ID:
        raise JournalError(f"{path} is an SQLite database of another application, not a tradeloop journal")
    row = connection.execute("SELECT version FROM schema_version").fetchone()
    version = None if row is None else row[0]
    if version != SCHEMA_VERSION:
        raise JournalError(f"journal {path} has schema version {version}; this tradeloop reads {SCHEMA_VERSION}")
    problems = [row[0] for row in connection.execute("PRAGMA quick_check")]
    if problems != ["ok"]:
        raise JournalError(f"journal {path} is corrupt: {'; '.join(problems[:3])}")
    recorded = Decimal(connection.execute("SELECT value FROM meta WHERE key='starting_cash'").fetchone()[0])
    if recorded != starting_cash:
        raise JournalError(
            f"starting_cash {starting_cash} differs from the {recorded} journal {path} was created with; "
            "use the journal's starting cash or a new journal path"
        )


def _close(connection: sqlite3.Connection) -> None:
    try:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        connection.close()


def _insert_fill(connection: sqlite3.Connection, order: Order, fill: Fill) -> None:
    with _transaction(connection):
        order_row = (order.id, order.exchange, order.symbol, order.side.value, str(order.quantity), order.strategy)
        connection.execute("INSERT INTO orders VALUES (?, ?, ?, ?, ?, ?, ?)", (*order_row, order.reason))
        fill_row = (fill.order_id, fill.exchange, fill.symbol, fill.side.value, str(fill.quantity), str(fill.price))
        connection.execute(
            "INSERT INTO fills (order_id, exchange, symbol, side, quantity, price, fee, time, strategy, reason) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (*fill_row, str(fill.fee), fill.time, fill.strategy, fill.reason),
        )


def _insert_snapshot(connection: sqlite3.Connection, snapshot: JournalSnapshot) -> None:
    marks = json.dumps([[exchange, symbol, str(price)] for (exchange, symbol), price in snapshot.marks.items()])
    figures = (snapshot.cash, snapshot.equity, snapshot.realised_pnl, snapshot.unrealised_pnl, snapshot.fees)
    with _transaction(connection):
        connection.execute(
            "INSERT INTO snapshots (time, cash, equity, realised_pnl, unrealised_pnl, fees, peak_equity, "
            "max_drawdown, marks) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (snapshot.time, *map(str, figures), str(snapshot.peak_equity), str(snapshot.max_drawdown), marks),
        )


def _select_fills(connection: sqlite3.Connection) -> list[Fill]:
    rows = connection.execute(
        "SELECT order_id, exchange, symbol, side, quantity, price, fee, time, strategy, reason "
        "FROM fills ORDER BY seq"
    )
    return [
        Fill(order_id, exchange, symbol, Side(side), Decimal(quantity), Decimal(price), Decimal(fee), *rest)
        for order_id, exchange, symbol, side, quantity, price, fee, *rest in rows
    ]


def _select_last_snapshot(connection: sqlite3.Connection) -> JournalSnapshot | None:
    row = connection.execute(
        "SELECT time, cash, equity, realised_pnl, unrealised_pnl, fees, peak_equity, max_drawdown, marks "
        "FROM snapshots ORDER BY seq DESC LIMIT 1"
    ).fetchone()
    if row is None:
        return None
    time, cash, equity, realised, unrealised, fees, peak, drawdown, marks = row
    return JournalSnapshot(
        time=time,
        cash=Decimal(cash),
        equity=Decimal(equity),
        realised_pnl=Decimal(realised),
        unrealised_pnl=Decimal(unrealised),
        fees=Decimal(fees),
        peak_equity=Decimal(peak),
        max_drawdown=Decimal(drawdown),
        marks={(exchange, symbol): Decimal(price) for exchange, symbol, price in json.loads(marks)},
    )


def _select_last_order_id(connection: sqlite3.Connection) -> int:
    return int(connection.execute("SELECT coalesce(max(id), 0) FROM orders").fetchone()[0])


@contextmanager
def _transaction(connection: sqlite3.Connection) -> Iterator[None]:
    """``BEGIN IMMEDIATE`` … ``COMMIT``, rolled back if the body raises."""
    connection.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    connection.execute("COMMIT")
