"""tradeloop's pytest plugin: the embedded exchange as fixtures (registered through ``pytest11``).

Fixtures (each test gets its own, torn down when it ends):

- ``tradeloop_clock``: a ``trio.testing.MockClock`` that jumps ahead whenever every task waits.
  Take it as an argument of the test function: pytest-trio runs a test on a clock only if the
  test function itself requests it.
- ``tradeloop_sim``: a running :class:`~tradeloop.sim.Simulator`, configured by
  ``@pytest.mark.tradeloop_sim(symbols=[...], seed=..., ...)``: every keyword is a
  :class:`~tradeloop.sim.SimConfig` field of the installed tradeloop, plus ``real_clock=True``
  (run in real time on purpose) and ``timeout`` (seconds of the test's clock after which the test
  fails instead of waiting on; default one simulated hour).
- ``tradeloop_streams``: a :class:`~tradeloop.streams.StreamManager` on that simulator, with
  ``tradeloop_stream_config`` (override that fixture to change it; default
  :data:`tradeloop.testing.TEST_STREAM_CONFIG`).

Only tests that use these fixtures are touched: an ``async def`` test using them is run by
pytest-trio even without ``trio_mode`` (it gets the ``trio`` mark), and every other test runs as
it would without this plugin. (Loading the plugin imports tradeloop, as importing any of its
modules does: pytest starts that much later in an environment where tradeloop is installed.)
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from inspect import iscoroutinefunction
from typing import Any

import pytest
import trio
from trio.testing import MockClock

from .._groups import leaves
from ..errors import InvalidValueError
from ..sim import SimConfig, Simulator, open_simulator
from ..streams import StreamConfig, StreamManager
from . import TEST_STREAM_CONFIG, ClockMisuseError, check_clock, register_simulator

KIT_FIXTURES = frozenset({"tradeloop_sim", "tradeloop_streams"})
PLUGIN_OPTIONS = ("real_clock", "timeout")
DEFAULT_TIMEOUT = 3600.0
"""Seconds of the test's clock a kit test may run: an hour of one-minute candles is more than a
test needs, and a test stuck waiting for something that never comes reaches it in about 15 s of
real time (measured here: 14 s with a kline and a ticker subscription open)."""
START_MS = 1_767_225_600_000
"""2026-01-01T00:00:00Z: a fixed start (unless the marker sets ``start_ms``), so a test with a
given seed sees the same candles on every run."""
AUTOJUMP_THRESHOLD = 0.002
"""Real seconds every task must wait before the clock jumps: long enough for loopback I/O to land."""


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "tradeloop_sim(**options): configure the tradeloop_sim fixture: SimConfig fields (symbols, seed, "
        "start_ms, ...), real_clock=True to run in real time on purpose, timeout=SECONDS of the test's clock",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if not isinstance(item, pytest.Function) or not KIT_FIXTURES.intersection(item.fixturenames):
            continue
        if not config.pluginmanager.has_plugin("trio"):
            raise pytest.UsageError(
                f"{item.nodeid} uses tradeloop's fixtures, which run in Trio: install pytest-trio "
                "(pip install 'tradeloop[testing]')"
            )
        test = getattr(getattr(item.obj, "hypothesis", None), "inner_test", item.obj)
        if iscoroutinefunction(test) and item.get_closest_marker("trio") is None:
            item.add_marker(pytest.mark.trio)


@pytest.hookimpl(wrapper=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> object:
    """A kit fixture's own error, as itself: pytest-trio runs fixtures in a nursery, whose
    ExceptionGroup would hide "this test runs on trio's real clock" one level down."""
    try:
        return (yield)
    except BaseExceptionGroup as group:
        if KIT_FIXTURES.intersection(pyfuncitem.fixturenames):
            inside = leaves(group)
            if len(inside) == 1 and isinstance(inside[0], _KIT_ERRORS):
                raise inside[0] from None
        raise


_KIT_ERRORS = (ClockMisuseError, InvalidValueError, trio.TooSlowError)
"""What the kit's fixtures raise themselves."""


