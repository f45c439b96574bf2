"""The measured clients, one process per run: ``python -m benchmarks.client '<json spec>'``.

Each run is a fresh process so that its CPU time, memory and event loop are its own and the
server (another process) does not share its core. The spec names the runner module (see
:mod:`benchmarks.variants`: ``client_tradeloop`` on Trio, ``client_ccxt`` for ccxt.pro on
asyncio, ...), the run (``burst`` or ``paced``) and the server URL; the process prints one JSON
line with what it measured and exits.

Both clients do the same job: subscribe to swap ``@kline_1m`` topics, and hand every push, fully
decoded into the library's own candle value, to consumer tasks. A push's close price is its
sequence number, so consumers know which push they hold. Receive times are read from
``time.monotonic_ns()`` (the clock the server stamps its sends with) and CPU from
``time.process_time()`` (this process only).
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import time
from typing import Any

__all__ = ["Meter", "final_seqs", "main"]

TIMEFRAME = "1m"


def final_seqs(topics: int, total: int) -> list[int]:
    """The last sequence number each topic gets when pushes ``1..total`` go round-robin to ``topics``."""
    return [total - (total - 1 - k) % topics for k in range(min(topics, total))]


class Meter:
    """What consumers saw: first and last receive (time and CPU), and each push's receive time."""

    def __init__(self, total: int, consumers: int, finals: list[int], waiting: int) -> None:
        """``waiting``: how many (consumer, final push) receipts end the run."""
        self.total = total
        self.recv_ns = [0] * total
        self.first_ns = 0
        self.first_cpu = 0.0
        self.last_ns = 0
        self.last_cpu = 0.0
        self.items = [0] * consumers
        self.wakeups = [0] * consumers
        self._finals = set(finals)
        self._waiting = waiting

    def seen(self, consumer: int, seqs: list[int]) -> bool:
        """Record what one wake-up of ``consumer`` received; True when every consumer has all finals."""
        now = time.monotonic_ns()
        seqs = [seq for seq in seqs if 0 < seq <= self.total]  # the simulator's own pushes are not ours
        if not seqs:
            return False
        if not self.first_ns:
            self.first_ns, self.first_cpu = now, time.process_time()
        self.wakeups[consumer] += 1
        self.items[consumer] += len(seqs)
        recv_ns = self.recv_ns
        for seq in seqs:
            if not recv_ns[seq - 1]:
                recv_ns[seq - 1] = now
            if seq in self._finals:
                self._waiting -= 1
        if self._waiting:
            return False
        self.last_ns, self.last_cpu = time.monotonic_ns(), time.process_time()
        return True

    def result(self, keep_times: bool) -> dict[str, Any]:
        result: dict[str, Any] = {
            "first_ns": self.first_ns,
            "last_ns": self.last_ns,
            "cpu_s": self.last_cpu - self.first_cpu,
            "items": self.items,
            "wakeups": self.wakeups,
            "observed": sum(1 for t in self.recv_ns if t),
        }
        if keep_times:
            result["recv_ns"] = self.recv_ns
        return result


def main() -> None:
    spec = json.loads(sys.argv[1])
    result = importlib.import_module(f"benchmarks.{spec['runner']}").run(spec)
    # Which tradeloop ran: the orchestrator checks that a baseline imported its own revision's.
    tradeloop = sys.modules.get("tradeloop")
    result["tradeloop_imported_from"] = getattr(tradeloop, "__file__", None)
    _write_all(sys.stdout.fileno(), (json.dumps(result) + "\n").encode())


def _write_all(fd: int, data: bytes) -> None:
    """All of ``data`` to ``fd``, however many writes it takes.

    A paced run's result is over 100 kB, more than a pipe holds. In the clients that ran uvloop, a
    signal now and then interrupts the blocked write, which then returns short; through
    ``sys.stdout`` the rest was lost (the orchestrator read a cut line from a process that exited
    with 0), so the bytes go to the descriptor here, and a short write is followed by the rest.
    """
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


if __name__ == "__main__":
    main()
