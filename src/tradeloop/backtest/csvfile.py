"""Candles from a CSV file the user gives.

The file has a header row naming at least these columns (any order, any letter case; other
columns are ignored)::

    open_time,open,high,low,close,volume
    2026-01-01T00:00:00Z,60000.5,60010,59990.1,60005,12.5
    1767225660000,60005,60007.2,60001,60002,3.25

``open_time`` is the candle's open time in UTC: ISO 8601 (``Z`` or an offset; no offset means
UTC) or integer milliseconds since the Unix epoch. Prices and volumes are decimal numbers, kept
exactly. Rows may come in any order. The timeframe is the shortest step between two open times
and must be one tradeloop knows (1m, 5m, 1h, ...). Every problem is a one-line
:class:`~tradeloop.errors.InvalidValueError` naming the file and line.
"""

from __future__ import annotations

import csv
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path

from ..errors import InvalidValueError
from ..symbols import TIMEFRAMES
from .history import CandleSeries, SeriesBuilder

__all__ = ["COLUMNS", "parse_time", "read_csv"]

COLUMNS = ("open_time", "open", "high", "low", "close", "volume")


def parse_time(text: str) -> int:
    """Epoch milliseconds from integer milliseconds or ISO 8601 (UTC unless an offset is given)."""
    text = text.strip()
    if text.isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidValueError(f"{text!r} is neither ISO 8601 nor epoch milliseconds") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return round(moment.timestamp() * 1000)


def read_csv(path: Path, *, exchange: str, symbol: str) -> CandleSeries:
    """The candles of ``path`` as ``exchange``'s ``symbol``."""
    try:
        with path.open(newline="", encoding="utf-8") as file:
            rows = list(csv.reader(file))
    except OSError as exc:
        raise InvalidValueError(f"cannot read data file {path}: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, csv.Error) as exc:
        raise InvalidValueError(f"data file {path} is not a CSV text file: {exc}") from None
    if not rows:
        raise InvalidValueError(f"data file {path} is empty; expected a header row: {','.join(COLUMNS)}")
    header = [name.strip().lower() for name in rows[0]]
    missing = [name for name in COLUMNS if name not in header]
    if missing:
        raise InvalidValueError(
            f"data file {path}: the header lacks column {missing[0]!r}; expected {','.join(COLUMNS)}"
        )
    positions = [header.index(name) for name in COLUMNS]
    parsed: list[tuple[int, list[str], str]] = []
    for line, row in enumerate(rows[1:], start=2):
        if not row or all(not cell.strip() for cell in row):
            continue
        where = f"{path}:{line}"
        if len(row) < len(header):
            raise InvalidValueError(f"{where}: expected {len(header)} columns, got {len(row)}")
        cells = [row[position] for position in positions]
        try:
            open_time = parse_time(cells[0])
        except InvalidValueError as exc:
            raise InvalidValueError(f"{where}: open_time {exc}") from None
        parsed.append((open_time, cells[1:], where))
    if len(parsed) < 2:
        raise InvalidValueError(f"data file {path} holds {len(parsed)} candle(s); a backtest needs at least two")
    timeframe = _timeframe(path, sorted(open_time for open_time, _, _ in parsed))
    builder = SeriesBuilder(exchange, symbol, timeframe)
    for open_time, (open_, high, low, close, volume), where in parsed:
        builder.add(open_time, open_, high, low, close, volume, where)
    return builder.build()


def _timeframe(path: Path, open_times: list[int]) -> str:
    steps = [after - before for before, after in pairwise(open_times) if after > before]
    if not steps:
        raise InvalidValueError(f"data file {path}: every candle has the same open time")
    step = min(steps)
    for name, length in TIMEFRAMES.items():
        if length == step and name != "1M":
            return name
    raise InvalidValueError(
        f"data file {path}: candles {step} ms apart are not a known timeframe "
        f"({', '.join(name for name in TIMEFRAMES if name != '1M')})"
    )
