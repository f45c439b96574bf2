"""Exponential backoff with full jitter (AWS architecture blog, "Exponential Backoff And Jitter").

Full jitter spreads reconnecting clients evenly over the window, so a server restart is not met
by every client at the same instant.
"""

from __future__ import annotations

import random

__all__ = ["full_jitter_delay"]


def full_jitter_delay(attempt: int, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Delay before retry number ``attempt`` (1-based): uniform in [0, min(cap, base * 2**(attempt-1))]."""
    window = min(cap, base * 2 ** min(max(attempt, 1) - 1, 32))
    return (rng or random).uniform(0.0, window)
