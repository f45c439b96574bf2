"""``tradeloop sim --exchange binance --speed 60`` as a real process, watched by ``tradeloop watch``
with exactly the flags the simulator prints."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from functools import partial

import pytest
import trio

from tradeloop.cli import main


async def test_watch_follows_the_printed_flags_of_a_fast_binance_simulator() -> None:
    command = [sys.executable, "-m", "tradeloop.cli", "sim", "--exchange", "binance", "--speed", "60"]
    with trio.fail_after(40):
        async with trio.open_nursery() as nursery:
            run = partial(trio.run_process, command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
            process: trio.Process = await nursery.start(run)
            assert process.stdout is not None
            output = b""
            while b"watch with" not in output or not output.endswith(b"\n"):
                output += await process.stdout.receive_some()
            line = next(line for line in output.decode().splitlines() if line.startswith("watch with"))
            flags = line.split("SYMBOL", 1)[1].split()
            watch = [sys.executable, "-m", "tradeloop.cli", "watch", "binance", "BTC/USDT:USDT", "--timeframe", "1m"]
            result = await trio.run_process(
                [*watch, "--closed-only", "--count", "3", *flags], capture_stdout=True, capture_stderr=True
            )
            process.send_signal(signal.SIGINT)
            assert await process.wait() == 130  # Ctrl-C: quiet, the conventional status
    klines = [json.loads(line) for line in result.stdout.decode().splitlines()]
    assert [k["closed"] for k in klines] == [True] * 3
    opens = [k["open_time"] for k in klines]
    assert opens == [opens[0], opens[0] + 60_000, opens[0] + 120_000]  # three minutes in about three seconds


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["sim", "--exchange", "kraken"], "invalid exchange 'kraken': the simulator speaks bingx, binance"),
        (["sim", "--speed", "0"], "invalid speed 0.0"),
        (["watch", "binance", "BTCUSDT", "--ticker"], "write 'BTC/USDT' (spot) or 'BTC/USDT:USDT' (USDⓈ-M)"),
        (["watch", "binance", "BTC/USDT", "--ticker", "--ws-url", "ws://h:1/ws"], "expected an origin"),
    ],
)
def test_bad_arguments_exit_2_with_a_clear_message(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    assert message in capsys.readouterr().err
