"""Stream core v2: rejections raise, foreign clients cannot end the manager, errors leave as
themselves, the transport is a seam a connection can be tested through, logs stay quiet."""

from __future__ import annotations

import logging
import re
import socket
from contextlib import AsyncExitStack
from typing import ClassVar

import anyio.abc
import httpx
import pytest
import trio
import trio.testing
from streams_helpers import FAST, START_MS, SWAP, simulated_streams
from trio.testing import MockClock

from tradeloop import InvalidValueError, SubscriptionError, TradeloopError
from tradeloop.exchanges import ExchangeError, Topic, TopicKind
from tradeloop.exchanges.bingx import BingX
from tradeloop.models import Kline, Tick
from tradeloop.sim import SimConfig, open_simulator
from tradeloop.streams import StreamManager
from tradeloop.streams.connection import Connection, _Socket
from tradeloop.streams.errors import LogThrottle, describe
from tradeloop.streams.transport import ConnectError, Transport
from tradeloop.symbols import Market
from tradeloop.testing import TEST_STREAM_CONFIG


@pytest.fixture
def mock_clock() -> MockClock:
    return MockClock(autojump_threshold=0.002)


async def test_an_unknown_symbol_raises_subscription_error_promptly(mock_clock: MockClock) -> None:
    async with simulated_streams() as (_, streams):
        started = trio.current_time()
        doge = streams.klines("bingx", "DOGE/USDT:USDT", "1m")
        btc = streams.klines("bingx", SWAP, "1m")
        with pytest.raises(SubscriptionError) as info, trio.fail_after(5):
            await doge.receive()
        assert trio.current_time() - started < 5
        assert info.value.code == 80014 and "DOGE" in str(info.value)
        with trio.fail_after(60):
            assert (await btc.receive()).symbol == SWAP, "the socket's other topics are unaffected"
        health = streams.health()
    assert [t.topic.symbol for t in health.topics] == [SWAP], "the rejected topic was released upstream"


async def test_a_rejected_topic_can_be_asked_for_again(mock_clock: MockClock) -> None:
    async with simulated_streams() as (_, streams):
        for _ in range(2):
            with pytest.raises(SubscriptionError), trio.fail_after(5):
                await streams.ticks("bingx", "DOGE/USDT:USDT").receive()


class RaisingFetchOnly(BingX):
    """A foreign fetch-only client whose fetch fails with an exception type tradeloop never heard of."""

    supports_push: ClassVar[bool] = False
    failures_left = 3

    async def fetch_ticker(self, http: httpx.AsyncClient, symbol: str) -> Tick:
        if RaisingFetchOnly.failures_left:
            RaisingFetchOnly.failures_left -= 1
            raise KeyError("the client's own bug")
        return await super().fetch_ticker(http, symbol)


async def test_any_error_of_a_foreign_fetch_is_a_counted_rest_error(mock_clock: MockClock) -> None:
    async with open_simulator(SimConfig(symbols=("BTC-USDT",), start_ms=START_MS)) as sim:
        client = RaisingFetchOnly(rest_url=sim.rest_url)
        async with StreamManager.open([client], FAST) as streams:
            ticks = streams.ticks("bingx", SWAP)
            with trio.fail_after(120):
                tick = await ticks.receive()
            (topic,) = streams.health().topics
    assert tick.symbol == SWAP
    assert topic.rest_errors == 3 and "KeyError" not in {e.kind for e in topic.recent_errors}
    assert any("the client's own bug" in e.message for e in topic.recent_errors)


class UnlistingBingX(BingX):
    """An exchange that acknowledges any subscription, so its client validates symbols over REST."""

    async def check_symbol(self, http: httpx.AsyncClient, symbol: str) -> None:
        if not symbol.startswith("BTC/"):
            raise InvalidValueError(f"unknown symbol {symbol!r}: expected one of BTC/USDT:USDT")


