"""A bounded record of recent errors, shared by connections and topics."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import anyio

from ..errors import TradeloopError

__all__ = ["ErrorHistory", "ErrorRecord", "LogThrottle"]


@dataclass(frozen=True, slots=True)
class ErrorRecord:
    time: float
    """anyio.current_time() when it happened."""
    kind: str
    message: str

    def __str__(self) -> str:
        """How the live view, ``watch`` and its "no data" line show it: the message, then the kind."""
        return f"{self.message} ({self.kind})"


class ErrorHistory:
    """The newest ``maxlen`` errors; older ones fall off so a long run cannot grow memory."""

    def __init__(self, maxlen: int = 100) -> None:
        self._records: deque[ErrorRecord] = deque(maxlen=maxlen)

    def record(self, kind: str, error: BaseException | str) -> None:
        self._records.append(ErrorRecord(anyio.current_time(), kind, describe(error)))

    def __len__(self) -> int:
        return len(self._records)

    def recent(self, count: int = 10) -> tuple[ErrorRecord, ...]:
        return tuple(self._records)[-count:]


_MAX_CAUSES = 16
"""Causes followed at most: a chain is short, but a cycle must not loop."""


def describe(error: BaseException | str) -> str:
    """An error's message, followed by the first cause it was raised from that says more: ccxt's
    "okx GET https://..." gains ": Cannot connect to host www.okx.com:443 ssl:default [Domain name
    not found]", which is what a user needs to read. tradeloop's own errors already name their
    cause, so they are left as they are.
    """
    text = error if isinstance(error, str) else str(error) or type(error).__name__
    if isinstance(error, str | TradeloopError):
        return text
    cause = _cause_of(error)
    for _ in range(_MAX_CAUSES):
        if cause is None:
            break
        detail = str(cause)
        if detail and detail not in text:
            return f"{text}: {detail}"
        cause = _cause_of(cause)
    return text


def _cause_of(error: BaseException) -> BaseException | None:
    return error.__cause__ or (None if error.__suppress_context__ else error.__context__)

class LogThrottle:
    """At most one log line per key per ``interval`` seconds, carrying the count since the last one.

    A flood of bad input (a malformed frame many times a second) must not become a flood of log
    lines: the first occurrence is logged at once, later ones are counted and summarised.
    """

    def __init__(self, interval: float = 60.0, clock: Callable[[], float] = anyio.current_time) -> None:
        """``clock``: the running event loop's by default; ``time.monotonic`` for a throttle shared
        by every loop of the process."""
        self.interval = interval
        self._clock = clock
        self._next_allowed: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def admit(self, key: str) -> int | None:
        """None to stay quiet; else how many occurrences this line covers (1 + those suppressed)."""
        now = self._clock()
        if now < self._next_allowed.get(key, -math.inf):
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return None
        self._next_allowed[key] = now + self.interval
        return 1 + self._suppressed.pop(key, 0)
