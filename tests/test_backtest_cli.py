"""``tradeloop backtest``: CSV and exchange history, the report, and one-line errors for bad input."""

from __future__ import annotations

import importlib.util
import json
import re
import signal
import subprocess
import sys
import time
import tracemalloc
from decimal import Decimal
from pathlib import Path

import pytest
import trio
from backtest_helpers import MINUTE, START, random_walk, write_csv
from signal_helpers import default_sigint

from tradeloop.cli import EXIT_INTERRUPTED, main
from tradeloop.sim import SimConfig, open_simulator

CONFIG = """
starting_cash = 10000
fee_rate = 0.0005
slippage = 0.0001

[exchanges.bingx]
{urls}

[[strategies]]
type = "sma_crossover"
symbols = ["BTC/USDT:USDT"]
fast = 3
slow = 8
size = 1000
allow_short = true
"""


def config_file(tmp_path: Path, urls: str = "") -> Path:
    path = tmp_path / "config.toml"
    path.write_text(CONFIG.format(urls=urls))
    return path


def backtest(tmp_path: Path, *args: str) -> int:
    return main(["backtest", "--config", str(config_file(tmp_path)), *args])


def test_a_csv_backtest_writes_the_same_report_twice(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = write_csv(tmp_path / "btc.csv", random_walk(2 * 1440 + 30, start_ms=START - 30 * MINUTE), iso=True)
    reports = []
    for out in ("one", "two"):
        dates = ("--from", "2026-01-01", "--to", "2026-01-02")
        assert backtest(tmp_path, *dates, "--data", str(data), "--out", str(tmp_path / out)) == 0
        reports.append((tmp_path / out / "report.json").read_bytes())
    assert reports[0] == reports[1]
    report = json.loads(reports[0])
    assert report["backtest"]["from"] == "2026-01-01T00:00:00Z" and report["backtest"]["to"] == "2026-01-03T00:00:00Z"
    assert report["backtest"]["candles"] == 2 * 1440
    total, sma = report["total"], report["strategies"]["sma_crossover"]
    assert total["trades"] == sma["trades"] > 10
    assert total["fees"] == sma["fees"] and total["realised_pnl"] == sma["realised_pnl"]
    assert [moment for moment, _ in report["equity"]] == [
        "2026-01-01T00:00:00Z",
        "2026-01-02T00:00:00Z",
        "2026-01-03T00:00:00Z",
    ]
    assert report["equity"][-1][1] == total["final_equity"]
    assert 0 < total["exposure"] <= 1 and total["sharpe"] is not None
    out, err = capsys.readouterr()
    assert "tradeloop backtest: 2026-01-01T00:00:00Z to 2026-01-03T00:00:00Z, 2,880 candles" in out
    assert "sharpe / sortino" in out
    if importlib.util.find_spec("matplotlib") is not None:
        assert (tmp_path / "one" / "equity.png").read_bytes().startswith(b"\x89PNG")
    else:
        assert "pip install 'tradeloop[plot]'" in err


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("unknown symbol", "unknown symbol ETH/USDT:USDT"),
        ("no data", "no BTC/USDT:USDT candles between 2026-03-01T00:00:00Z and 2026-03-02T00:00:00Z"),
        ("gap", "1 gap(s), 5 1m candle(s) missing, the first at 2026-01-01T01:00:00Z; pass --allow-gaps"),
        ("malformed", "btc.csv:4: high: 'abc' is not a number"),
        ("extra cell", "btc.csv:4: expected 6 columns, got 7"),
        ("5000 digits", "btc.csv:4: high: '9999999999999999999999999999999999999999'… has over 38 digits"),
        ("bad row", "btc.csv:3: expected low <= open, close <= high"),
        ("bad date", "invalid --from '2026-13-01'"),
        ("last day", "invalid --to '9999-12-31': expected a time from year 1 to 9999"),
        ("year 1", "the first at 0001-01-01T00:00:00Z (the data starts at 2026-01-01T00:00:00Z, after --from)"),
        ("past the end", "(the data ends with the candle at 2026-01-01T04:59:00Z, before --to)"),
        ("no header", "the header lacks column 'volume'"),
        ("missing file", "cannot read data file"),
        ("invalid symbol", "btc.csv: invalid symbol 'BTCUSDT': expected a unified symbol such as 'BTC/USDT'"),
    ],
)
def test_bad_input_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str, expected: str) -> None:
    klines = random_walk(300)
    if case == "gap":
        klines = klines[:60] + klines[65:]
    data = write_csv(tmp_path / "btc.csv", klines)
    lines = data.read_text().splitlines()
    if case == "malformed":
        fields = lines[3].split(",")
        lines[3] = ",".join([*fields[:2], "abc", *fields[3:]])
    elif case == "extra cell":
        lines[3] += ",1"
    elif case == "5000 digits":
        fields = lines[3].split(",")
        lines[3] = ",".join([*fields[:2], "9" * 5000, *fields[3:]])
    elif case == "bad row":
        fields = lines[2].split(",")
        lines[2] = ",".join([fields[0], fields[1], fields[3], fields[2], *fields[4:]])  # high and low swapped
    elif case == "no header":
        lines[0] = "open_time,open,high,low,close"
    data.write_text("\n".join(lines) + "\n")
    from_, to = {
        "no data": ("2026-03-01", "2026-03-01"),
        "bad date": ("2026-13-01", "2026-01-01T05:00"),
        "last day": ("2026-01-01", "9999-12-31"),
        "year 1": ("0001-01-01", "2026-01-01T05:00"),  # counted at once, not for minutes
        "past the end": ("2026-01-01", "2026-01-01T06:00"),
    }.get(case, ("2026-01-01", "2026-01-01T05:00"))
    dates = ["--from", from_, "--to", to]
    sources = {
        "unknown symbol": f"ETH/USDT:USDT={data}",
        "missing file": str(tmp_path / "nope.csv"),
        "invalid symbol": f"BTCUSDT={data}",
    }
    source = sources.get(case, str(data))
    assert backtest(tmp_path, *dates, "--data", source, "--out", str(tmp_path / "out")) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("tradeloop backtest: ") and "Traceback" not in err
    assert expected in err


