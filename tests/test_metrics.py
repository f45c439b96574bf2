"""``--metrics-port``: Prometheus text at /metrics from the running command's health snapshot."""

from __future__ import annotations

import io
import re
from functools import partial
from pathlib import Path

import httpx
import pytest
import trio
from metrics_helpers import metrics_port
from rich.console import Console
from trio.testing import MockClock

from tradeloop.cli import main
from tradeloop.metrics import collector
from tradeloop.metrics.cli import MetricsAddress
from tradeloop.trading.cli import run_command

DOCUMENTED = re.findall(r"``(tradeloop_[a-z_]+)", collector.__doc__ or "")
STREAM_AND_ENGINE = [
    name for name in DOCUMENTED if not name.startswith(("tradeloop_publish", "tradeloop_sim", "tradeloop_redis"))
]


@pytest.fixture
def mock_clock() -> MockClock:
    return MockClock(autojump_threshold=0.005)


async def test_run_serves_the_documented_metrics(
    mock_clock: MockClock, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert len(STREAM_AND_ENGINE) >= 20
    async with trio.open_nursery() as nursery:
        console = Console(file=io.StringIO())
        metrics = MetricsAddress("127.0.0.1", 0)
        run = partial(run_command, metrics=metrics)
        nursery.start_soon(run, None, 60.0, tmp_path / "journal.sqlite", console)
        port = await metrics_port(capsys)
        await trio.sleep(20)  # the demo trades within seconds
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            reply = await http.get("/metrics")
            missing = await http.get("/other")
            posted = await http.post("/metrics")
        nursery.cancel_scope.cancel()
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("text/plain; version=")
    text = reply.text
    for name in STREAM_AND_ENGINE:
        kind = "counter" if name.endswith("_total") else "gauge"
        assert re.search(rf"^# TYPE {name} {kind}$", text, re.MULTILINE), f"{name} missing from /metrics"
    fills = float(re.search(r"^tradeloop_fills_total (\S+)$", text, re.MULTILINE).group(1))  # type: ignore[union-attr]
    assert fills > 0
    assert 'tradeloop_topic_messages_total{exchange="bingx",topic="ticker:BTC/USDT:USDT"}' in text
    assert 'tradeloop_topic_standby{exchange="bingx",topic="ticker:BTC/USDT:USDT"} 0.0' in text
    # A tick topic has no candle counts (an outside look saw its ticks counted as closed candles).
    assert 'tradeloop_topic_closed_candles_total{exchange="bingx",topic="ticker:' not in text
    assert missing.status_code == 404
    assert posted.status_code == 405


def test_bad_metrics_port_is_a_one_line_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sim", "--metrics-port", "70000"]) == 2  # a usage error, as argparse reports them
    err = capsys.readouterr().err
    assert "invalid port '70000'" in err
    assert "Traceback" not in err


async def test_a_snapshot_that_fails_fails_one_scrape_not_the_program(caplog: pytest.LogCaptureFixture) -> None:
    from tradeloop.metrics.collector import Snapshot
    from tradeloop.metrics.server import serve_metrics

    calls = 0

    def snapshot() -> Snapshot:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("a health field the collector did not expect")
        return Snapshot()

    async with trio.open_nursery() as nursery:
        port = await nursery.start(serve_metrics, snapshot, 0)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            failed = await http.get("/metrics")
            served = await http.get("/metrics")
        nursery.cancel_scope.cancel()
    assert failed.status_code == 500 and served.status_code == 200
    assert "the snapshot could not be turned into metrics" in caplog.text
