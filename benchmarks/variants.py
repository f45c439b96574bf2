"""The measured client variants: what runs in a client process, and the name its rows carry.

A variant is one entry: its key (in specs and the JSON results), the label of its rows, the module
whose ``run(spec)`` runs it in the client process, options merged into the spec, whether it hands
each push to several consumers, and where its ``tradeloop`` comes from. Adding a client (such as
:data:`TRADELOOP_ASYNCIO`) is one entry here and its key in a benchmark's list.

A baseline (:func:`baseline`) is the tradeloop client run with the ``tradeloop`` of another git
revision: the same client script and server, ``PYTHONPATH`` pointing at that revision's ``src``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

__all__ = [
    "BARE_TRIO",
    "BARE_TRIO_CONSUMER",
    "BARE_UVLOOP_CONSUMER",
    "BINANCE_FLOOR_TRIO_CONSUMER",
    "BINANCE_FLOOR_UVLOOP",
    "BINANCE_FLOOR_UVLOOP_CONSUMER",
    "CCXT",
    "CCXT_BINANCE",
    "CCXT_UVLOOP",
    "CRYPTOFEED",
    "TRADELOOP",
    "TRADELOOP_ASYNCIO",
    "TRADELOOP_BINANCE",
    "TRADELOOP_BINANCE_UVLOOP",
    "TRADELOOP_TRIO_WEBSOCKET",
    "TRADELOOP_UVLOOP",
    "TRIO_WEBSOCKET",
    "WSPROTO",
    "Variant",
    "baseline",
]


@dataclass(frozen=True, slots=True)
class Variant:
    key: str
    label: str
    runner: str
    """Module of ``benchmarks`` whose ``run(spec)`` the client process calls."""
    options: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    """Merged into the spec the runner gets (a transport, a receive path, an event loop...)."""
    fan_out: bool = True
    """A client hands each push to every consumer of its topic; a receive path or a floor reads it once."""
    pythonpath: str | None = None
    """Imported before the installed packages: another revision's ``src`` for a baseline."""

    @property
    def on_uvloop(self) -> bool:
        """Its client runs on asyncio+uvloop (compared with ccxt.pro on uvloop too): it asks for
        uvloop, or it is the uvloop floor, which runs on nothing else."""
        return self.options.get("loop") == "uvloop" or self.runner == "client_floor_asyncio"

    def spec(self, **fields: Any) -> dict[str, Any]:
        """The JSON spec of one client process running this variant."""
        return {"client": self.key, "runner": self.runner, **self.options, **fields}

    def environment(self) -> dict[str, str]:
        """The environment of its client processes: this one's, with ``pythonpath`` first."""
        env = dict(os.environ)
        if self.pythonpath is not None:
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [self.pythonpath, env.get("PYTHONPATH")]))
        return env


TRADELOOP = Variant("tradeloop", "tradeloop", "client_tradeloop")
CCXT = Variant("ccxt", "ccxt.pro", "client_ccxt")
CCXT_UVLOOP = Variant("ccxt_uvloop", "ccxt.pro on uvloop", "client_ccxt", MappingProxyType({"loop": "uvloop"}))
TRADELOOP_ASYNCIO = Variant(
    "tradeloop_asyncio", "tradeloop on asyncio", "client_tradeloop", MappingProxyType({"loop": "asyncio"})
)
TRADELOOP_UVLOOP = Variant(
    "tradeloop_uvloop", "tradeloop on asyncio+uvloop", "client_tradeloop", MappingProxyType({"loop": "uvloop"})
)
TRADELOOP_TRIO_WEBSOCKET = Variant(
    "tradeloop_trio_websocket",
    "tradeloop on the trio-websocket transport (reference)",
    "client_tradeloop",
    MappingProxyType({"transport": "trio-websocket"}),
)
TRIO_WEBSOCKET = Variant(
    "trio_websocket",
    "trio-websocket receive + codec (reference)",
    "client_transport",
    MappingProxyType({"receive_path": "trio_websocket"}),
    fan_out=False,
)
WSPROTO = Variant(
    "wsproto",
    "wsproto-on-Trio receive + codec (reference)",
    "client_transport",
    MappingProxyType({"receive_path": "wsproto"}),
    fan_out=False,
)
BARE_TRIO = Variant(
    "bare_trio",
    "bare-Trio floor (socket + FrameDecoder + gunzip + msgspec, one task)",
    "client_floor",
    fan_out=False,
)
BARE_TRIO_CONSUMER = Variant(
    "bare_trio_consumer",
    "bare-Trio floor + a consumer task (memory channel)",
    "client_floor",
    MappingProxyType({"consumer_task": True}),
    fan_out=False,
)
BARE_UVLOOP_CONSUMER = Variant(
    "bare_uvloop_consumer",
    "bare uvloop floor + a consumer task (asyncio.Queue)",
    "client_floor_asyncio",
    MappingProxyType({"consumer_task": True}),
    fan_out=False,
)

TRADELOOP_BINANCE = Variant(
    "tradeloop_binance", "tradeloop, native Binance", "client_tradeloop", MappingProxyType({"exchange": "binance"})
)
TRADELOOP_BINANCE_UVLOOP = Variant(
    "tradeloop_binance_uvloop",
    "tradeloop, native Binance, on asyncio+uvloop",
    "client_tradeloop",
    MappingProxyType({"exchange": "binance", "loop": "uvloop"}),
)
CCXT_BINANCE = Variant("ccxt_binance", "ccxt.pro binance", "client_ccxt", MappingProxyType({"exchange": "binance"}))
BINANCE_FLOOR_TRIO_CONSUMER = Variant(
    "binance_floor_trio_consumer",
    "bare-Trio floor + a consumer task",
    "client_floor",
    MappingProxyType({"exchange": "binance", "consumer_task": True}),
    fan_out=False,
)
BINANCE_FLOOR_UVLOOP = Variant(
    "binance_floor_uvloop",
    "bare uvloop floor, all work in the socket's callback",
    "client_floor_asyncio",
    MappingProxyType({"exchange": "binance"}),
    fan_out=False,
)
BINANCE_FLOOR_UVLOOP_CONSUMER = replace(
    BARE_UVLOOP_CONSUMER,
    key="binance_floor_uvloop_consumer",
    options=MappingProxyType({**BARE_UVLOOP_CONSUMER.options, "exchange": "binance"}),
)
CRYPTOFEED = Variant("cryptofeed", "cryptofeed BinanceFutures", "client_cryptofeed")


def baseline(revision: str, src: str) -> Variant:
    """The tradeloop client importing the ``tradeloop`` package found in ``src`` (another revision's)."""
    return replace(TRADELOOP, key=f"tradeloop@{revision}", label=f"tradeloop @{revision}", pythonpath=src)
