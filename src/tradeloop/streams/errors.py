"""A bounded record of recent errors, shared by connections and topics."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import trio

__all__ = ["ErrorHistory", "ErrorRecord"]


@dataclass(frozen=True, slots=True)
class ErrorRecord:
    time: float
    """trio.current_time() when it happened."""
    kind: str
    message: str


class ErrorHistory:
    """The newest ``maxlen`` errors; older ones fall off so a long run cannot grow memory."""

    def __init__(self, maxlen: int = 100) -> None:
        self._records: deque[ErrorRecord] = deque(maxlen=maxlen)

    def record(self, kind: str, error: BaseException | str) -> None:
        self._records.append(ErrorRecord(trio.current_time(), kind, str(error) or type(error).__name__))

    def __len__(self) -> int:
        return len(self._records)

    def recent(self, count: int = 10) -> tuple[ErrorRecord, ...]:
        return tuple(self._records)[-count:]
