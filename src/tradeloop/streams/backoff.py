"""Exponential backoff with full jitter (AWS architecture blog, "Exponential Backoff And Jitter").

Full jitter spreads reconnecting clients evenly over the window, so a server restart is not met
by every client at the same instant. One :class:`Backoff` serves every retry loop of the stream
layer: reconnecting a socket, retrying a REST fetch, polling a fetch-only exchange.
"""

from __future__ import annotations

import random

import anyio

__all__ = ["Backoff", "full_jitter_delay"]


def full_jitter_delay(attempt: int, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Delay before retry number ``attempt`` (1-based): uniform in [0, min(cap, base * 2**(attempt-1))]."""
    window = min(cap, base * 2 ** min(max(attempt, 1) - 1, 32))
    return (rng or random).uniform(0.0, window)


class Backoff:
    """Failures in a row, and the wait before the next try."""

    def __init__(self, base: float, cap: float, rng: random.Random | None = None) -> None:
        self.base = base
        self.cap = cap
        self.attempt = 0
        """Failures since the last :meth:`reset`."""
        self._rng = rng or random.Random()

    def reset(self) -> None:
        self.attempt = 0

    def failed(self) -> float:
        """Count a failure; return the delay to wait before the next try."""
        self.attempt += 1
        return full_jitter_delay(self.attempt, self.base, self.cap, self._rng)

    async def sleep_after_failure(self, minimum: float = 0.0) -> None:
        """Count a failure and wait out its delay (at least ``minimum`` seconds)."""
        await anyio.sleep(max(minimum, self.failed()))