async def test_a_symbol_the_exchange_does_not_list_is_rejected_by_validation(mock_clock: MockClock) -> None:
    async with open_simulator(SimConfig(symbols=("BTC-USDT", "ETH-USDT"), start_ms=START_MS)) as sim:
        client = UnlistingBingX(ws_url=sim.ws_url, rest_url=sim.rest_url)
        async with StreamManager.open([client], FAST) as streams:
            eth = streams.ticks("bingx", "ETH/USDT:USDT")
            with pytest.raises(SubscriptionError, match="unknown symbol 'ETH/USDT:USDT'"), trio.fail_after(5):
                await eth.receive()


async def test_an_error_in_the_body_leaves_as_itself(mock_clock: MockClock) -> None:
    with pytest.raises(ValueError, match="strategy bug") as info:
        async with simulated_streams() as (_, streams):
            streams.klines("bingx", SWAP, "1m")
            await trio.sleep(1)
            raise ValueError("strategy bug")
    assert not isinstance(info.value, BaseExceptionGroup)


async def test_ctrl_c_leaves_as_keyboard_interrupt(mock_clock: MockClock) -> None:
    with pytest.raises(KeyboardInterrupt):
        async with simulated_streams() as (_, streams):
            streams.klines("bingx", SWAP, "1m")
            await trio.sleep(1)
            raise KeyboardInterrupt


@pytest.mark.parametrize(
    ("urls", "message"),
    [
        ({"ws_url": "http://127.0.0.1:1/swap-market"}, r"BingX ws_url 'http://127.0.0.1:1/swap-market': expected wss://"),
        ({"spot_ws_url": "ws://127.0.0.1:99999/market"}, r"BingX spot_ws_url '.*': port out of range 0-65535"),
        ({"rest_url": "ftp://127.0.0.1:1"}, r"BingX rest_url 'ftp://127.0.0.1:1': expected https://"),
        ({"rest_url": "http:///no-host"}, r"BingX rest_url 'http:///no-host': expected"),
    ],
)
def test_a_bad_url_is_one_clear_error_when_the_client_is_made(urls: dict[str, str], message: str) -> None:
    # Not at first use: a bad REST URL would only show as failed warm-up fetches much later.
    with pytest.raises(InvalidValueError, match=message):
        BingX(**urls)


async def test_a_refused_connection_is_named_in_health(mock_clock: MockClock) -> None:
    client = BingX(ws_url="ws://127.0.0.1:1/swap-market", rest_url="http://127.0.0.1:1")
    async with StreamManager.open([client], FAST) as streams:
        streams.klines("bingx", SWAP, "1m")
        await trio.sleep(3)
        (connection,) = streams.health().connections
    assert connection.recent_errors and "refused" in connection.recent_errors[-1].message
    assert connection.recent_errors[-1].kind == "ConnectError"


async def test_transport_errors_are_ours() -> None:
    transport = Transport(connect_timeout=5)
    with pytest.raises(ConnectError, match="DNS") as info:
        async with transport.connect("ws://no-such-host.invalid/ws"):
            pass
    assert isinstance(info.value, TradeloopError)


async def test_a_connection_runs_over_an_in_memory_stream_pair(mock_clock: MockClock) -> None:
    """The transport seam: the simulator's socket handler on one end of a socket pair (in memory,
    no address), the StreamManager's connection on the other, no network at all."""
    async with (
        open_simulator(SimConfig(symbols=("BTC-USDT",), start_ms=START_MS)) as sim,
        trio.open_nursery() as server,
    ):
        opened: list[tuple[str, int]] = []

        async def open_in_memory(host: str, port: int, tls: bool) -> anyio.abc.ByteStream:
            client_end, server_end = socket.socketpair()
            opened.append((host, port))
            server.start_soon(sim.handle_websocket, await anyio.abc.SocketStream.from_socket(server_end))
            return await anyio.abc.SocketStream.from_socket(client_end)

        transport = Transport(open_stream=open_in_memory)
        client = BingX(ws_url="ws://in-memory:1/swap-market", rest_url=sim.rest_url)
        async with StreamManager.open([client], FAST, transport=transport) as streams:
            klines = streams.klines("bingx", SWAP, "1m")
            with trio.fail_after(120):
                first: Kline = await klines.receive()
    assert opened == [("in-memory", 1)] and first.symbol == SWAP


