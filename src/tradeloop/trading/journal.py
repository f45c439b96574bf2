"""The trading journal: orders, fills, equity snapshots, risk state and rejections in one SQLite file.

Threads. SQLite blocks, so every call runs in a worker thread (``anyio.to_thread.run_sync``) on one
long-lived connection, behind a ``CapacityLimiter(1)`` so exactly one thread uses it at a time.
One connection rather than one per call because it *holds the file*: the connection runs in
``locking_mode=EXCLUSIVE``, so a second engine pointed at the same journal gets a clear error
instead of interleaving its fills into ours; and it pays the open-time checks once, not per fill.
Calls are never abandoned on cancellation: a write in flight finishes (commit or rollback) before
the cancelled task moves on, so the caller knows exactly what is on disk.

Durability. WAL mode with ``synchronous=FULL``: a committed transaction survives a crash or power
loss. An order and its fill are written in one transaction, and the portfolio applies a fill
only after that commit returns: a fill anyone saw is a fill on disk.

Safety state. The risk manager's kill switch (tripped, why, when), its equity peak and the
equity at the start of the UTC day go to one ``risk_state`` row, written with each snapshot and
at once when the switch trips or is reset; ``risk_events`` keeps every trip and reset, and
``rejections`` every order the risk manager refused, with its reason. A restart restores them,
so a tripped switch stays tripped until someone resets it.

Identity. The file carries an ``application_id`` and a ``schema_version`` table. A file that is
not SQLite, belongs to another application, has a *newer* schema version or fails SQLite's
``quick_check`` is refused with :class:`JournalError`; it is never modified. A journal of an older
schema is migrated forward in one transaction (version 1 lacked the risk tables). Missing or
empty files become new journals, created 0600 (readable by their owner only).

Files. A journal is never opened through a symbolic link: a link planted where a journal is
expected would make us write through it. "Cannot be written" (read-only file or directory,
permissions) and "corrupt" are distinct errors, because their remedies differ.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import sqlite3
import stat
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import TypeVar, TypeVarTuple

import anyio
import anyio.to_thread

from ..errors import TradeloopError
from ..models import Fill, Order, Side

__all__ = ["SCHEMA_VERSION", "Journal", "JournalError", "JournalSnapshot", "RejectionRecord", "RiskRecord"]

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 2
APPLICATION_ID = 0x544C4A4E  # "TLJN"
_SQLITE_HEADER = b"SQLite format 3\x00"
_LOCK_TIMEOUT = 1.0
"""Seconds SQLite waits for another process's lock before we report the journal as in use."""
_CLOSE_TIMEOUT = 5.0
_CANNOT_WRITE = "cannot be written (read-only file or directory, or permissions)"

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

_RISK_SCHEMA = (
    """CREATE TABLE risk_state (
        id INTEGER PRIMARY KEY CHECK (id = 1), killed INTEGER NOT NULL, kill_reason TEXT, kill_time INTEGER,
        peak_equity TEXT NOT NULL, day INTEGER, day_start_equity TEXT)""",
    """CREATE TABLE risk_events (
        seq INTEGER PRIMARY KEY AUTOINCREMENT, time INTEGER NOT NULL, event TEXT NOT NULL, reason TEXT NOT NULL)""",
    """CREATE TABLE rejections (
        seq INTEGER PRIMARY KEY AUTOINCREMENT, time INTEGER NOT NULL, strategy TEXT NOT NULL,
        exchange TEXT NOT NULL, symbol TEXT NOT NULL, signal TEXT NOT NULL, signal_reason TEXT NOT NULL,
        reason TEXT NOT NULL, detail TEXT NOT NULL)""",
)
"""Added in schema version 2; a version-1 journal gains them on open."""

T = TypeVar("T")
Ts = TypeVarTuple("Ts")


class JournalError(TradeloopError):
    """The journal file cannot be used: not a journal, corrupt, cannot be written, in use, or for
    another account (the message says which).
    """


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


@dataclass(frozen=True, slots=True)
class RiskRecord:
    """The risk manager's state that must survive a restart."""

    kill_reason: str | None
    """Why the kill switch tripped; None while it is not tripped."""
    kill_time: int | None
    """When it tripped, Unix milliseconds."""
    peak_equity: Decimal
    """The equity peak the drawdown limit measures from."""
    day: int | None
    """The UTC day (days since the epoch) ``day_start_equity`` belongs to."""
    day_start_equity: Decimal | None

    @property
    def killed(self) -> bool:
        return self.kill_reason is not None


