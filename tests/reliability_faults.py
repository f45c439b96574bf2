"""Fault schedules for the reliability tests: what can go wrong, when, and for how long.

A schedule is a list of :class:`Fault` windows in simulated seconds. Windows may overlap; at each
window edge the simulator's switches are set from the set of faults active at that moment, so two
overlapping stalls do not end each other early. ``drop`` is instantaneous: it aborts every socket
when its window opens.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import anyio

from tradeloop.sim import RestDown, Simulator

__all__ = ["KINDS", "REST_OUTAGES", "Fault", "apply_faults", "knowable", "run_schedule"]

REST_OUTAGES = frozenset({"rest_429", "rest_503", "rest_close"})
"""Faults during which REST answers nothing useful."""

KINDS = (
    "drop",
    "stall_pings",
    "stall_silent",
    "stop_pings",
    "ignore_pongs",
    "malformed",
    "malformed_all",
    "duplicates",
    "reorder",
    "skip_final",
    "batches",
    *sorted(REST_OUTAGES),
)


@dataclass(frozen=True, slots=True)
class Fault:
    kind: str
    start: float
    """Simulated seconds after the schedule starts."""
    duration: float

    @property
    def end(self) -> float:
        return self.start + self.duration

    def active(self, time: float) -> bool:
        return self.start <= time < self.end


def knowable(schedule: Sequence[Fault]) -> tuple[Fault, ...]:
    """``schedule`` without the REST outages that leave a candle's final values unknowable.

    With ``skip_final`` the exchange never pushes a candle's last update, and nothing on the
    socket says so (BingX may do it any time, BINGX.md §6.7): only REST has the final values, so
    a client confirms each close there, and when REST cannot answer within ``confirm_attempts``
    it delivers the last update it saw, counted in ``unconfirmed_closes``. No client can do
    better, so the invariant is checked for outages that leave REST a minute either side.
    """
    skipped = [f for f in schedule if f.kind == "skip_final"]
    return tuple(
        f
        for f in schedule
        if f.kind not in REST_OUTAGES or not any(f.start < s.end + 60 and s.start - 60 < f.end for s in skipped)
    )


def apply_faults(sim: Simulator, active: set[str]) -> None:
    """Set every switch of the simulator to what the ``active`` fault kinds ask for."""
    faults = sim.faults
    if "stall_silent" in active:
        faults.stall(pings=False)
    elif "stall_pings" in active:
        faults.stall(pings=True)
    else:
        faults.unstall()
    if "stop_pings" in active:
        faults.stop_pings()
    else:
        faults.resume_pings()
    faults.ignore_pongs = "ignore_pongs" in active
    faults.malformed_rate = 1.0 if "malformed_all" in active else 0.02 if "malformed" in active else 0.0
    faults.duplicate_rate = 0.3 if "duplicates" in active else 0.0
    faults.reorder_rate = 0.3 if "reorder" in active else 0.0
    faults.skip_final_update = "skip_final" in active
    faults.batch_klines = "batches" in active
    faults.rest_rate_limited = "rest_429" in active
    if "rest_close" in active:
        faults.rest_down = RestDown.CLOSE
    elif "rest_503" in active:
        faults.rest_down = RestDown.HTTP_503
    else:
        faults.rest_down = None


async def run_schedule(sim: Simulator, schedule: Sequence[Fault], length: float) -> None:
    """Play ``schedule`` on the simulator for ``length`` simulated seconds, then clear every fault."""
    origin = anyio.current_time()
    edges = sorted({0.0, *(f.start for f in schedule), *(min(f.end, length) for f in schedule)})
    for edge in edges:
        await anyio.sleep_until(origin + edge)
        apply_faults(sim, {f.kind for f in schedule if f.active(edge)})
        if any(f.kind == "drop" and f.start == edge for f in schedule):
            sim.faults.drop_all()
    await anyio.sleep_until(origin + length)
    sim.faults.clear()
