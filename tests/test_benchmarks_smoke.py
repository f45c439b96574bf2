"""The benchmarks still run: one short paced run of tradeloop's client against the feed process.

A change can break them without breaking a test (a URL check once refused the feed's one path for
both markets); the full run takes half an hour, so this runs the smallest piece of it, as
``python -m benchmarks`` does: a feed process, a client process, every push received.
"""

from __future__ import annotations

from benchmarks.bench_live import _one
from benchmarks.frames import symbol_ids
from benchmarks.harness import FeedProcess
from benchmarks.variants import TRADELOOP


def test_a_short_paced_run_receives_every_push() -> None:
    symbols = symbol_ids(5)
    rate, seconds = 200, 1.0
    pushes = int(rate * seconds)
    with FeedProcess.start() as feed:
        feed.command(cmd="prepare_paced", topics=symbols, rate=rate, count=pushes)
        result = _one(feed, TRADELOOP, symbols, pushes, seconds, True, {})
    assert result["observed"] == 1.0, result
    assert result["cpu_us_per_msg"] > 0
