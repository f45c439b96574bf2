"""``tradeloop sim``: serve the embedded exchange (BingX's or Binance's dialect) until Ctrl-C.

Prints its real URLs (port 0 picks a free port) and the ``tradeloop watch`` flags that use them.
``--speed 60`` runs market time sixty times faster (a one-minute candle closes every second).
Faults are switched on at start with ``--fault NAME[=VALUE]`` and, when stdin is an interactive
terminal, at any time by typing ``NAME[=VALUE]`` lines (``drop_all``, ``stall``,
``malformed_rate=0.1``, ``clear``, ``stats``).
Ctrl-C stops it with exit status 130 (SIGTERM: 143); an address it cannot listen on is one line on
stderr and status 1.
"""

from __future__ import annotations

import argparse
import errno
import os
import signal
import socket
import sys
from dataclasses import asdict
from typing import Any

import trio

from ..cli import sole_error
from ..errors import InvalidValueError, ListenError
from ..metrics.cli import add_metrics_options, metrics_address, start_metrics
from ..metrics.collector import Snapshot
from .config import EXCHANGES, SimConfig
from .faults import FAULT_NAMES, Faults
from .server import Simulator, open_simulator

__all__ = ["ListenError", "add_parser", "parse_fault"]

_LISTEN_ERRNOS = (errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES)


def add_parser(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "sim", help="run the embedded exchange (BingX or Binance dialect)", description=__doc__
    )
    parser.add_argument("--exchange", default="bingx", help=f"dialect to speak: {', '.join(EXCHANGES)} (default bingx)")
    parser.add_argument("--speed", type=float, default=1.0, help="market time factor (default 1: real time)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--ws-port", type=int, default=0, help="WebSocket port (default 0: any free port)")
    parser.add_argument("--rest-port", type=int, default=0, help="REST port (default 0: any free port)")
    parser.add_argument("--symbols", default="BTC-USDT,ETH-USDT", help="comma-separated BingX ids")
    parser.add_argument("--seed", type=int, default=0, help="market and fault seed (default 0)")
    parser.add_argument("--push-interval", type=float, default=1.0, help="seconds between pushes per topic")
    parser.add_argument("--ping-interval", type=float, default=5.0, help="seconds between server pings")
    parser.add_argument("--pong-timeout", type=float, default=30.0, help="close sockets silent to pings this long")
    parser.add_argument("--step-seconds", type=float, default=1.0, help="market model step (divides a minute)")
    parser.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="NAME[=VALUE]",
        help=f"switch a fault on at start (repeatable): {', '.join(FAULT_NAMES)}",
    )
    add_metrics_options(parser)
    parser.set_defaults(handler=_handle)


def _split(text: str) -> tuple[str, str | None]:
    name, sep, value = text.strip().partition("=")
    return name.strip(), value if sep else None


def parse_fault(text: str) -> tuple[str, str | None]:
    """``"NAME"`` or ``"NAME=VALUE"``, checked against a scratch :class:`Faults` (ValueError if bad)."""
    fault = _split(text)
    Faults(0, lambda: 0).set(*fault)
    return fault


def _handle(args: argparse.Namespace) -> int:
    config = SimConfig(
        exchange=args.exchange,
        speed=args.speed,
        symbols=[symbol.strip() for symbol in args.symbols.split(",") if symbol.strip()],
        seed=args.seed,
        push_interval=args.push_interval,
        ping_interval=args.ping_interval,
        pong_timeout=args.pong_timeout,
        step_seconds=args.step_seconds,
    )
    for port in (args.ws_port, args.rest_port):
        if not 0 <= port <= 65535:
            raise InvalidValueError(f"invalid port {port!r}: expected 0 (any free port) to 65535")
    faults = [parse_fault(text) for text in args.fault]
    try:
        signum: int = trio.run(_serve, config, args, faults)
    except BaseException as exc:
        error = sole_error(exc)
        if isinstance(error, socket.gaierror):
            raise ListenError(f"cannot listen on host {args.host!r}: {error.strerror or error}") from None
        if isinstance(error, OSError) and error.errno in _LISTEN_ERRNOS:
            ports = f"WebSocket port {args.ws_port}, REST port {args.rest_port}; 0 = any free port"
            raise ListenError(f"cannot listen on {args.host} ({ports}): {error.strerror}") from None
        raise
    return 128 + signum


async def _serve(config: SimConfig, args: argparse.Namespace, faults: list[tuple[str, str | None]]) -> int:
    """Serve until SIGINT (Ctrl-C) or SIGTERM, then close every connection and return the signal."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with (
            open_simulator(config, host=args.host, ws_port=args.ws_port, rest_port=args.rest_port) as sim,
            trio.open_nursery() as nursery,
        ):
            for name, value in faults:
                sim.faults.set(name, value)
            await start_metrics(nursery, metrics_address(args), lambda: Snapshot(sim=sim.stats))
            if config.exchange == "binance":
                print(f"WebSocket       {sim.ws_url}  (spot /ws /stream, USDⓈ-M /market/… /public/…)", flush=True)
            else:
                print(f"swap WebSocket  {sim.ws_url}", flush=True)
                print(f"spot WebSocket  {sim.spot_ws_url}", flush=True)
            print(f"REST            {sim.rest_url}", flush=True)
            print(f"watch with      tradeloop watch {config.exchange} SYMBOL {sim.watch_flags()}", flush=True)
            if _interactive():
                print("type NAME[=VALUE] to switch a fault, 'stats' for counters, Ctrl-C to stop", flush=True)
                nursery.start_soon(_console, sim)
            signum: int = signal.SIGINT
            async for signum in signals:  # noqa: B007 - the signal that arrived is the result
                break
            nursery.cancel_scope.cancel()
    return int(signum)


def _interactive() -> bool:
    """Stdin is a terminal and we own it (reading it from the background would stop us)."""
    try:
        return sys.stdin.isatty() and os.tcgetpgrp(sys.stdin.fileno()) == os.getpgrp()
    except (AttributeError, OSError, ValueError):
        return False


async def _console(sim: Simulator) -> None:
    """Apply one fault command per line of stdin until end of input."""
    buffer = b""
    async with trio.lowlevel.FdStream(os.dup(sys.stdin.fileno())) as stdin:
        while chunk := await stdin.receive_some():
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                _command(sim, line.decode(errors="replace").strip())


def _command(sim: Simulator, line: str) -> None:
    if not line:
        return
    if line == "stats":
        print(asdict(sim.stats), flush=True)
        return
    try:
        sim.faults.set(*_split(line))
    except ValueError as exc:
        print(f"tradeloop sim: {exc}", flush=True)
    else:
        print(f"ok: {line}", flush=True)
