"""A hostile exchange against a tradeloop client in its own process: it survives, stays small, recovers.

The simulator plays the hostile peer (``faults.hostile_ws`` / ``hostile_rest``): each push or REST
answer is replaced by JSON nested 100,000 deep, a 1 MB gzip bomb inflating to 1 GiB, or (REST) a
300 MB body. Unbounded, these ended the process with RecursionError or took it past 2 GB of
memory. The client (tests/hostile_client.py, on Trio or asyncio) runs in a child process so that its peak RSS is
measured alone; once the simulator has sent a few hostile payloads the fault is cleared, and the
client must get good data again (over the same WebSocket, or by retrying REST) and exit cleanly,
having counted the hostile payloads as protocol errors of the expected kind.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
import trio

from tradeloop.sim import SimConfig, Simulator, open_simulator
from tradeloop.sim.faults import Hostile

CLIENT = Path(__file__).with_name("hostile_client.py")
MAX_RSS_MIB = 150
HOSTILE_PAYLOADS = 3


async def run_against(sim: Simulator, arguments: list[str]) -> dict[str, Any]:
    """Run the client until it recovers: clear the fault once it has been sent enough hostile payloads."""
    result: list[trio.CompletedProcess[bytes]] = []

    async def client() -> None:
        command = [sys.executable, str(CLIENT), *arguments]
        result.append(await trio.run_process(command, capture_stdout=True, capture_stderr=True, check=False))

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client)
            # The simulator counts what it sent but signals nothing: poll the count.
            while sim.faults.hostile_sent < HOSTILE_PAYLOADS and not result:  # noqa: ASYNC110
                await trio.sleep(0.05)
            sim.faults.clear()
    (completed,) = result
    assert completed.returncode == 0, completed.stderr.decode()[-3000:]
    report: dict[str, Any] = json.loads(completed.stdout.decode().splitlines()[-1])
    return report


@pytest.mark.parametrize("mode", ["ws", "ws-asyncio"], ids=["trio", "asyncio"])
@pytest.mark.parametrize(
    ("hostile", "kind"),
    [(Hostile.NESTED, "too_deep"), (Hostile.GZIP_BOMB, "too_large")],
)
async def test_hostile_websocket_frames(hostile: Hostile, kind: str, mode: str) -> None:
    async with open_simulator(SimConfig(push_interval=0.1)) as sim:
        sim.faults.set("hostile_ws", hostile.value)
        report = await run_against(sim, [mode, sim.ws_url, sim.rest_url])
    assert report["errors"].get(kind, 0) >= 2, report
    assert report["peak_rss_kib"] < MAX_RSS_MIB * 1024, report


@pytest.mark.parametrize(
    ("hostile", "kind"),
    [(Hostile.NESTED, "too_deep"), (Hostile.GZIP_BOMB, "too_large"), (Hostile.HUGE, "too_large")],
)
async def test_hostile_rest_bodies(hostile: Hostile, kind: str) -> None:
    async with open_simulator() as sim:
        sim.faults.set("hostile_rest", hostile.value)
        report = await run_against(sim, ["rest", sim.rest_url])
    assert set(report["errors"]) == {kind} and report["errors"][kind] >= 2, report
    assert report["peak_rss_kib"] < MAX_RSS_MIB * 1024, report
