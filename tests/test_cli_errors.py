"""Every user mistake through ``tradeloop``'s entry point is one line on stderr and a non-zero exit
status (2 for usage, 1 at run time); Ctrl-C and a closed stdout end quietly.

In-process (``main([...])``) wherever no signal is involved, to keep the suite fast.
"""

from __future__ import annotations

import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from functools import partial
from importlib.metadata import version
from pathlib import Path

import pytest
import trio
from signal_helpers import default_sigint

from tradeloop.cli import EXIT_BROKEN_PIPE, EXIT_INTERRUPTED, main
from tradeloop.sim import SimConfig, open_simulator

V1_JOURNAL = Path(__file__).parent / "data" / "journal-v1.sqlite"


def one_line(capsys: pytest.CaptureFixture[str]) -> str:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    return lines[0]


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield listener.getsockname()[1]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--log-level", "bogus", "sim"], "invalid log level 'bogus'"),
        (["watch", "bingx", "BTC-USDT", "--ticker", "--ws-url", "http://127.0.0.1:9/x"], "expected ws://"),
        (["watch", "bingx", "BTC-USDT", "--ticker", "--ws-url", "ws://127.0.0.1:99999/x"], "port out of range"),
        (["watch", "bingx", "BTC-USDT", "--ticker", "--rest-url", "ftp://host"], "expected http://"),
        (["watch", "bingx", "BTC-USDT", "--ticker", "--first-data-timeout", "-1"], "invalid duration '-1'"),
        (["watch", "bingx", "BTC-USDT", "--ticker", "--closed-only"], "--closed-only applies to klines"),
        (["watch", "bingx", "BTC-USDT"], "one of the arguments --timeframe --ticker is required"),
        (["run", "--duration", "-5"], "invalid duration '-5'"),
        (["run", "--config", "/nonexistent/tradeloop.toml"], "cannot read config file"),
        (["sim", "--ws-port", "70000"], "invalid port 70000"),
        (["sim", "--fault", "no_such_fault"], "no_such_fault"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        ([], "the following arguments are required: command"),
    ],
)
def test_usage_mistakes_exit_2_with_one_line(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    line = one_line(capsys)
    assert line.startswith("tradeloop") and message in line


def test_a_busy_port_is_one_line(busy_port: int, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sim", "--ws-port", str(busy_port)]) == 1
    line = one_line(capsys)
    assert line.startswith("tradeloop sim: cannot listen on 127.0.0.1") and f"WebSocket port {busy_port}" in line


@pytest.mark.parametrize("command", ["run", "sim"])
def test_a_busy_metrics_port_names_the_address(
    command: str, busy_port: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [command, "--metrics-port", str(busy_port)]
    if command == "run":
        argv += ["--journal", str(tmp_path / "j.sqlite"), "--duration", "5"]
    assert main(argv) == 1
    line = one_line(capsys)
    assert line == f"tradeloop {command}: cannot listen for metrics on 127.0.0.1:{busy_port}: address already in use"


def test_a_metrics_host_not_of_this_machine_names_the_address(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sim", "--metrics-host", "192.0.2.1", "--metrics-port", "9"]) == 1  # TEST-NET-1: never ours
    expected = "tradeloop sim: cannot listen for metrics on 192.0.2.1:9: cannot assign requested address"
    assert one_line(capsys) == expected


def test_an_unknown_host_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sim", "--host", "no-such-host.invalid"]) == 1
    assert one_line(capsys).startswith("tradeloop sim: cannot listen on host 'no-such-host.invalid'")


def test_a_journal_row_that_cannot_be_read_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    journal = tmp_path / "journal.sqlite"
    shutil.copyfile(V1_JOURNAL, journal)
    with sqlite3.connect(journal) as connection:
        connection.execute("UPDATE fills SET side = 'sideways' WHERE seq = 1")
    connection.close()
    assert main(["run", "--journal", str(journal), "--duration", "1"]) == 1
    line = one_line(capsys)
    assert "is corrupt: a row cannot be read" in line and "locked" not in line


def test_a_journal_in_a_missing_directory_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--journal", str(tmp_path / "missing" / "j.sqlite"), "--duration", "1"]) == 1
    assert "cannot be opened: No such file or directory" in one_line(capsys)


async def test_watch_no_data_names_the_last_error(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["watch", "bingx", "BTC-USDT", "--ticker", "--ws-url", "ws://127.0.0.1:9/x", "--rest-url"]
    argv += ["http://127.0.0.1:9", "--first-data-timeout", "1.5"]
    assert await trio.to_thread.run_sync(main, argv) == 1
    line = one_line(capsys)
    assert line.startswith("tradeloop watch: no data from bingx for BTC/USDT:USDT within 1.5 s; last error:")
    assert "127.0.0.1:9" in line


async def test_watch_of_an_unknown_symbol_fails_at_once_with_the_exchanges_message(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The simulator rejects the subscription (code 80014): one line naming the symbol and what the
    exchange said, status 1, within seconds though --first-data-timeout allows a minute."""
    async with open_simulator(SimConfig(symbols=["BTC-USDT"])) as sim:
        argv = ["--log-level", "critical", "watch", "bingx", "DOGE/USDT:USDT", "--timeframe", "1m"]
        argv += ["--ws-url", sim.ws_url, "--rest-url", sim.rest_url, "--first-data-timeout", "60"]
        with trio.fail_after(5):
            assert await trio.to_thread.run_sync(main, argv) == 1
    line = one_line(capsys)
    assert line.startswith("tradeloop watch: ") and "DOGE" in line
    assert "80014" in line and "invalid params" in line, "the exchange's code and message"


def _watch_process(ws_url: str, rest_url: str) -> list[str]:
    watch = ["watch", "bingx", "BTC-USDT", "--ticker", "--ws-url", ws_url, "--rest-url", rest_url]
    return [sys.executable, "-m", "tradeloop.cli", *watch]


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals and pipes")
async def test_watch_ctrl_c_exits_130_quietly_and_a_closed_pipe_141() -> None:
    async with open_simulator(SimConfig(symbols=["BTC-USDT"])) as sim:
        command = _watch_process(sim.ws_url, sim.rest_url)
        run = partial(
            trio.run_process,
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            check=False,
            preexec_fn=default_sigint,
        )
        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                interrupted: trio.Process = await nursery.start(run)
                piped: trio.Process = await nursery.start(run)
                for process in (interrupted, piped):
                    assert process.stdout is not None
                    assert b'"type":"tick"' in await process.stdout.receive_some()
                interrupted.send_signal(signal.SIGINT)
                assert piped.stdout is not None
                await piped.stdout.aclose()  # `| head -1`: the reader goes away
        for process, status in ((interrupted, EXIT_INTERRUPTED), (piped, EXIT_BROKEN_PIPE)):
            assert process.returncode == status
            assert process.stderr is not None
            assert await process.stderr.receive_some() == b""


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX pipes")
async def test_run_into_a_closed_pipe_exits_141_quietly(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "tradeloop.cli", "run", "--journal", str(tmp_path / "j.sqlite")]
    run = partial(trio.run_process, command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            process: trio.Process = await nursery.start(run)
            assert process.stdout is not None and process.stderr is not None
            assert (await process.stdout.receive_some()).startswith(b"t=")
            await process.stdout.aclose()  # `tradeloop run | head -1`
    assert process.returncode == EXIT_BROKEN_PIPE
    assert await process.stderr.receive_some() == b""


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_ctrl_c_while_tradeloop_starts_exits_130_quietly() -> None:
    """SIGINT while the console script imports tradeloop (most of a second) or just after."""
    script = Path(sys.executable).with_name("tradeloop")
    if not script.exists():
        pytest.skip("the tradeloop console script is not installed beside this Python")
    watch = ["watch", "bingx", "BTC-USDT", "--ticker", "--ws-url", "ws://127.0.0.1:9/x", "--rest-url"]
    for delay in (0.05, 0.1, 0.2, 0.3, 0.5):
        with subprocess.Popen(
            [str(script), *watch, "http://127.0.0.1:9"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=default_sigint,
        ) as process:
            time.sleep(delay)
            process.send_signal(signal.SIGINT)
            _, stderr = process.communicate(timeout=20)
        assert "Traceback" not in stderr, f"SIGINT after {delay} s: {stderr}"
        assert process.returncode == EXIT_INTERRUPTED, f"SIGINT after {delay} s: {stderr}"


def test_version_is_printed(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"tradeloop {version('tradeloop')}\n"
