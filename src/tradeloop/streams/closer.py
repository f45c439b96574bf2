"""The candle closer: the exactly-once, in-order rule for closed candles, as a pure state machine.

An exchange without a closed flag (BingX) repeats updates of the open candle, may duplicate or
reorder them, and loses whatever it pushed while a socket was down. From pushes and REST rows the
closer decides, for every candle: its updates, then exactly one ``closed=True`` kline, in open-time
order, with missed candles fetched before live updates continue.

Sans-IO, in the manner of h11: it performs no I/O and never waits. :meth:`CandleCloser.feed` takes
pushed klines and returns what to publish; when a rule needs REST (a close to confirm, a gap to
fill) it sets :attr:`CandleCloser.fetch_needed` and queues further input until the driver answers
with :meth:`CandleCloser.fetched` (rows, or ``None`` when a confirmation gave up). While a fetch is
outstanding, input is queued up to ``max_queued`` klines; past that the queue is discarded and
counted as a feed interruption, so a REST outage costs bounded memory and the candles concerned are
closed from REST later, never from stale pushes.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import msgspec

from ..models import Kline
from ..symbols import next_open_time

__all__ = ["CandleCloser", "FetchRange"]


@dataclass(frozen=True, slots=True)
class FetchRange:
    """REST rows wanted: every candle opening in ``[start, until)``, final values."""

    start: int
    until: int
    required: bool
    """A gap must be filled (retry until REST answers); a mere confirmation may give up (``fetched(None)``)."""
    streamed: Kline | None
    """The last pushed update of the candle opening at ``start``, if any: the fallback close."""


class CandleCloser:
    """Per-topic closing state; see the module docstring. Counters are diagnostics for health."""

    def __init__(self, timeframe: str, *, confirm_closes: bool, max_queued: int = 4096) -> None:
        self.timeframe = timeframe
        self.confirm_closes = confirm_closes
        """Confirm each close over REST (exchanges without a closed flag, whose last push may be early)."""
        self.max_queued = max_queued
        self.current: Kline | None = None
        """The newest update of the candle forming."""
        self.last_closed_open: int | None = None
        """Open time of the last candle delivered closed."""
        self.fetch_needed: FetchRange | None = None
        self.closed_candles = 0
        self.backfilled_candles = 0
        self.stale_updates = 0
        self.duplicate_updates = 0
        self.unconfirmed_closes = 0
        self.queue_overflows = 0
        self._epoch = 0
        """Interruptions of the feed so far: between pushes of two epochs, updates may have been lost."""
        self._current_epoch = 0
        """The epoch ``current`` arrived in."""
        self._queue: deque[tuple[int, Kline]] = deque()
        self._resume: tuple[int, Kline] | None = None
        """The push whose arrival asked for the fetch: it is applied once the fetch is answered."""

    # -- input ------------------------------------------------------------------------------------

    def interrupted(self) -> None:
        """The feed may have lost pushes (its socket failed, or a frame could not be read).

        The candle forming then may have moved on unseen, up to its final value, so its last
        update is no close to fall back on: closing it needs REST, as a gap does.
        """
        self._epoch += 1

    def feed(self, klines: Sequence[Kline]) -> list[Kline]:
        """Apply pushed updates (``closed`` False) or final rows (``closed`` True); return what to publish."""
        out: list[Kline] = []
        if self.fetch_needed is None and not self._queue:
            epoch = self._epoch
            for index, kline in enumerate(klines):
                self._apply(kline, epoch, out)
                if self.fetch_needed is not None:
                    self._enqueue(klines[index + 1 :])
                    break
        else:
            self._enqueue(klines)
        return out

    def fetched(self, rows: list[Kline] | None) -> list[Kline]:
        """Answer :attr:`fetch_needed` with REST rows (any order, any range), or None when giving up."""
        request = self.fetch_needed
        if request is None:
            raise RuntimeError("fetched() without a fetch_needed")
        self.fetch_needed = None
        out: list[Kline] = []
        streamed = request.streamed
        if rows is None:
            assert streamed is not None, "a required fetch cannot give up"
            self.unconfirmed_closes += 1
            self._deliver_closed(streamed, out)
        else:
            finals = sorted(
                {row.open_time: row for row in rows if request.start <= row.open_time < request.until}.values(),
                key=lambda row: row.open_time,
            )
            if streamed is not None and (not finals or finals[0].open_time != request.start):
                finals.insert(0, streamed)
            for row in finals:
                if streamed is None or row.open_time != streamed.open_time:
                    self.backfilled_candles += 1
                self._deliver_closed(row, out)
        resume, self._resume = self._resume, None
        if resume is not None:
            self._finish(resume[1], resume[0], out)
        while self._queue and self.fetch_needed is None:
            epoch, kline = self._queue.popleft()
            self._apply(kline, epoch, out)
        return out

    # -- the rules --------------------------------------------------------------------------------

    def _enqueue(self, klines: Sequence[Kline]) -> None:
        epoch = self._epoch
        self._queue.extend((epoch, kline) for kline in klines)
        if len(self._queue) > self.max_queued:
            # Forget the backlog: the pushes are lost, which is what an interruption means, and
            # the candles they touched will be closed from REST.
            self._queue.clear()
            self.queue_overflows += 1
            self.interrupted()

    def _apply(self, kline: Kline, epoch: int, out: list[Kline]) -> None:
        if self.last_closed_open is not None and kline.open_time <= self.last_closed_open:
            self.stale_updates += 1
            return
        current = self.current
        if current is not None:
            if kline.open_time < current.open_time:
                self.stale_updates += 1
                return
            if kline.open_time > current.open_time:
                stale = epoch != self._current_epoch
                if self._close_until(current.open_time, kline.open_time, current, stale, out):
                    self._resume = (epoch, kline)
                    return
        elif self.last_closed_open is not None:
            expected = next_open_time(self.timeframe, self.last_closed_open)
            if kline.open_time > expected and self._close_until(expected, kline.open_time, None, True, out):
                self._resume = (epoch, kline)
                return
        self._finish(kline, epoch, out)

    def _finish(self, kline: Kline, epoch: int, out: list[Kline]) -> None:
        """What follows the closes a push may cause: it is a close itself, or an update."""
        if kline.closed:
            self._deliver_closed(kline, out)
            return
        current = self.current
        if current is not None and kline.open_time == current.open_time and kline.volume < current.volume:
            # A candle's volume only grows: this update is older than the one we have (reordered).
            self.stale_updates += 1
            return
        self._current_epoch = epoch  # a repeat after an interruption shows the candle is current too
        if current == kline:
            self.duplicate_updates += 1
            return
        self.current = kline
        out.append(kline)

    def _close_until(self, start: int, until: int, streamed: Kline | None, stale: bool, out: list[Kline]) -> bool:
        """Close every candle opening in ``[start, until)``; True when that needs a fetch first.

        A gap (missed candles, or a stale last update) must come from REST; a single close with a
        fresh last update needs REST only to confirm its final values.
        """
        gap = streamed is None or stale or next_open_time(self.timeframe, start) < until
        if not gap and not self.confirm_closes:
            assert streamed is not None
            self._deliver_closed(streamed, out)
            return False
        self.fetch_needed = FetchRange(start, until, required=gap, streamed=streamed)
        return True

    def _deliver_closed(self, kline: Kline, out: list[Kline]) -> None:
        if self.last_closed_open is not None and kline.open_time <= self.last_closed_open:
            self.stale_updates += 1
            return
        if not kline.closed:
            kline = msgspec.structs.replace(kline, closed=True)
        self.last_closed_open = kline.open_time
        if self.current is not None and self.current.open_time <= kline.open_time:
            self.current = None
        self.closed_candles += 1
        out.append(kline)