@dataclass(frozen=True, slots=True)
class RejectionRecord:
    """An order the risk manager refused, as the journal keeps it."""

    time: int
    """Unix milliseconds."""
    strategy: str
    exchange: str
    symbol: str
    signal: str
    """What was asked: ``target 0.5`` or ``buy 0.1``."""
    signal_reason: str
    """The strategy's reason for the signal."""
    reason: str
    """The risk check that refused it (a :class:`~tradeloop.trading.risk.RejectReason` value)."""
    detail: str


class Journal:
    """An open journal. Use :meth:`open`; every method is safe to cancel (see the module docs)."""

    def __init__(self, path: Path, connection: sqlite3.Connection, starting_cash: Decimal) -> None:
        self.path = path
        self.starting_cash = starting_cash
        """Fixed when the journal was created: the account's cash before its first fill."""
        self._connection: sqlite3.Connection | None = connection
        self._limiter = anyio.CapacityLimiter(1)

    @classmethod
    @asynccontextmanager
    async def open(cls, path: str | Path, *, starting_cash: Decimal) -> AsyncIterator[Journal]:
        """Open (or create) the journal at ``path`` for an account starting with ``starting_cash``.

        Raises JournalError if the file is not a usable journal of that account.
        """
        path = Path(path)
        journal = cls(path, await cls._connect(path, starting_cash), starting_cash)
        try:
            yield journal
        finally:
            await journal._close()

    @classmethod
    async def _connect(cls, path: Path, starting_cash: Decimal) -> sqlite3.Connection:
        """The connection :meth:`open` wraps, opened and checked in a worker thread."""
        return await anyio.to_thread.run_sync(open_connection, path, starting_cash)

    async def record_fill(self, order: Order, fill: Fill) -> None:
        """Commit ``order`` and its ``fill`` in one transaction; returns once they are durable."""
        await self._run(_insert_fill, order, fill)

    async def record_snapshot(self, snapshot: JournalSnapshot, risk: RiskRecord | None = None) -> None:
        """Commit the books' figures, and the risk state if given, in one transaction."""
        await self._run(_insert_snapshot, snapshot, risk)

    async def record_risk_event(self, event: str, reason: str, time: int, risk: RiskRecord) -> None:
        """Commit a kill-switch ``event`` ("kill" or "reset") and the risk state after it, together."""
        await self._run(_insert_risk_event, event, reason, time, risk)

    async def risk_state(self) -> RiskRecord | None:
        """The last risk state written, None if none was."""
        return await self._run(_select_risk_state)

    async def risk_events(self) -> list[tuple[int, str, str]]:
        """Every kill-switch trip and reset: (time, event, reason), oldest first."""
        return await self._run(_select_risk_events)

    async def record_rejection(self, rejection: RejectionRecord) -> None:
        await self._run(_insert_rejection, rejection)

    async def rejection_count(self) -> int:
        return await self._run(_count_rejections)

    async def load_rejections(self) -> list[RejectionRecord]:
        """Every rejection, oldest first."""
        return await self._run(_select_rejections)

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
        try:
            return await anyio.to_thread.run_sync(function, connection, *args, limiter=self._limiter)
        except sqlite3.Error as exc:
            raise _journal_error(self.path, exc) from exc
        except (ArithmeticError, ValueError, KeyError, TypeError) as exc:
            # A row whose text is not what we wrote (a Decimal, a side, JSON marks): edited or damaged.
            raise JournalError(f"journal {self.path} is corrupt: a row cannot be read ({exc!r})") from exc

    async def _close(self) -> None:
        """Checkpoint and close; shielded, and bounded even if the disk hangs."""
        connection, self._connection = self._connection, None
        if connection is None:
            return
        with anyio.move_on_after(_CLOSE_TIMEOUT, shield=True) as scope:
            await anyio.to_thread.run_sync(_close, connection, limiter=self._limiter, abandon_on_cancel=True)
        if scope.cancelled_caught:
            logger.warning("closing journal %s took over %.0f s; it ends in the background", self.path, _CLOSE_TIMEOUT)


