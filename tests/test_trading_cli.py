"""``tradeloop run``: the demo in simulated time, and the real command stopped by Ctrl-C."""

from __future__ import annotations

import io
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
from decimal import Decimal
from functools import partial
from pathlib import Path

import pytest
import trio
from rich.console import Console
from trio.testing import MockClock

from tradeloop.backtest import BacktestJournal
from tradeloop.cli import main, sole_error
from tradeloop.trading import Journal, JournalError, PortfolioManager, RiskLimits, RiskManager
from tradeloop.trading.cli import demo_journal, run_command
from tradeloop.trading.view import format_summary

D = Decimal


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


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('[exchanges.bingx]\nws_url = "http://127.0.0.1:9/x"', "invalid BingX ws_url 'http://127.0.0.1:9/x': expected wss://"),
        ('[exchanges.bingx]\nspot_ws_url = "ws://127.0.0.1:99999/x"', "spot_ws_url 'ws://127.0.0.1:99999/x': port out"),
        ('[exchanges.bingx]\nrest_url = "ftp://host"', "rest_url 'ftp://host': expected https://"),
        ('[exchanges.bingx]\n[data]\nsource = "redis://:secret@host:99999"', "invalid Redis URL 'redis://:***@host"),
    ],
)
def test_a_config_refused_for_a_bad_value_creates_no_journal(
    table: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.toml"
    strategy = '[[strategies]]\ntype = "breakout"\nsymbols = ["BTC/USDT:USDT"]\nsize = 5\n'
    path.write_text(f'journal = "j7.sqlite"\n{table}\n{strategy}')
    assert main(["run", "--config", str(path), "--duration", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tradeloop run: config ") and message in err and len(err.splitlines()) == 1, err
    assert list(tmp_path.iterdir()) == [path]


async def test_a_foreign_journal_fails_before_trading(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    journal = tmp_path / "notes.txt"
    await trio.Path(journal).write_text("not a journal")
    assert await trio.to_thread.run_sync(main, ["run", "--journal", str(journal), "--duration", "1"]) == 1
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


@pytest.fixture
def state_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    return tmp_path / "state" / "tradeloop"


async def demo_error() -> str:
    """The message of the one error the demo fails with."""
    try:
        await run_command(None, 2.0, None, Console(file=io.StringIO()))
    except BaseException as exc:
        error = sole_error(exc)
        assert isinstance(error, JournalError), exc
        return str(error)
    raise AssertionError("the demo ran")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def directory(path: Path, permissions: int) -> None:
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(permissions)


def plant_link(link: Path, target: Path) -> None:
    link.unlink(missing_ok=True)
    link.symlink_to(target)


async def test_the_demo_journal_is_private_to_its_user(mock_clock: MockClock, state_home: Path) -> None:
    await run_command(None, 3.0, None, Console(file=io.StringIO()))
    journal = demo_journal()
    assert journal.parent == state_home
    assert (mode(state_home), mode(journal)) == (0o700, 0o600)


async def test_a_group_readable_state_directory_is_made_private(mock_clock: MockClock, state_home: Path) -> None:
    directory(state_home, 0o755)
    await run_command(None, 2.0, None, Console(file=io.StringIO()))
    assert mode(state_home) == 0o700


async def test_a_symlink_planted_as_the_demo_journal_is_not_followed(
    mock_clock: MockClock, state_home: Path, tmp_path: Path
) -> None:
    directory(state_home, 0o700)
    victim = tmp_path / "victim.txt"
    await trio.Path(victim).write_text("precious")
    plant_link(demo_journal(), victim)
    assert "is a symbolic link; refusing to write through it" in await demo_error()
    assert await trio.Path(victim).read_text() == "precious"
    dangling = tmp_path / "not-there.sqlite"
    plant_link(demo_journal(), dangling)
    assert "is a symbolic link; refusing to write through it" in await demo_error()
    assert not await trio.Path(dangling).exists()


async def test_a_tripped_demo_starts_a_fresh_journal_and_says_so(
    mock_clock: MockClock, state_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory(state_home, 0o700)
    async with Journal.open(demo_journal(), starting_cash=D(10_000)) as journal:
        risk = RiskManager(RiskLimits(), PortfolioManager(D(10_000)))
        risk.kill("drawdown test", 1_700_000_000_000)
        await journal.record_risk_event("kill", "drawdown test", 1_700_000_000_000, risk.record())
    summary = await run_command(None, 20.0, None, Console(file=io.StringIO()))
    assert not summary.risk.killed and summary.trades > 0
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "kill switch tripped at 2023-11-14 22:13:20 UTC (drawdown test)" in line
    assert "starting a fresh demo journal" in line
    (kept,) = await trio.Path(state_home).glob("demo-journal-tripped-*.sqlite")
    async with Journal.open(kept, starting_cash=D(10_000)) as journal:
        state = await journal.risk_state()
    assert state is not None and state.kill_reason == "drawdown test"


async def test_an_explicit_journal_stays_tripped_until_reset(
    mock_clock: MockClock, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "journal.sqlite"
    async with Journal.open(path, starting_cash=D(10_000)) as journal:
        risk = RiskManager(RiskLimits(), PortfolioManager(D(10_000)))
        risk.kill("drawdown test", 1_700_000_000_000)
        await journal.record_risk_event("kill", "drawdown test", 1_700_000_000_000, risk.record())
    argv = ["run", "--journal", str(path), "--duration", "1"]
    assert await trio.to_thread.run_sync(main, argv) == 0
    out = capsys.readouterr().out
    assert "stopped by kill switch" in out
    # One line, however long, when not on a terminal (rich wrapped it at 80 columns; an outside look).
    assert any("tripped in an earlier run" in line and "--reset-kill-switch" in line for line in out.splitlines())
    assert "0 this run" in out
    assert await trio.to_thread.run_sync(main, [*argv, "--reset-kill-switch"]) == 0
    out = capsys.readouterr().out
    assert "stopped by duration" in out and "kill switch" not in out


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None, reason="drops root to a user")
async def test_a_journal_it_cannot_write_is_told_apart_from_a_corrupt_one() -> None:
    """As 'nobody', a journal owned by root (0644, in a 0755 directory) can be read but not written."""
    with tempfile.TemporaryDirectory(dir="/tmp") as shared:  # pytest's tmp_path is private to root
        await _open_as_nobody(Path(shared))


async def _open_as_nobody(shared: Path) -> None:
    directory(shared, 0o755)
    path = shared / "journal.sqlite"
    async with Journal.open(path, starting_cash=D(10_000)):
        pass
    await trio.Path(path).chmod(0o644)
    script = (
        "import sys, trio; from decimal import Decimal; from tradeloop.trading import Journal, JournalError\n"
        "async def main():\n"
        "    try:\n"
        f"        async with Journal.open({str(path)!r}, starting_cash=Decimal(10000)): pass\n"
        "    except JournalError as exc: print(exc)\n"
        "trio.run(main)\n"
    )
    command = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", sys.executable, "-c", script]
    result = await trio.run_process(command, capture_stdout=True, capture_stderr=True, check=False)
    text = result.stdout.decode() + result.stderr.decode()
    assert "cannot be written (read-only file or directory, or permissions)" in text, text
    assert "corrupt" not in text


async def test_a_resumed_demo_does_not_replay_the_last_runs_market(mock_clock: MockClock, tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    paths = []
    for _ in range(2):
        output = io.StringIO()
        # The journal in the Trio thread: the clock jumps when every task waits, a task waiting for
        # a worker thread waits, and under load the live journal's open and restore took long enough
        # for the clock to pass the first status line's second before the first tick (prices=[]).
        await run_command(None, 10.0, path, Console(file=output, width=400), journal_class=BacktestJournal)
        paths.append([line.split(" equity=")[0].split(" ", 1)[1] for line in output.getvalue().splitlines()])
    assert all(line.startswith("prices=[BTC") for line in paths[0])
    assert paths[0] != paths[1]


async def test_the_live_view_says_why_no_data_flows(mock_clock: MockClock, tmp_path: Path) -> None:
    path = tmp_path / "nowhere.toml"
    path.write_text(
        '[exchanges.bingx]\nws_url = "ws://127.0.0.1:1/swap-market"\nrest_url = "http://127.0.0.1:1"\n'
        '[[strategies]]\ntype = "breakout"\nsymbols = ["BTC/USDT:USDT"]\nsize = 5\n'
    )
    output = io.StringIO()
    await run_command(path, 5.0, tmp_path / "journal.sqlite", Console(file=output, width=300))
    lines = output.getvalue().splitlines()
    assert lines and "last error:" in lines[-1] and "refused" in lines[-1], lines[-1:]