def test_a_data_file_with_an_equals_sign_in_its_name_is_read(tmp_path: Path) -> None:
    data = write_csv(tmp_path / "btc=1m.csv", random_walk(300))
    args = ["--from", "2026-01-01T00:00", "--to", "2026-01-01T04:00", "--data", str(data), "--out", str(tmp_path)]
    assert backtest(tmp_path, *args) == 0


def test_gaps_run_with_allow_gaps(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    klines = random_walk(300)
    data = write_csv(tmp_path / "btc.csv", klines[:60] + klines[65:])
    args = ["--from", "2026-01-01T00:00", "--to", "2026-01-01T05:00", "--data", str(data), "--out", str(tmp_path)]
    assert backtest(tmp_path, *args, "--allow-gaps") == 0
    assert "note: the data of BTC/USDT:USDT has 1 gap(s)" in capsys.readouterr().err
    assert json.loads((tmp_path / "report.json").read_text())["backtest"]["candles"] == 295


async def test_exchange_history_is_fetched_once_into_the_cache(tmp_path: Path) -> None:
    async with open_simulator(SimConfig(symbols=["BTC-USDT"], history_seconds=3 * 3600)) as sim:
        urls = f'rest_url = "{sim.rest_url}"\nws_url = "{sim.ws_url}"'
        now = sim.now_ms()
        start, end = now - now % MINUTE - 120 * MINUTE, now - now % MINUTE - 10 * MINUTE
        args = [
            "backtest",
            "--config",
            str(config_file(tmp_path, urls)),
            "--from",
            _iso(start),
            "--to",
            _iso(end),
            "--cache",
            str(tmp_path / "cache.sqlite"),
        ]
        requests = []
        for out in ("first", "second"):
            code = await trio.to_thread.run_sync(main, [*args, "--out", str(tmp_path / out)])
            assert code == 0
            requests.append(sim.stats.rest_requests)
        truth = sim.candles("BTC-USDT", "1m", start - 8 * MINUTE, end - MINUTE)
    assert requests[0] >= 1 and requests[1] == requests[0]  # the second run reads the cache only
    first = (tmp_path / "first" / "report.json").read_bytes()
    assert first == (tmp_path / "second" / "report.json").read_bytes()
    assert json.loads(first)["backtest"]["candles"] == 110
    assert len(truth) == 118 and all(candle.closed for candle in truth)


@pytest.mark.parametrize("case", ["unknown symbol", "broken cache"])
async def test_exchange_history_errors_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    cache = tmp_path / "cache.sqlite"
    if case == "broken cache":
        cache.write_bytes(b"this is not a database, not even close" * 100)
    async with open_simulator(SimConfig(symbols=["ETH-USDT" if case == "unknown symbol" else "BTC-USDT"])) as sim:
        config = config_file(tmp_path, f'rest_url = "{sim.rest_url}"')
        args = ["backtest", "--config", str(config), "--from", "2026-01-01", "--to", "2026-01-01"]
        code = await trio.to_thread.run_sync(main, [*args, "--cache", str(cache)])
    assert code == 1  # what the exchange or the cache file said: a runtime error, not a usage one
    err = capsys.readouterr().err
    expected = "unknown symbol 'BTC-USDT'" if case == "unknown symbol" else "delete it to start afresh"
    assert err.count("\n") == 1 and expected in err and "Traceback" not in err


def _iso(time_ms: int) -> str:
    from tradeloop.backtest.report import iso

    return iso(time_ms)


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_ctrl_c_during_the_replay_writes_a_partial_report_and_exits_130(tmp_path: Path) -> None:
    """SIGINT at several moments of a replay (counted from the journal's creation, when it has
    begun): each time a report that ends where it stopped, status 130, and no traceback."""
    data = write_csv(tmp_path / "btc.csv", random_walk(20 * 1440 + 30, start_ms=START - 30 * MINUTE))
    config = config_file(tmp_path)
    for delay in (0.0, 0.3, 0.8):
        out = tmp_path / f"out-{delay}"
        argv = ["backtest", "--config", str(config), "--from", "2026-01-01", "--to", "2026-01-20"]
        argv += ["--data", str(data), "--out", str(out)]
        with subprocess.Popen(
            [sys.executable, "-m", "tradeloop.cli", *argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=default_sigint,
        ) as process:
            deadline = time.monotonic() + 20
            while not (out / "journal.sqlite").exists() and process.poll() is None and time.monotonic() < deadline:
                time.sleep(0.01)
            time.sleep(delay)
            process.send_signal(signal.SIGINT)
            stdout, stderr = process.communicate(timeout=20)
        assert "Traceback" not in stderr, stderr
        assert process.returncode == EXIT_INTERRUPTED, stderr
        assert "stopped by Ctrl-C" in stdout.splitlines()[0]
        report = json.loads((out / "report.json").read_text())
        assert report["backtest"]["stopped_by"] == "Ctrl-C"
        assert report["backtest"]["to"] < "2026-01-21T00:00:00Z"


def test_a_report_directory_that_cannot_be_made_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = write_csv(tmp_path / "btc.csv", random_walk(120))
    taken = tmp_path / "afile"
    taken.write_text("not a directory")
    dates = ["--from", "2026-01-01", "--to", "2026-01-01T01:00"]
    assert backtest(tmp_path, *dates, "--data", str(data), "--out", str(taken)) == 1
    assert capsys.readouterr().err == f"tradeloop backtest: {taken}: File exists\n"


def test_reading_a_csv_holds_a_few_hundred_bytes_a_candle(tmp_path: Path) -> None:
    # Found by an outside look: a 148 MB CSV of three million candles took 3.4 GB to read (its
    # rows kept as lists of strings, twice, each with a location string): 1,060 bytes a candle
    # then, 195 now.
    from tradeloop.backtest.csvfile import read_csv

    rows = 5_000
    data = write_csv(tmp_path / "btc.csv", random_walk(rows))
    tracemalloc.start()
    try:
        series = read_csv(data, exchange="bingx", symbol="BTC/USDT:USDT")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(series) == rows
    assert peak / rows < 400, f"{peak / rows:.0f} bytes a candle at the peak"


def test_a_csv_saved_with_a_byte_order_mark_is_read(tmp_path: Path) -> None:
    from tradeloop.backtest import read_csv

    data = write_csv(tmp_path / "btc.csv", random_walk(10))
    data.write_bytes(b"\xef\xbb\xbf" + data.read_bytes())  # as spreadsheets save UTF-8
    assert len(read_csv(data, exchange="bingx", symbol="BTC/USDT:USDT")) == 10


def test_a_row_refused_for_its_digits_leaves_the_builder_as_it_was() -> None:
    # Found by a review: the refused row had already rescaled the open prices of the rows before it.
    from tradeloop.backtest import SeriesBuilder

    builder = SeriesBuilder("bingx", "BTC/USDT:USDT", "1m")
    builder.add(60_000, "1", "5000000000000000000", "1", "1", "1")
    with pytest.raises(ValueError, match="candle 120000: a value has too many digits"):
        builder.add(120_000, "1.5", "2", "1", "1.5", "1")  # one decimal: the high above would pass 2**63
    builder.add(180_000, "2", "3", "1", "2", "1")
    series = builder.build()
    assert [(k.open, k.high) for k in map(series.kline, range(len(series)))] == [(1, 5 * 10**18), (2, 3)]


@pytest.mark.parametrize(("cell", "volume"), [("0" * 5000 + "1", "1"), ("0.5000", "0.5")])
def test_leading_zeros_do_not_count_as_digits(tmp_path: Path, cell: str, volume: str) -> None:
    from tradeloop.backtest import read_csv

    data = tmp_path / "c.csv"
    data.write_text(f"open_time,open,high,low,close,volume\n1767225600000,1,2,1,1,{cell}\n1767225660000,1,2,1,1,1\n")
    series = read_csv(data, exchange="bingx", symbol="BTC/USDT:USDT")
    assert series.kline(0).volume == Decimal(volume)  # a second review: 5000 zeros were Python's int-limit error


def test_a_huge_exponent_is_refused_at_once(tmp_path: Path) -> None:
    from tradeloop.backtest import read_csv

    data = tmp_path / "c.csv"
    data.write_text("open_time,open,high,low,close,volume\n1767225600000,1,2,1,1,1E9999999\n1767225660000,1,2,1,1,1\n")
    # Refused from its digits and exponent, before any arithmetic: it took 6 s to multiply out and
    # refuse for its size (a second review).
    with pytest.raises(ValueError, match=re.escape("c.csv:2: volume: '1E9999999' has over 38 digits")):
        read_csv(data, exchange="bingx", symbol="BTC/USDT:USDT")


def test_a_csv_of_monthly_candles_is_read_as_1m_months(tmp_path: Path) -> None:
    from tradeloop.backtest import read_csv

    # 2026-01-01, 2026-02-01, 2026-03-01: 31 and 28 days apart (a second review: months were refused).
    data = tmp_path / "months.csv"
    rows = "".join(f"{t},1,2,1,1,1\n" for t in (1767225600000, 1769904000000, 1772323200000))
    data.write_text("open_time,open,high,low,close,volume\n" + rows)
    series = read_csv(data, exchange="bingx", symbol="BTC/USDT:USDT")
    assert series.timeframe == "1M" and len(series) == 3