# --- blocking helpers, run in a worker thread ---------------------------------------------------


def open_connection(path: Path, starting_cash: Decimal) -> sqlite3.Connection:
    """Open the journal at ``path`` (blocking): refuse what is not our journal, migrate an old one.

    Close it with :func:`close_connection`. Raises JournalError, also when this process or another
    holds the journal already.
    """
    with _OPEN_LOCK:  # one opening at a time in this process: see _OPEN
        held = _file_key(path)
        if held is not None and held in _OPEN:
            raise JournalError(f"journal {path} is in use by another engine in this process")
        with _hold_file(path) as fd:
            try:
                connection = sqlite3.connect(path, timeout=_LOCK_TIMEOUT, isolation_level=None, check_same_thread=False)
            except sqlite3.Error as exc:
                raise _journal_error(path, exc) from exc
            try:
                _check_same_file(path, fd)
                status = os.fstat(fd)
            except BaseException:
                connection.close()
                raise
        # Our descriptor is closed before SQLite locks the file, never after: POSIX locks belong
        # to a process and a file, and closing *any* descriptor of the file drops them all. Closed
        # after BEGIN IMMEDIATE, it left the journal unlocked, and a second engine ran on it (an
        # outside look saw two engines share one journal, and one run leave it unreadable).
        try:
            _prepare(connection, path, starting_cash)
        except BaseException:
            connection.close()
            raise
        _OPEN[status.st_dev, status.st_ino] = connection
    return connection


def close_connection(connection: sqlite3.Connection) -> None:
    """Close a connection of :func:`open_connection`, so this process may open its journal again."""
    try:
        connection.close()  # not under _OPEN_LOCK: a close that hangs on the disk must not stop other opens
    finally:
        with _OPEN_LOCK:
            for key in [key for key, held in _OPEN.items() if held is connection]:
                del _OPEN[key]


_OPEN: dict[tuple[int, int], sqlite3.Connection] = {}
"""The journals this process holds, by file (device, inode). A second opening in the same process
is refused before it opens the file: SQLite would refuse it too, but our own descriptor's close
would then drop the lock the first holds (see :func:`open_connection`)."""
_OPEN_LOCK = threading.Lock()


def _file_key(path: Path) -> tuple[int, int] | None:
    try:
        status = os.lstat(path)  # a symbolic link is refused as one by _hold_file, not taken for its target
    except OSError:
        return None  # not there yet (created by the opening)
    return status.st_dev, status.st_ino


