"""The embedded exchange: WebSocket + REST on loopback in BingX's dialect (default) or Binance's
(``SimConfig(exchange="binance")``), one deterministic market, fault injection, and a market clock
that can run faster than real time (``speed``). The default target of ``tradeloop run``, the peer
of the tests and benchmarks.

    async with open_simulator(SimConfig(symbols=["BTC-USDT"])) as sim:
        ...  # connect to sim.ws_url / sim.spot_ws_url / sim.rest_url; sim.faults.drop_all()
"""

from __future__ import annotations

from .config import SimConfig, SimStats
from .faults import FAULT_NAMES, Faults, RestDown
from .market import SimCandle
from .server import Simulator, open_simulator

__all__ = ["FAULT_NAMES", "Faults", "RestDown", "SimCandle", "SimConfig", "SimStats", "Simulator", "open_simulator"]
