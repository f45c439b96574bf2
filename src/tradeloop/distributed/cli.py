"""``tradeloop publish``: a collector, from an exchange's sockets into Redis streams.

    tradeloop publish --redis redis://localhost:6379/0 bingx BTC/USDT:USDT ETH/USDT:USDT --timeframe 1m --ticker
    tradeloop publish --config desk.toml          # its [publish] table and [exchanges]

Every closed candle goes to ``<prefix>:kline:<exchange>:<symbol>:<timeframe>`` with entry ID
``<open_time_ms>-0`` and every tick to ``<prefix>:ticker:<exchange>:<symbol>`` (see
:mod:`tradeloop.distributed.keys`); health to the hash ``<prefix>:collector:<name>``. Runs until
Ctrl-C or SIGTERM (or ``--duration``), then prints what it published.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from typing import TYPE_CHECKING, Any

import trio

from .._groups import sole_error
from ..errors import InvalidValueError, TradeloopError
from ..exchanges import create_exchange, normalize_exchange_name
from ..metrics.cli import MetricsAddress, add_metrics_options, metrics_address, start_metrics
from ..metrics.collector import Snapshot
from ..streams import StreamManager
from ..streams.cli import report_errors
from ..symbols import Market, normalize_symbol, parse_symbol, validate_timeframe
from ..trading.config import PublishConfig, load_publish_config
from .keys import DEFAULT_PREFIX
from .settings import PublisherStats, PublishSettings, PublishTopics

if TYPE_CHECKING:
    from .publisher import Publisher

__all__ = ["add_parser", "publish_command"]


def add_parser(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "publish",
        help="publish an exchange's closed candles and ticks to Redis streams",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("exchange", nargs="?", help="exchange name, e.g. bingx")
    parser.add_argument("symbols", nargs="*", metavar="symbol", help="unified symbols, e.g. BTC/USDT:USDT")
    parser.add_argument("--config", metavar="FILE", help="TOML file with a [publish] table (instead of arguments)")
    parser.add_argument("--redis", metavar="URL", help="redis://[:password@]host[:port][/db] or rediss://...")
    parser.add_argument("--timeframe", action="append", default=[], metavar="TF", help="kline timeframe (repeatable)")
    parser.add_argument("--ticker", action="store_true", help="publish 24h ticker ticks too")
    parser.add_argument("--ws-url", help="WebSocket URL for the symbols' market (default: the real exchange)")
    parser.add_argument("--rest-url", help="REST base URL (default: the real exchange)")
    parser.add_argument("--collector", default="collector", help="this collector's name in its health key")
    parser.add_argument("--prefix", default=DEFAULT_PREFIX, help=f"key prefix (default {DEFAULT_PREFIX})")
    parser.add_argument("--duration", type=float, metavar="SECONDS", help="stop after this long (default: Ctrl-C)")
    add_metrics_options(parser)
    parser.set_defaults(handler=_handle)


def _from_arguments(args: argparse.Namespace) -> PublishConfig:
    if args.redis is None or args.exchange is None or not args.symbols:
        raise InvalidValueError("give --redis URL EXCHANGE SYMBOL... with --timeframe TF and/or --ticker, or --config")
    if not args.timeframe and not args.ticker:
        raise InvalidValueError("nothing to publish: give --timeframe TF and/or --ticker")
    symbols = [normalize_symbol(symbol) for symbol in args.symbols]
    for timeframe in args.timeframe:
        validate_timeframe(timeframe)
    options: dict[str, str] = {}
    if args.ws_url:
        markets = {parse_symbol(symbol).market for symbol in symbols}
        if len(markets) > 1:
            raise InvalidValueError("--ws-url serves one market: publish spot and swap symbols from two collectors")
        options["ws_url" if markets == {Market.SWAP} else "spot_ws_url"] = args.ws_url
    if args.rest_url:
        options["rest_url"] = args.rest_url
    name = normalize_exchange_name(args.exchange)
    return PublishConfig(
        redis=args.redis,
        topics=PublishTopics(name, symbols, args.timeframe, ticks=args.ticker),
        settings=PublishSettings(prefix=args.prefix, collector=args.collector),
        exchanges={name: create_exchange(name, **options)},
    )


def _handle(args: argparse.Namespace) -> int:
    if args.config is not None:
        if args.exchange is not None or args.redis is not None:
            raise InvalidValueError("--config replaces --redis and the EXCHANGE SYMBOL arguments: give one of them")
        config = load_publish_config(args.config)
    else:
        config = _from_arguments(args)
    if args.duration is not None and not args.duration > 0:
        raise InvalidValueError(f"invalid --duration {args.duration!r}: expected seconds > 0")
    try:
        try:
            stats = trio.run(publish_command, config, args.duration, metrics_address(args))
        except BaseExceptionGroup as group:
            raise sole_error(group) from None
    except InvalidValueError:
        raise
    except TradeloopError as exc:
        print(f"tradeloop publish: {exc}", file=sys.stderr)
        return 1
    print(
        f"tradeloop publish: {stats.klines} candles ({stats.backfilled} backfilled, {stats.duplicates} already there), "
        f"{stats.ticks} ticks, {stats.redis_retries} Redis retries",
        file=sys.stderr,
    )
    return 0


async def publish_command(
    config: PublishConfig,
    duration: float | None = None,
    metrics: MetricsAddress | None = None,
    *,
    task_status: trio.TaskStatus[Publisher] = trio.TASK_STATUS_IGNORED,
) -> PublisherStats:
    """What ``tradeloop publish`` does, as a coroutine: publish until cancelled, a signal or ``duration``."""
    # Imported here: the Redis client is most of tradeloop's import time (see .settings).
    from .client import open_redis
    from .publisher import Publisher

    async with (
        open_redis(config.redis) as redis,
        StreamManager.open(config.exchanges) as streams,
        trio.open_nursery() as nursery,
    ):
        publisher = Publisher(redis, streams, config.settings)
        if duration is not None:
            nursery.cancel_scope.deadline = trio.current_time() + duration
        if threading.current_thread() is threading.main_thread():
            nursery.start_soon(_stop_on_signals, nursery.cancel_scope)
        await start_metrics(nursery, metrics, lambda: Snapshot(health=streams.health(), publisher=publisher.stats))
        # What goes wrong on the exchange's side (a socket that cannot connect, a REST that fails)
        # on stderr, as `watch` does: a collector otherwise runs on quietly at the default log level.
        nursery.start_soon(report_errors, streams, trio.current_time(), "publish")
        await nursery.start(publisher.run, [config.topics])
        task_status.started(publisher)
    return publisher.stats


async def _stop_on_signals(scope: trio.CancelScope) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            scope.cancel()
            return