@contextmanager
def _hold_file(path: Path) -> Iterator[int]:
    """Open the journal file without following a symbolic link (creating it 0600 if missing) and
    refuse a file that is not SQLite before SQLite gets a chance to touch it. Yields the open
    descriptor, held while SQLite opens the same path, so a swap in between is detected.
    """
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        try:
            fd = os.open(path, flags)
        except FileNotFoundError:
            fd = os.open(path, flags | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        if os.path.islink(path):
            raise JournalError(f"journal {path} is a symbolic link; refusing to write through it") from exc
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise JournalError(f"journal {path} {_CANNOT_WRITE}: {exc.strerror}") from exc
        raise JournalError(f"journal {path} cannot be opened: {exc.strerror or exc}") from exc
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise JournalError(f"journal {path} is not a regular file")
        # SQLite reports a file or directory it cannot write as a "disk I/O error" (it cannot
        # create the WAL file beside it): say what it is before SQLite gets to say that.
        if not os.access(path, os.W_OK):
            raise JournalError(f"journal {path} {_CANNOT_WRITE}: the file is read-only to this user")
        if not os.access(path.parent, os.W_OK | os.X_OK):
            raise JournalError(f"journal {path} {_CANNOT_WRITE}: its directory is read-only to this user")
        header = os.read(fd, len(_SQLITE_HEADER))
        if header and header != _SQLITE_HEADER:
            raise JournalError(f"{path} is not a tradeloop journal (not an SQLite database); refusing to use it")
        yield fd
    except OSError as exc:
        raise JournalError(f"journal {path} cannot be read: {exc.strerror or exc}") from exc
    finally:
        os.close(fd)


def _check_same_file(path: Path, fd: int) -> None:
    """The file SQLite opened by name is the one we checked (not a link swapped in meanwhile)."""
    held = os.fstat(fd)
    try:
        now = os.lstat(path)
    except OSError as exc:
        raise JournalError(f"journal {path} vanished while opening it: {exc.strerror or exc}") from exc
    if (now.st_dev, now.st_ino) != (held.st_dev, held.st_ino):
        raise JournalError(f"journal {path} was replaced while opening it (a symbolic link?); refusing to use it")


def _journal_error(path: Path, exc: sqlite3.Error) -> JournalError:
    """Our error for SQLite's, telling apart what the user fixes differently (by SQLite's error
    code: its messages are not meant for matching).
    """
    code = getattr(exc, "sqlite_errorname", "") or ""
    if code.startswith("SQLITE_BUSY"):
        return JournalError(f"journal {path} is in use by another engine")
    if code.startswith("SQLITE_FULL"):
        return JournalError(f"journal {path} cannot be written: the disk is full ({exc})")
    if code.startswith(("SQLITE_READONLY", "SQLITE_CANTOPEN", "SQLITE_PERM", "SQLITE_AUTH")):
        return JournalError(f"journal {path} {_CANNOT_WRITE}: {exc}")
    return JournalError(f"journal {path} is unreadable or corrupt: {exc}")


def _prepare(connection: sqlite3.Connection, path: Path, starting_cash: Decimal) -> None:
    try:
        connection.execute("PRAGMA locking_mode=EXCLUSIVE")
        connection.execute("BEGIN IMMEDIATE")  # takes the lock, which exclusive mode then keeps
        application_id = connection.execute("PRAGMA application_id").fetchone()[0]
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if application_id == 0 and not tables:
            connection.execute(f"PRAGMA application_id={APPLICATION_ID}")
            for statement in (*_SCHEMA, *_RISK_SCHEMA):
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
    except sqlite3.Error as exc:
        raise _journal_error(path, exc) from exc


def _check_existing(connection: sqlite3.Connection, path: Path, application_id: int, starting_cash: Decimal) -> None:
    if application_id != APPLICATION_ID:
        raise JournalError(f"{path} is an SQLite database of another application, not a tradeloop journal")
    row = connection.execute("SELECT version FROM schema_version").fetchone()
    version = None if row is None else row[0]
    if not isinstance(version, int) or not 1 <= version <= SCHEMA_VERSION:
        raise JournalError(f"journal {path} has schema version {version}; this tradeloop reads 1 to {SCHEMA_VERSION}")
    problems = [row[0] for row in connection.execute("PRAGMA quick_check")]
    if problems != ["ok"]:
        raise JournalError(f"journal {path} is corrupt: {'; '.join(problems[:3])}")
    recorded = Decimal(connection.execute("SELECT value FROM meta WHERE key='starting_cash'").fetchone()[0])
    if recorded != starting_cash:
        raise JournalError(
            f"starting_cash {starting_cash} differs from the {recorded} journal {path} was created with; "
            "use the journal's starting cash or a new journal path"
        )
    if version < SCHEMA_VERSION:
        # Inside the caller's transaction: a migration is all or nothing.
        for statement in _RISK_SCHEMA:
            connection.execute(statement)
        connection.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION,))
        logger.warning("journal %s migrated from schema version %d to %d", path, version, SCHEMA_VERSION)


def checkpoint(connection: sqlite3.Connection) -> None:
    """Fold the WAL into the database file (blocking), as a journal does when it closes. A
    transaction an interruption left open is rolled back first: it would make the checkpoint fail
    with "database table is locked".
    """
    roll_back_abandoned(connection)
    connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def _close(connection: sqlite3.Connection) -> None:
    """:func:`checkpoint` and close (blocking)."""
    try:
        checkpoint(connection)
    except sqlite3.Error:
        # Committed transactions are safe in the WAL file; the next open checkpoints them.
        logger.warning("checkpoint on closing the journal failed", exc_info=True)
    finally:
        close_connection(connection)


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


def _insert_snapshot(connection: sqlite3.Connection, snapshot: JournalSnapshot, risk: RiskRecord | None) -> None:
    marks = json.dumps([[exchange, symbol, str(price)] for (exchange, symbol), price in snapshot.marks.items()])
    figures = (snapshot.cash, snapshot.equity, snapshot.realised_pnl, snapshot.unrealised_pnl, snapshot.fees)
    with _transaction(connection):
        connection.execute(
            "INSERT INTO snapshots (time, cash, equity, realised_pnl, unrealised_pnl, fees, peak_equity, "
            "max_drawdown, marks) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (snapshot.time, *map(str, figures), str(snapshot.peak_equity), str(snapshot.max_drawdown), marks),
        )
        if risk is not None:
            _upsert_risk_state(connection, risk)