@pytest.fixture
def tradeloop_clock() -> MockClock:
    """A MockClock that jumps to the next deadline once every task has waited 2 ms of real time."""
    return MockClock(autojump_threshold=AUTOJUMP_THRESHOLD)


@pytest.fixture
def tradeloop_stream_config() -> StreamConfig:
    """The ``StreamConfig`` of ``tradeloop_streams``: override this fixture to change it."""
    return TEST_STREAM_CONFIG


@pytest.fixture
async def tradeloop_sim(request: pytest.FixtureRequest) -> AsyncIterator[Simulator]:
    """The embedded exchange, running for the test; configured by ``@pytest.mark.tradeloop_sim``."""
    config, real_clock, timeout = _marker_options(request)
    try:
        clock = check_clock(real_clock=real_clock)
    except ClockMisuseError as exc:
        raise ClockMisuseError(f"{exc}{_unrequested_clocks(request)}") from None
    async with open_simulator(config) as sim:
        register_simulator(sim, clock)
        # Cancelling this scope cancels the test (pytest-trio's wait for it runs inside the scope).
        with trio.CancelScope(deadline=trio.current_time() + timeout) as deadline:
            yield sim
    if deadline.cancelled_caught:
        raise trio.TooSlowError(
            f"tradeloop_sim: the test still runs after {timeout:g} seconds of its clock; it probably waits for "
            "something that never comes (raise the limit with @pytest.mark.tradeloop_sim(timeout=SECONDS))"
        )


@pytest.fixture
async def tradeloop_streams(
    tradeloop_sim: Simulator, tradeloop_stream_config: StreamConfig
) -> AsyncIterator[StreamManager]:
    """A StreamManager connected to ``tradeloop_sim`` (the exchange it simulates, under its name)."""
    async with StreamManager.open([tradeloop_sim.exchange()], tradeloop_stream_config) as streams:
        yield streams


def _marker_options(request: pytest.FixtureRequest) -> tuple[SimConfig, bool, float]:
    """The SimConfig, ``real_clock`` and ``timeout`` the test's marker asks for.

    An option the installed SimConfig lacks is an error naming it, never silently ignored: options
    such as ``exchange`` or ``speed`` exist only in tradeloop versions whose simulator has them.
    """
    marker = request.node.get_closest_marker("tradeloop_sim")
    options: dict[str, Any] = dict(marker.kwargs) if marker is not None else {}
    if marker is not None and marker.args:
        raise InvalidValueError(
            f"@pytest.mark.tradeloop_sim takes keyword options only, got {marker.args!r}: e.g. symbols=['BTC-USDT']"
        )
    real_clock = options.pop("real_clock", False)
    timeout = options.pop("timeout", DEFAULT_TIMEOUT)
    if not isinstance(real_clock, bool):
        raise InvalidValueError(f"invalid tradeloop_sim real_clock {real_clock!r}: expected True or False")
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0:
        raise InvalidValueError(f"invalid tradeloop_sim timeout {timeout!r}: expected a positive number of seconds")
    fields = [field.name for field in dataclasses.fields(SimConfig)]
    for name in options:
        if name not in fields:
            raise InvalidValueError(
                f"unsupported tradeloop_sim option {name!r}: the installed tradeloop's SimConfig has no such "
                f"field (it has {', '.join(fields)}; the marker also takes {', '.join(PLUGIN_OPTIONS)})"
            )
    options.setdefault("start_ms", START_MS)
    return SimConfig(**options), real_clock, float(timeout)


def _unrequested_clocks(request: pytest.FixtureRequest) -> str:
    """A note naming the fixtures that made a clock the test function did not take."""
    funcargs: dict[str, object] = getattr(request.node, "funcargs", {})
    names = [name for name, value in funcargs.items() if isinstance(value, trio.abc.Clock)]
    if not names:
        return ""
    listed = ", ".join(repr(name) for name in names)
    return f" (fixture {listed} makes a clock, but the test function does not take it as an argument)"
