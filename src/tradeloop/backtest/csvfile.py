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
from functools import partial
from pathlib import Path

from ..errors import InvalidValueError
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
    """The candles of ``path`` as ``exchange``'s ``symbol``.

    The file is read row by row into the builder's integer columns (about 60 bytes a candle): a
    CSV of three million candles, read whole as lists of strings first, took 3.4 GB.
    """
    builder = SeriesBuilder(exchange, symbol, None, source=f"data file {path}", place=partial(_line_of, path))
    try:
        with path.open(newline="", encoding="utf-8-sig") as file:  # a spreadsheet's byte-order mark too
            rows = csv.reader(file)
            header = [name.strip().lower() for name in next(rows, [])]
            if not header:
                raise InvalidValueError(f"data file {path} is empty; expected a header row: {','.join(COLUMNS)}")
            missing = [name for name in COLUMNS if name not in header]
            if missing:
                raise InvalidValueError(
                    f"data file {path}: the header lacks column {missing[0]!r}; expected {','.join(COLUMNS)}"
                )
            positions = [header.index(name) for name in COLUMNS]
            for row in rows:
                if not row or all(not cell.strip() for cell in row):
                    continue
                line = rows.line_num
                if len(row) != len(header):
                    raise InvalidValueError(f"{path}:{line}: expected {len(header)} columns, got {len(row)}")
                open_time_text, open_, high, low, close, volume = (row[position] for position in positions)
                try:
                    open_time = parse_time(open_time_text)
                except InvalidValueError as exc:
                    raise InvalidValueError(f"{path}:{line}: open_time {exc}") from None
                builder.add(open_time, open_, high, low, close, volume, line)
    except OSError as exc:
        raise InvalidValueError(f"cannot read data file {path}: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, csv.Error) as exc:
        raise InvalidValueError(f"data file {path} is not a CSV text file: {exc}") from None
    if len(builder) < 2:
        raise InvalidValueError(f"data file {path} holds {len(builder)} candle(s); a backtest needs at least two")
    return builder.build()


def _line_of(path: Path, line: int) -> str:
    return f"{path}:{line}"
