"""The ``--metrics-port`` / ``--metrics-host`` options shared by ``run``, ``publish`` and ``sim``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass

import trio

from ..errors import ListenError
from .collector import Snapshot
from .server import serve_metrics

__all__ = ["MetricsAddress", "add_metrics_options", "metrics_address", "start_metrics"]


@dataclass(frozen=True, slots=True)
class MetricsAddress:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"invalid port {text!r}: expected 0 (any free port) to 65535")
    return port


def add_metrics_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--metrics-port", type=_port, metavar="PORT", help="serve Prometheus metrics at http://HOST:PORT/metrics"
    )
    parser.add_argument(
        "--metrics-host", default="127.0.0.1", metavar="HOST", help="address for --metrics-port (default 127.0.0.1)"
    )


def metrics_address(args: argparse.Namespace) -> MetricsAddress | None:
    return None if args.metrics_port is None else MetricsAddress(args.metrics_host, args.metrics_port)


async def start_metrics(
    nursery: trio.Nursery, address: MetricsAddress | None, snapshot: Callable[[], Snapshot]
) -> int | None:
    """Serve metrics in ``nursery`` when an address was asked for; returns the bound port.

    Raises ListenError, naming the address, if it cannot be listened on.
    """
    if address is None:
        return None
    try:
        port: int = await nursery.start(serve_metrics, snapshot, address.port, address.host)
    except OSError as exc:  # a busy port, an address not of this host, an unknown host (gaierror)
        reason = exc.strerror or str(exc)
        raise ListenError(f"cannot listen for metrics on {address}: {reason[:1].lower()}{reason[1:]}") from exc
    print(f"metrics at http://{address.host}:{port}/metrics", file=sys.stderr, flush=True)
    return port
