"""The embedded BingX-compatible exchange: WebSocket + REST on loopback, a deterministic market,
and fault injection. The default target of ``tradeloop run``, the peer of the tests and benchmarks.

    async with open_simulator(SimConfig(symbols=["BTC-USDT"])) as sim:
        ...  # connect to sim.ws_url / sim.spot_ws_url / sim.rest_url; sim.faults.drop_all()
"""

from __future__ import annotations

from .config import SimConfig, SimStats
from .faults import FAULT_NAMES, Faults, RestDown
from .market import SimCandle
from .server import Simulator, open_simulator

__all__ = ["FAULT_NAMES", "Faults", "RestDown", "SimCandle", "SimConfig", "SimStats", "Simulator", "open_simulator"]