def _insert_risk_event(connection: sqlite3.Connection, event: str, reason: str, time: int, risk: RiskRecord) -> None:
    with _transaction(connection):
        connection.execute("INSERT INTO risk_events (time, event, reason) VALUES (?, ?, ?)", (time, event, reason))
        _upsert_risk_state(connection, risk)


def _upsert_risk_state(connection: sqlite3.Connection, risk: RiskRecord) -> None:
    day_start = None if risk.day_start_equity is None else str(risk.day_start_equity)
    connection.execute(
        "INSERT OR REPLACE INTO risk_state (id, killed, kill_reason, kill_time, peak_equity, day, day_start_equity) "
        "VALUES (1, ?, ?, ?, ?, ?, ?)",
        (int(risk.killed), risk.kill_reason, risk.kill_time, str(risk.peak_equity), risk.day, day_start),
    )


def _select_risk_state(connection: sqlite3.Connection) -> RiskRecord | None:
    row = connection.execute(
        "SELECT killed, kill_reason, kill_time, peak_equity, day, day_start_equity FROM risk_state"
    ).fetchone()
    if row is None:
        return None
    killed, reason, kill_time, peak, day, day_start = row
    return RiskRecord(
        kill_reason=(reason or "tripped") if killed else None,
        kill_time=kill_time if killed else None,
        peak_equity=Decimal(peak),
        day=day,
        day_start_equity=None if day_start is None else Decimal(day_start),
    )


def _select_risk_events(connection: sqlite3.Connection) -> list[tuple[int, str, str]]:
    return [tuple(row) for row in connection.execute("SELECT time, event, reason FROM risk_events ORDER BY seq")]


def _insert_rejection(connection: sqlite3.Connection, rejection: RejectionRecord) -> None:
    with _transaction(connection):
        connection.execute(
            "INSERT INTO rejections (time, strategy, exchange, symbol, signal, signal_reason, reason, detail) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                rejection.time,
                rejection.strategy,
                rejection.exchange,
                rejection.symbol,
                rejection.signal,
                rejection.signal_reason,
                rejection.reason,
                rejection.detail,
            ),
        )


def _count_rejections(connection: sqlite3.Connection) -> int:
    return int(connection.execute("SELECT count(*) FROM rejections").fetchone()[0])


def _select_rejections(connection: sqlite3.Connection) -> list[RejectionRecord]:
    rows = connection.execute(
        "SELECT time, strategy, exchange, symbol, signal, signal_reason, reason, detail FROM rejections ORDER BY seq"
    ).fetchall()
    return [RejectionRecord(*row) for row in rows]


def _select_fills(connection: sqlite3.Connection) -> list[Fill]:
    # fetchall first: a row that fails to convert must not leave the statement open (it would
    # hold a table lock that makes the closing checkpoint fail with "database table is locked").
    rows = connection.execute(
        "SELECT order_id, exchange, symbol, side, quantity, price, fee, time, strategy, reason FROM fills ORDER BY seq"
    ).fetchall()
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
    """``BEGIN IMMEDIATE`` … ``COMMIT``, rolled back if the body raises.

    Idempotent against an interruption at any point: a KeyboardInterrupt raised between two
    bytecodes (Python's signal handler outside Trio's KI protection) can leave a transaction open
    before this function's ``try`` is entered; the next transaction, or closing, rolls it back
    instead of failing on "cannot start a transaction within a transaction".
    """
    roll_back_abandoned(connection)
    try:
        connection.execute("BEGIN IMMEDIATE")
        yield
        connection.execute("COMMIT")
    except BaseException:
        roll_back_abandoned(connection)
        raise


def roll_back_abandoned(connection: sqlite3.Connection) -> None:
    """Roll back a transaction left open, if one is. Some errors (a full disk, say) end the
    transaction themselves; a ROLLBACK without one would fail and hide the error that matters.
    """
    if connection.in_transaction:
        connection.execute("ROLLBACK")
