"""The two sizes of a benchmark run: quick (one run each, under a minute) and full."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["FULL", "QUICK", "Mode"]


@dataclass(frozen=True, slots=True)
class Mode:
    name: str
    runs: int
    """Runs per measurement; the reports give the median."""
    floor_pushes: int
    burst_pushes: int
    live_rates: tuple[int, ...]
    """Rates of the paced runs that write many frames per ``send_all``."""
    packet_rates: tuple[int, ...]
    """Rates of the paced runs that write one frame per ``send_all`` (one per packet)."""
    live_seconds: float
    live_topics: int
    scale_topics: int
    scale_topics_per_socket: int
    idle_seconds: float
    recovery_candles_missed: int
    profile_pushes: int


QUICK = Mode(
    name="quick",
    runs=1,
    floor_pushes=5_000,
    burst_pushes=20_000,
    live_rates=(2_000, 10_000),
    packet_rates=(2_000, 10_000),
    live_seconds=1.0,
    live_topics=100,
    scale_topics=400,
    scale_topics_per_socket=40,
    idle_seconds=1.0,
    recovery_candles_missed=2,
    profile_pushes=5_000,
)

FULL = Mode(
    name="full",
    runs=3,
    floor_pushes=50_000,
    burst_pushes=200_000,
    live_rates=(1_000, 2_000, 10_000),
    packet_rates=(2_000, 10_000),
    live_seconds=5.0,
    live_topics=100,
    scale_topics=2_000,
    scale_topics_per_socket=200,
    idle_seconds=5.0,
    recovery_candles_missed=3,
    profile_pushes=50_000,
)