def test_log_throttle_admits_one_line_per_key_per_interval_with_a_count() -> None:
    clock = MockClock(autojump_threshold=0)

    async def flood() -> list[int | None]:
        throttle = LogThrottle(60.0)
        seen = [throttle.admit("bad_json") for _ in range(100)]
        seen.append(throttle.admit("bad_gzip"))
        await trio.sleep(61)
        seen.append(throttle.admit("bad_json"))
        return seen

    seen = trio.run(flood, clock=clock)
    assert seen[0] == 1 and seen[1:100] == [None] * 99
    assert seen[100] == 1 and seen[101] == 100, "the next line covers the 99 held back and itself"


async def test_parse_errors_are_logged_at_most_once_per_kind_per_minute(
    mock_clock: MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "tradeloop.streams")
    async with simulated_streams() as (sim, streams):
        streams.klines("bingx", SWAP, "1m")
        await trio.sleep(5)
        sim.faults.malformed_rate = 1.0
        await trio.sleep(30)
        errors = streams.health().total_parse_errors
    lines = [r.getMessage() for r in caplog.records if "malformed frame" in r.getMessage()]
    kinds = [kind for line in lines for kind in re.findall(r"frame\(s\) \((\w+)\)", line)]
    assert errors > 10
    assert lines and len(kinds) == len(set(kinds)), f"{errors} malformed frames logged in {len(lines)} lines"


def test_a_foreign_error_is_recorded_with_the_cause_that_says_more() -> None:
    def ccxt_style() -> Exception:
        try:
            try:
                raise OSError(None, "Domain name not found")
            except OSError as dns:
                raise ConnectionError("Cannot connect to host www.okx.com:443 [Domain name not found]") from dns
        except ConnectionError as connector:
            error = RuntimeError("okx GET https://www.okx.com/api/v5/public/instruments")
            error.__cause__ = connector
            return error

    assert describe(ccxt_style()) == (
        "okx GET https://www.okx.com/api/v5/public/instruments: Cannot connect to host www.okx.com:443 "
        "[Domain name not found]"
    )
    assert describe(ValueError("bad: Domain name not found")) == "bad: Domain name not found"
    ours = ExchangeError(500, "Internal Server Error")
    ours.__cause__ = OSError("detail")
    assert describe(ours) == str(ours)  # tradeloop's own errors name their cause already
    assert describe("text") == "text"


async def test_a_subscription_request_cut_short_is_asked_again() -> None:
    # A handover cancels its writer once the new socket has taken over, or at its deadline; a
    # request cut short there must not leave its topic counted as subscribed, silent for good.
    class StuckSocket:
        async def send_text(self, text: str) -> None:
            await trio.sleep_forever()

    bingx = BingX()
    connection = Connection(
        "bingx", bingx, Market.SWAP, Market.SWAP, TEST_STREAM_CONFIG, Transport(), lambda c: None, lambda c, t, r: None
    )
    topic = Topic(TopicKind.KLINE, "BTC/USDT:USDT", "1m")
    socket = _Socket(StuckSocket(), bingx.new_codec(Market.SWAP), AsyncExitStack(), [topic], trio.current_time())  # type: ignore[arg-type]
    with trio.move_on_after(0.05):
        await connection._write_requests(socket)
    assert topic in socket.to_subscribe and topic not in socket.subscribed and not socket.pending_acks


async def test_health_lists_each_error_once_however_many_topics_share_the_socket(mock_clock: MockClock) -> None:
    nowhere = BingX(ws_url="ws://127.0.0.1:1/swap-market", rest_url="http://127.0.0.1:1")
    async with StreamManager.open({"bingx": nowhere}, FAST) as streams:
        subscriptions = [streams.klines("bingx", SWAP, "1m"), streams.ticks("bingx", SWAP)]
        await trio.sleep(5)
        health = streams.health()
        for subscription in subscriptions:
            subscription.close()
    records = health.recent_errors
    assert records and len(records) == len(set(records))
    assert health.waiting and health.last_error == records[-1]
