"""The simulator in a Trio thread of its own, for synchronous tests that run event loops themselves
(``asyncio.run`` in a README example, ``trio.run`` and ``asyncio.run`` in turn, a subprocess).

Async tests open the simulator in their own loop instead (it runs on Trio and asyncio alike). Calls
into it (faults, the candles it closed) run on its own Trio thread (``TrioToken.run_sync_soon``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from typing import TypeVar

import trio
import trio.lowlevel

from tradeloop.sim import SimConfig, Simulator, open_simulator

__all__ = ["SimulatorThread", "simulator_thread"]

T = TypeVar("T")


class SimulatorThread:
    """A handle on the simulator running in another thread: :meth:`call` runs code next to it."""

    def __init__(self, sim: Simulator, token: trio.lowlevel.TrioToken) -> None:
        self.sim = sim
        self._token = token

    def call(self, function: Callable[[Simulator], T]) -> T:
        """``function(sim)`` on the simulator's thread (its state is Trio's, not thread-safe).

        Blocks the caller for the call's few microseconds; ``trio.from_thread`` would refuse a
        caller that is itself inside a Trio run (the tradeloop side under the Trio backend).
        """
        result: Future[T] = Future()

        def run() -> None:
            try:
                result.set_result(function(self.sim))
            except BaseException as exc:  # handed to the caller
                result.set_exception(exc)

        self._token.run_sync_soon(run)
        return result.result(10)


@contextmanager
def simulator_thread(config: SimConfig) -> Iterator[SimulatorThread]:
    """Run the simulator in a Trio thread until the ``with`` ends (joined within 10 s)."""
    ready = threading.Event()
    handle: list[SimulatorThread] = []
    failure: list[BaseException] = []
    stop: list[trio.Event] = []

    async def serve() -> None:
        async with open_simulator(config) as sim:
            stop.append(trio.Event())
            handle.append(SimulatorThread(sim, trio.lowlevel.current_trio_token()))
            ready.set()
            await stop[0].wait()

    def run() -> None:
        try:
            trio.run(serve)
        except BaseException as exc:  # reported by the test thread below
            failure.append(exc)
        finally:
            ready.set()

    thread = threading.Thread(target=run, name="tradeloop-simulator", daemon=True)
    thread.start()
    ready.wait(10)
    if failure or not handle:
        raise RuntimeError("the simulator did not start") from (failure[0] if failure else None)
    try:
        yield handle[0]
    finally:
        handle[0].call(lambda sim: stop[0].set())
        thread.join(10)
        if failure:
            raise failure[0]
        assert not thread.is_alive(), "the simulator thread did not end"
