"""Test kit: the embedded exchange in your own tests, with fault injection and the truth to compare.

Installed with tradeloop as a pytest plugin (:mod:`tradeloop.testing.plugin`): a test that takes
the ``tradeloop_sim`` or ``tradeloop_streams`` fixture gets a running simulator (and a
``StreamManager`` on it); every other test is left alone. This module holds what such a test calls:

    from tradeloop.testing import assert_candles_match, closed_klines, faults

    async def test_every_candle_despite_a_disconnect(tradeloop_clock, tradeloop_sim, tradeloop_streams):
        async with tradeloop_streams.klines("bingx", "BTC/USDT:USDT", "1m") as candles:
            before = await closed_klines(candles, 2)
            tradeloop_sim.faults.drop_all()
            after = await closed_klines(candles, 3)
        assert_candles_match(tradeloop_sim, before + after)

Time is the test's Trio clock: ``tradeloop_clock`` is a ``MockClock`` that jumps ahead whenever
every task waits, so simulated minutes pass in milliseconds. The kit refuses to run the simulator
on the real clock unless the test asks for it (``real_clock=True``): that mistake used to look like
a silent hang.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from weakref import WeakKeyDictionary

import trio
import trio.testing

from ..errors import InvalidValueError, TradeloopError
from ..models import Kline
from ..sim import Simulator
from ..streams import StreamConfig
from ..symbols import next_open_time, parse_symbol

__all__ = [
    "TEST_STREAM_CONFIG",
    "ClockMisuseError",
    "assert_candles_match",
    "check_clock",
    "closed_klines",
    "faults",
    "register_simulator",
]

TEST_STREAM_CONFIG = StreamConfig(
    stall_timeout=10.0,
    reconnect_delay=0.5,
    reconnect_delay_max=2.0,
    rest_poll_interval=1.0,
    rest_retry_delay=0.5,
    rest_retry_delay_max=2.0,
)
"""Stream settings for tests: the production defaults wait up to a minute between reconnects,
which costs nothing in simulated time but makes a failing test's log long; these keep every
recovery within a few simulated seconds."""

_REAL_CLOCK_HINT = (
    "take a clock as an argument of the test function itself, e.g. "
    "`async def test_x(tradeloop_clock, tradeloop_sim): ...` (pytest-trio uses only a clock the test "
    "function requests directly, not one a fixture or conftest.py requests), "
    "or mark the test @pytest.mark.tradeloop_sim(real_clock=True) to run in real time on purpose"
)


class ClockMisuseError(TradeloopError, RuntimeError):
    """The simulator would run on a clock that makes the test hang or crawl.

    Raised instead of letting a test wait minutes of real time for simulated candles.
    """


_started_under: WeakKeyDictionary[Simulator, trio.abc.Clock | None] = WeakKeyDictionary()
"""The clock each kit-started simulator runs on (None: the real clock, on purpose)."""


def check_clock(*, real_clock: bool = False, context: str = "tradeloop_sim") -> trio.abc.Clock | None:
    """The current Trio clock if the simulator may run on it; ClockMisuseError if not.

    Allowed: a ``MockClock`` that advances by itself (autojump or a rate), or any clock with
    ``real_clock=True``. Returns None for the real clock chosen on purpose.
    """
    clock = trio.lowlevel.current_clock()
    if real_clock:
        return clock if isinstance(clock, trio.testing.MockClock) else None
    if not isinstance(clock, trio.testing.MockClock):
        raise ClockMisuseError(
            f"{context}: this test runs on trio's real clock, so every simulated minute would take a "
            f"real minute; {_REAL_CLOCK_HINT}"
        )
    if clock.autojump_threshold == math.inf and clock.rate == 0:
        raise ClockMisuseError(
            f"{context}: the test's MockClock never advances by itself (no autojump_threshold, rate 0), "
            "so the simulator would wait forever; use the tradeloop_clock fixture, or "
            "MockClock(autojump_threshold=0.002)"
        )
    return clock


def register_simulator(sim: Simulator, clock: trio.abc.Clock | None) -> None:
    """Remember the clock ``sim`` was started on, for :func:`closed_klines` to check."""
    _started_under[sim] = clock


def _check_same_clock(sim: Simulator | None, context: str) -> None:
    if sim is None or sim not in _started_under:
        return
    started = _started_under[sim]
    current = trio.lowlevel.current_clock()
    if started is not None and current is not started:
        raise ClockMisuseError(
            f"{context}: the simulator was started on another Trio clock than the one this code runs "
            "on (another trio.run, or a clock set up outside the test), so their times never meet; "
            "start it inside the test run, through the tradeloop_sim fixture"
        )


async def closed_klines(
    candles: trio.abc.ReceiveChannel[Kline],
    count: int,
    *,
    timeout: float = 3600.0,  # noqa: ASYNC109 - bounded by default: a candle that never comes must fail the test
    sim: Simulator | None = None,
) -> list[Kline]:
    """Receive from a kline subscription until ``count`` closed candles came; return them in order.

    Open-candle updates are skipped. ``timeout`` is in seconds of the test's clock (simulated
    seconds under ``tradeloop_clock``); past it ``trio.TooSlowError``, so a test that waits for a
    candle that never comes fails instead of hanging. With ``sim``, also checks that this code
    runs on the clock the simulator was started on (ClockMisuseError if not).
    """
    _check_same_clock(sim, "closed_klines")
    closed: list[Kline] = []
    with trio.fail_after(timeout):
        while len(closed) < count:
            kline = await candles.receive()
            if kline.closed:
                closed.append(kline)
    return closed


def assert_candles_match(sim: Simulator, closed: Sequence[Kline], symbol_id: str | None = None) -> None:
    """Assert ``closed`` holds each candle exactly once, in order, without a gap, with the values
    the simulator says the candle closed with (``sim.candles()``, the truth).

    ``symbol_id`` is the simulator's id of the symbol (default: ``BASE-QUOTE`` of the klines'
    unified symbol, as the BingX simulator names it). Raises AssertionError naming the first
    missing, duplicated, out-of-order or differing candle.
    """
    assert closed, "no closed candle received"
    first = closed[0]
    if symbol_id is None:
        info = parse_symbol(first.symbol)
        symbol_id = f"{info.base}-{info.quote}"
    expected_time = first.open_time
    for kline in closed:
        assert kline.closed, f"candle {kline.open_time} is not closed"
        assert (kline.symbol, kline.timeframe) == (first.symbol, first.timeframe), "klines of several topics"
        assert kline.open_time == expected_time, (
            f"expected the candle opening at {expected_time}, got {kline.open_time}: "
            "a candle is missing, duplicated or out of order"
        )
        expected_time = next_open_time(first.timeframe, expected_time)
    truth = {c.open_time: c for c in sim.candles(symbol_id, first.timeframe, first.open_time, closed[-1].open_time)}
    for kline in closed:
        want = truth.get(kline.open_time)
        assert want is not None and want.closed, f"the simulator has no closed candle at {kline.open_time}"
        got_values = (kline.open, kline.high, kline.low, kline.close, kline.volume)
        want_values = (want.open, want.high, want.low, want.close, want.volume)
        assert got_values == want_values, (
            f"candle {kline.open_time} differs from the exchange's: got (open, high, low, close, volume) "
            f"{got_values}, the simulator closed it at {want_values}"
        )


@contextmanager
def faults(sim: Simulator, **switches: object) -> Iterator[None]:
    """Switch faults on for the ``with`` block, off again when it ends (even on error).

    Each keyword is a name :meth:`tradeloop.sim.Faults.set` accepts, with its value:
    ``faults(sim, malformed_rate=0.05)``, ``faults(sim, rest_down="503")``,
    ``faults(sim, stall="silent")``, ``faults(sim, duplicate_rate=0.3, reorder_rate=0.3)``.
    A one-off disconnect needs no block: ``sim.faults.drop_all()``. InvalidValueError naming a
    bad fault or value (the faults already switched are switched off again).
    """
    for name in switches:
        if name in ("drop_all", "clear"):
            raise InvalidValueError(f"invalid fault {name!r} for faults(): it is an action, call sim.faults.{name}()")
    switched: list[str] = []
    try:
        for name, value in switches.items():
            sim.faults.set(name, str(value))
            switched.append(name)
        yield
    finally:
        for name in switched:
            sim.faults.set(name, "off" if name not in _RATE_NAMES else "0")


_RATE_NAMES = frozenset({"malformed_rate", "duplicate_rate", "reorder_rate"})
