"""The "done when" test: a collector publishes the simulator's candles to Redis, two engines of one
group share the streams, the collector and one engine are killed and restarted mid-run, and every
closed candle is processed exactly once in total, with each engine's journal matching its fills;
and an engine killed and restarted on Redis data, on Trio and on asyncio.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Awaitable, Callable
from decimal import Decimal
from pathlib import Path

import anyio
import anyio.abc
import pytest
import trio
from disconnect_scenario import REAL_TIME
from redis_server import SIMULATED_TIMEOUTS, RedisServer, redis_server  # noqa: F401 (fixture)
from rich.console import Console
from streams_helpers import FAST, START_MS, SWAP, assert_matches_history
from trio.testing import MockClock

from tradeloop.distributed import StreamKey, open_redis
from tradeloop.distributed.consumer import RedisMarketData, RedisSourceSettings, rendezvous_owner
from tradeloop.distributed.engine import RedisFeed
from tradeloop.distributed.publisher import Publisher, PublishSettings, PublishTopics
from tradeloop.exchanges.ccxt import CcxtExchange
from tradeloop.models import Fill, Kline, Signal, Tick
from tradeloop.sim import SimConfig, Simulator, open_simulator
from tradeloop.streams import StreamConfig, StreamManager
from tradeloop.trading import EngineConfig, Journal, Strategy, TradingEngine
from tradeloop.trading.cli import run_command

ETH = "ETH/USDT:USDT"
SYMBOLS = {SWAP: "BTC-USDT", ETH: "ETH-USDT"}


@pytest.fixture
def mock_clock() -> MockClock:
    return MockClock(autojump_threshold=0.002)


class Recorder:
    """Holds 0.01 after a candle that closed up, flat otherwise; records every candle it sees."""

    timeframe = "1m"
    warmup = 0

    def __init__(self, symbol: str, seen: list[Kline]) -> None:
        self.name = f"recorder-{symbol}"
        self.symbols = (symbol,)
        self.seen = seen

    def on_kline(self, kline: Kline) -> list[Signal]:
        self.seen.append(kline)
        up = kline.close > kline.open
        return [Signal.hold(kline, Decimal("0.01") if up else Decimal(0), "up" if up else "down")]

    def on_tick(self, tick: Tick) -> list[Signal]:
        return []


SIMULATED_SOURCE = {"read_wait": 0, "poll_interval": 2.0, "lease_ttl": 6.0, "command_timeout": 3600.0}
"""Source settings for an autojumping MockClock (the Redis server cannot follow its time)."""
REAL_TIME_SOURCE = {"read_wait": 0.05, "lease_ttl": 0.6, "command_timeout": 5.0}


class Desk:
    """The collector and the engines, each in a cancel scope of its own so that it can be killed."""

    def __init__(
        self,
        sim: Simulator,
        server: RedisServer,
        journals: Path,
        tasks: anyio.abc.TaskGroup,
        source: dict[str, float] = SIMULATED_SOURCE,
        streams: StreamConfig = FAST,
    ) -> None:
        self.sim = sim
        self.server = server
        self.journals = journals
        self.tasks = tasks
        self.source = source
        self.streams = streams
        self.seen: dict[str, list[Kline]] = {symbol: [] for symbol in SYMBOLS}
        self.engines: dict[str, TradingEngine] = {}
        self.scopes: dict[str, anyio.CancelScope] = {}
        self.publishers: list[Publisher] = []

    def start_engine(self, consumer: str, *more: Strategy) -> None:
        timeout = self.source["command_timeout"]
        settings = RedisSourceSettings(self.server.url, consumer=consumer, connect_timeout=timeout, **self.source)
        config = EngineConfig(
            exchanges={"bingx": self.sim.exchange()},
            strategies=[*(Recorder(symbol, self.seen[symbol]) for symbol in SYMBOLS), *more],
            journal=self.journals / f"{consumer}.sqlite",
            snapshot_interval=30.0,
        )
        engine = self.engines[consumer] = RedisFeed(settings, config.clients).engine(config)
        self.tasks.start_soon(self._run, consumer, engine.run)

    def start_collector(self) -> None:
        self.tasks.start_soon(self._run, "collector", self._collect)

    async def _collect(self) -> None:
        async with (
            StreamManager.open({"bingx": self.sim.exchange()}, self.streams) as streams,
            open_redis(self.server.url, timeouts=SIMULATED_TIMEOUTS) as redis,
        ):
            publisher = Publisher(redis, streams, PublishSettings(backfill=5))
            self.publishers.append(publisher)
            await publisher.run([PublishTopics("bingx", list(SYMBOLS), ["1m"], ticks=True)])

    async def _run(self, name: str, function: Callable[[], Awaitable[object]]) -> None:
        with anyio.CancelScope() as scope:
            self.scopes[name] = scope
            await function()

    def kill(self, name: str) -> None:
        self.scopes.pop(name).cancel()


async def journal_fills(path: Path) -> list[Fill]:
    async with Journal.open(path, starting_cash=Decimal(10_000)) as journal:
        return await journal.load_fills()


async def test_engines_share_streams_and_survive_kills_exactly_once(
    mock_clock: MockClock,
    redis_server: RedisServer,  # noqa: F811
    tmp_path: Path,
) -> None:
    owners = {rendezvous_owner(["a", "b"], str(StreamKey.kline("bingx", s, "1m"))) for s in SYMBOLS}
    assert owners == {"a", "b"}, "the engine names must split the two streams for this test"
    sim_config = SimConfig(symbols=tuple(SYMBOLS.values()), start_ms=START_MS, seed=11, push_interval=5.0)
    async with open_simulator(sim_config) as sim, trio.open_nursery() as nursery:
        desk = Desk(sim, redis_server, tmp_path, nursery)
        desk.start_collector()
        await trio.sleep(2 * 60)
        desk.start_engine("a")
        desk.start_engine("b")
        await trio.sleep(3 * 60 + 17)
        desk.kill("collector")  # down for two candles: the next one backfills them
        await trio.sleep(2 * 60)
        desk.start_collector()
        await trio.sleep(2 * 60 + 31)
        desk.kill("b")  # a takes b's stream over, pending entries included
        await trio.sleep(2 * 60)
        desk.start_engine("b")  # and hands it back
        await trio.sleep(5 * 60)
        nursery.cancel_scope.cancel()
    for symbol, symbol_id in SYMBOLS.items():
        processed = sorted(desk.seen[symbol], key=lambda kline: kline.open_time)
        assert_matches_history(sim, processed, symbol_id)  # each candle once, none missing
        assert len(processed) >= 12
    assert sum(p.stats.backfilled for p in desk.publishers) >= 2
    for consumer, engine in desk.engines.items():
        assert engine.portfolio is not None
        fills = await journal_fills(tmp_path / f"{consumer}.sqlite")
        assert fills == engine.portfolio.fills
        assert fills, f"engine {consumer} traded nothing"


async def test_run_takes_its_data_from_redis_when_the_config_says_so(
    mock_clock: MockClock,
    redis_server: RedisServer,  # noqa: F811
    tmp_path: Path,
) -> None:
    config = tmp_path / "engine.toml"
    # The exchange's own URLs lead nowhere: whatever the engine trades on came through Redis.
    config.write_text(
        '[exchanges.bingx]\nws_url = "ws://127.0.0.1:1/swap-market"\nrest_url = "http://127.0.0.1:1"\n\n'
        f'[data]\nsource = "{redis_server.url}"\nconsumer = "solo"\n'
        "read_wait = 0\npoll_interval = 0.5\ncommand_timeout = 120\n\n"
        f'[[strategies]]\ntype = "sma_crossover"\nsymbols = ["{SWAP}"]\nfast = 3\nslow = 8\nsize = 1000\n'
        'source = "tick"\nallow_short = true\n'
    )
    sim_config = SimConfig(symbols=tuple(SYMBOLS.values()), start_ms=START_MS, seed=11)
    async with open_simulator(sim_config) as sim, trio.open_nursery() as nursery:
        desk = Desk(sim, redis_server, tmp_path, nursery)
        desk.start_collector()
        summary = await run_command(config, 60.0, tmp_path / "journal.sqlite", Console(file=io.StringIO()))
        nursery.cancel_scope.cancel()
    assert summary.trades > 0
    assert summary.trades == len(await journal_fills(tmp_path / "journal.sqlite"))


# --- on Trio and asyncio --------------------------------------------------------------------------
# Real time: the simulator in a Trio thread of its own (sim_thread), a fast market (a one-minute
# candle every half second) and short leases, so each run lasts about three seconds.

FAST_MARKET = SimConfig(symbols=tuple(SYMBOLS.values()), start_ms=START_MS, seed=11, speed=120.0, push_interval=0.2)


@pytest.fixture(params=["trio", "asyncio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


class FailsOnItsSecondCandle:
    name = "fails"
    symbols = (SWAP,)
    timeframe = "1m"
    warmup = 0

    def __init__(self) -> None:
        self.candles = 0

    def on_kline(self, kline: Kline) -> list[Signal]:
        self.candles += 1
        if self.candles == 2:
            raise RuntimeError("a bug in the strategy")
        return []

    def on_tick(self, tick: Tick) -> list[Signal]:
        return []


async def test_a_strategy_that_fails_does_not_stop_its_stream_being_acknowledged(
    mock_clock: MockClock,
    redis_server: RedisServer,  # noqa: F811
    tmp_path: Path,
) -> None:
    # Found by a review: each strategy reported the candles it processed, a stream's entry was
    # acknowledged once all of its readers had; a strategy disabled after an error reported no
    # more, so nothing of its stream was acknowledged again, and a restart gave every candle
    # since to the other strategies a second time.
    sim_config = SimConfig(symbols=tuple(SYMBOLS.values()), start_ms=START_MS, seed=11)
    async with open_simulator(sim_config) as sim, trio.open_nursery() as nursery:
        desk = Desk(sim, redis_server, tmp_path, nursery)
        desk.start_collector()
        await trio.sleep(30)
        desk.start_engine("a", FailsOnItsSecondCandle())
        await trio.sleep(6 * 60)
        desk.kill("a")
        await trio.sleep(5)
        desk.start_engine("a")
        await trio.sleep(3 * 60)
        nursery.cancel_scope.cancel()
    assert_matches_history(sim, desk.seen[SWAP], "BTC-USDT")  # as received: no candle twice
    assert len(desk.seen[SWAP]) >= 7


@pytest.mark.anyio
async def test_an_engine_killed_and_restarted_on_redis_data_processes_each_candle_once_on_every_backend(
    anyio_backend: str,
    redis_server: RedisServer,  # noqa: F811
    tmp_path: Path,
) -> None:
    async with open_simulator(FAST_MARKET) as simulator:
        async with anyio.create_task_group() as tasks:
            desk = Desk(simulator, redis_server, tmp_path, tasks, REAL_TIME_SOURCE, REAL_TIME)
            desk.start_collector()
            await anyio.sleep(0.5)
            desk.start_engine("a")
            await anyio.sleep(1.2)
            desk.kill("a")  # down for a candle: its pending and new entries wait in Redis
            await anyio.sleep(0.5)
            desk.start_engine("a")
            await anyio.sleep(1.2)
            tasks.cancel_scope.cancel()
        for symbol, symbol_id in SYMBOLS.items():
            processed = sorted(desk.seen[symbol], key=lambda kline: kline.open_time)
            assert_matches_history(simulator, processed, symbol_id)
            assert len(processed) >= 4
    engine = desk.engines["a"]
    assert engine.portfolio is not None
    fills = await journal_fills(tmp_path / "a.sqlite")
    assert fills == engine.portfolio.fills
    assert fills, "the engine traded nothing"


@pytest.mark.anyio
async def test_a_redis_feed_closes_the_ccxt_client_it_fills_gaps_with_on_every_backend(
    anyio_backend: str,
    redis_server: RedisServer,  # noqa: F811
    tmp_path: Path,
) -> None:
    async with open_simulator(FAST_MARKET) as simulator:
        urls = {"ws_url": simulator.ws_url, "rest_url": simulator.rest_url}
        recorder = Recorder(SWAP, [])
        config = EngineConfig(
            exchanges={"ccxt:bingx": urls}, strategies=[recorder], journal=tmp_path / "journal.sqlite"
        )
        (client,) = config.clients.values()
        assert isinstance(client, CcxtExchange)
        settings = RedisSourceSettings(redis_server.url, **REAL_TIME_SOURCE)  # type: ignore[arg-type]
        async with RedisFeed(settings, config.clients).open() as source:
            assert isinstance(source, RedisMarketData)
            with anyio.fail_after(10):
                assert await client.fetch_klines(source.http, SWAP, "1m", limit=2)  # as a gap fill does
            assert client.client.session is not None
    assert client.client.session is None and client.client.clients == {}  # HTTP session and sockets closed
    assert not [t for t in threading.enumerate() if t.name.startswith("tradeloop ccxt")]
