"""``tradeloop run``: the demo in simulated time, and the real command stopped by Ctrl-C."""

from __future__ import annotations

import io
import signal
import subprocess
import sys
from functools import partial
from pathlib import Path

import pytest
import trio
from rich.console import Console
from trio.testing import MockClock

from tradeloop.cli import main
from tradeloop.trading.cli import run_command
from tradeloop.trading.view import format_summary


@pytest.fixture
def mock_clock() -> MockClock:
    return MockClock(autojump_threshold=0.005)


async def test_the_demo_trades_within_twenty_seconds(mock_clock: MockClock, tmp_path: Path) -> None:
    output = io.StringIO()
    console = Console(file=output, width=200)  # not a terminal: one plain line per second
    summary = await run_command(None, 20.0, tmp_path / "journal.sqlite", console)
    assert summary.stopped_by == "duration"
    assert summary.trades > 0
    lines = output.getvalue().splitlines()
    assert 18 <= len(lines) <= 23
    assert all(line.startswith("t=") and "equity=" in line and "risk=ok" in line for line in lines)
    text = format_summary(summary)
    for label in ("trades", "fees", "realised PnL", "unrealised PnL", "max drawdown", "reconnects"):
        assert f"  {label} " in text
    # a second demo on the same journal resumes the first one's books
    again = await run_command(None, 5.0, tmp_path / "journal.sqlite", Console(file=io.StringIO()))
    assert again.portfolio.fills >= summary.portfolio.fills


async def test_a_bad_config_fails_before_trading(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[exchanges.bingx]\n[[strategies]]\ntype = "breakout"\nsymbols = ["BTC/USDT:USDT"]\nsize = -5\n')
    assert await trio.to_thread.run_sync(main, ["run", "--config", str(path), "--duration", "1"]) == 2
    assert "parameter 'size' must be a positive number" in capsys.readouterr().err


async def test_a_foreign_journal_fails_before_trading(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    journal = tmp_path / "notes.txt"
    await trio.Path(journal).write_text("not a journal")
    assert await trio.to_thread.run_sync(main, ["run", "--journal", str(journal), "--duration", "1"]) == 2
    assert "not a tradeloop journal" in capsys.readouterr().err


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
async def test_ctrl_c_prints_the_summary_and_exits_0(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "tradeloop.cli", "run", "--journal", str(tmp_path / "j.sqlite")]
    out: list[bytes | bytearray] = []
    err: list[bytes | bytearray] = []
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            run = partial(trio.run_process, command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
            process: trio.Process = await nursery.start(run)
            assert process.stdout is not None and process.stderr is not None
            nursery.start_soon(_drain, process.stderr, err)
            while b"\nt=" not in b"\n" + b"".join(out):  # its first status line: the engine is trading
                chunk = await process.stdout.receive_some()
                assert chunk, f"exited before its first status line: {b''.join(err).decode()}"
                out.append(chunk)
            process.send_signal(signal.SIGINT)
            nursery.start_soon(_drain, process.stdout, out)
    text = b"".join(out).decode()
    assert process.returncode == 0, b"".join(err).decode()
    assert "tradeloop run: stopped by Ctrl-C" in text
    assert "  trades " in text and "  journal " in text


async def _drain(stream: trio.abc.ReceiveStream, into: list[bytes | bytearray]) -> None:
    while chunk := await stream.receive_some():
        into.append(chunk)
