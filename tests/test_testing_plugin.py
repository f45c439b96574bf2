"""The pytest plugin as a user meets it: test files in a fresh directory, run by pytest in a subprocess.

The plugin is installed with tradeloop (``pytest11`` entry point), so these runs load it exactly as
a user's project would: no conftest.py of ours, no ``-p`` option.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import trio
from trio.testing import MockClock

from tradeloop.sim import SimConfig, open_simulator
from tradeloop.testing import ClockMisuseError, closed_klines, faults, register_simulator

EXAMPLE = Path(__file__).parent.parent / "examples" / "test_with_the_simulator.py"


def run_pytest(directory: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """pytest in ``directory`` as a user runs it, bounded so that a hang fails instead of waiting."""
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "COLUMNS": "250"},  # summary lines long enough to show each error's type
    )


@pytest.fixture
def mock_clock() -> MockClock:
    return MockClock(autojump_threshold=0.002)


def test_the_example_file_passes_in_a_fresh_directory_without_trio_mode(tmp_path: Path) -> None:
    (tmp_path / EXAMPLE.name).write_text(EXAMPLE.read_text())
    result = run_pytest(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 passed" in result.stdout


def test_the_fixtures_work_under_trio_mode_too(tmp_path: Path) -> None:
    (tmp_path / "pytest.ini").write_text("[pytest]\ntrio_mode = true\nfilterwarnings = error\n")
    (tmp_path / EXAMPLE.name).write_text(EXAMPLE.read_text())
    result = run_pytest(tmp_path, "-k", "disconnect")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout


def test_without_pytest_trio_the_fixtures_are_a_usage_error_naming_it(tmp_path: Path) -> None:
    (tmp_path / EXAMPLE.name).write_text(EXAMPLE.read_text())
    result = run_pytest(tmp_path, "-p", "no:trio", "-k", "disconnect")
    assert result.returncode == pytest.ExitCode.USAGE_ERROR, result.stdout + result.stderr
    assert "which run in Trio: install pytest-trio" in result.stderr


MISUSES = """
import pytest
import trio
from trio.testing import MockClock


@pytest.fixture
def mock_clock():
    return MockClock(autojump_threshold=0.002)


@pytest.fixture
def still_clock():
    return MockClock()


@pytest.fixture
def symbols(mock_clock):
    return ["BTC-USDT"]


async def test_no_clock(tradeloop_sim):
    pass


async def test_clock_requested_by_a_fixture_only(symbols, tradeloop_sim):
    pass


async def test_clock_that_never_moves(still_clock, tradeloop_sim):
    pass


@pytest.mark.tradeloop_sim(warp=2)
async def test_unknown_option(tradeloop_clock, tradeloop_sim):
    pass


@pytest.mark.tradeloop_sim(timeout=300)
async def test_waits_forever(tradeloop_clock, tradeloop_sim):
    await trio.sleep_forever()


@pytest.mark.tradeloop_sim(real_clock=True, symbols=["ETH-USDT"])
async def test_real_clock_on_purpose(tradeloop_sim):
    assert tradeloop_sim.config.symbols == ("ETH-USDT",)
    assert abs(tradeloop_sim.now_ms() - 1_767_225_600_000) < 60_000  # the kit's fixed start, a moment ago
"""


def test_misuses_fail_at_once_with_an_explanation(tmp_path: Path) -> None:
    (tmp_path / "test_misuses.py").write_text(MISUSES)
    result = run_pytest(tmp_path, "--tb=short", "-rA")
    output = result.stdout + result.stderr
    assert "5 failed, 1 passed" in result.stdout, output
    assert "ExceptionGroup" not in output  # the fixtures' own errors, not pytest-trio's nursery around them
    assert "PASSED test_misuses.py::test_real_clock_on_purpose" in output
    for test, error in [
        ("test_no_clock", "ClockMisuseError"),
        ("test_clock_requested_by_a_fixture_only", "ClockMisuseError"),
        ("test_clock_that_never_moves", "ClockMisuseError"),
        ("test_unknown_option", "InvalidValueError"),
        ("test_waits_forever", "TooSlowError"),
    ]:
        assert re.search(rf"FAILED test_misuses.py::{test} - [\w.]*\b{error}", output), (test, output)
    assert "this test runs on trio's real clock" in output
    assert "fixture 'mock_clock' makes a clock, but the test function does not take it" in output
    assert "the test's MockClock never advances by itself" in output
    assert "unsupported tradeloop_sim option 'warp'" in output
    assert "the test still runs after 300 seconds of its clock" in output


SIM_OPTIONS = """
import pytest

@pytest.mark.tradeloop_sim(exchange="bingx", speed=2.0)
async def test_options(tradeloop_clock, tradeloop_sim):
    assert (tradeloop_sim.config.exchange, tradeloop_sim.config.speed) == ("bingx", 2.0)
"""


def test_exchange_and_speed_reach_the_simulator_or_are_named_as_unsupported(tmp_path: Path) -> None:
    (tmp_path / "test_options.py").write_text(SIM_OPTIONS)
    result = run_pytest(tmp_path, "--tb=line")
    missing = [name for name in ("exchange", "speed") if name not in SimConfig.__dataclass_fields__]
    if missing:
        assert f"unsupported tradeloop_sim option {missing[0]!r}" in result.stdout, result.stdout
    else:
        assert result.returncode == 0, result.stdout


UNRELATED = """
import pytest

def test_sync():
    assert True

async def test_async_without_a_runner():
    pass

@pytest.mark.parametrize("n", [1, 2])
def test_param(n):
    assert n
"""


def test_a_project_not_using_the_fixtures_runs_as_without_the_plugin(tmp_path: Path) -> None:
    (tmp_path / "test_unrelated.py").write_text(UNRELATED)
    with_plugin = run_pytest(tmp_path, "-rA")
    without_plugin = run_pytest(tmp_path, "-rA", "-p", "no:tradeloop")
    assert "no:tradeloop" not in without_plugin.stderr
    last_line = with_plugin.stdout.strip().splitlines()[-1]
    assert "3 passed" in last_line
    assert with_plugin.returncode == without_plugin.returncode
    assert with_plugin.stdout.split(" in ")[0] == without_plugin.stdout.split(" in ")[0]


async def test_a_simulator_started_on_another_clock_is_refused(mock_clock: MockClock) -> None:
    async with open_simulator(SimConfig(symbols=("BTC-USDT",))) as sim:
        register_simulator(sim, MockClock())
        send, receive = trio.open_memory_channel[object](1)
        async with send, receive:
            with pytest.raises(ClockMisuseError, match="started on another Trio clock"):
                await closed_klines(receive, 1, sim=sim)  # type: ignore[arg-type]


async def test_faults_are_switched_off_when_the_block_ends_even_on_error(mock_clock: MockClock) -> None:
    async with open_simulator(SimConfig(symbols=("BTC-USDT",))) as sim:
        with pytest.raises(ZeroDivisionError), faults(sim, malformed_rate=0.5, rest_down="close", stall="silent"):
            assert sim.faults.malformed_rate == 0.5 and sim.faults.stalled and not sim.faults.sends_pings
            1 / 0  # noqa: B018
        assert (sim.faults.malformed_rate, sim.faults.rest_down, sim.faults.stalled) == (0.0, None, False)
        with pytest.raises(ValueError, match="drop_all"), faults(sim, drop_all=True):
            pass
