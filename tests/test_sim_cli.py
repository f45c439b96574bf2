"""``tradeloop sim``: argument errors, and a real process serving until Ctrl-C."""

from __future__ import annotations

import gzip
import json
import signal
import subprocess
import sys
from functools import partial

import httpx
import pytest
import trio
import trio_websocket

from tradeloop.cli import main
from tradeloop.sim.cli import parse_fault


def test_parse_fault() -> None:
    assert parse_fault("malformed_rate=0.2") == ("malformed_rate", "0.2")
    assert parse_fault(" batch_klines ") == ("batch_klines", None)
    assert parse_fault("rest_down=close") == ("rest_down", "close")
    with pytest.raises(ValueError, match="reorder_rate"):
        parse_fault("reorder_rate=lots")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["sim", "--fault", "nope"], "invalid fault 'nope'"),
        (["sim", "--symbols", "BTC/USDT"], "BTC/USDT"),
        (["sim", "--push-interval", "0"], "push_interval"),
        (["sim", "--ws-port", "70000"], "70000"),
    ],
)
def test_bad_arguments_exit_2_with_a_clear_message(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    assert message in capsys.readouterr().err


async def test_sim_command_serves_until_ctrl_c() -> None:
    command = [sys.executable, "-m", "tradeloop.cli", "sim", "--fault", "rest_rate_limited", "--ping-interval", "60"]
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            run = partial(trio.run_process, command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
            process: trio.Process = await nursery.start(run)
            assert process.stdout is not None
            output = b""
            while output.count(b"\n") < 3:
                output += await process.stdout.receive_some()
            urls = dict(line.rsplit(None, 1) for line in output.decode().splitlines()[:3])
            swap_url, rest_url = urls["swap WebSocket"], urls["REST"]
            async with httpx.AsyncClient() as client:
                reply = await client.get(rest_url + "/openApi/swap/v2/server/time")
            assert reply.status_code == 429  # the --fault is on
            host, port = swap_url.removeprefix("ws://").removesuffix("/swap-market").split(":")
            # Our own TCP stream: trio-websocket's client leaves it open when the server closes first.
            async with await trio.open_tcp_stream(host, int(port)) as stream:
                ws = await trio_websocket.wrap_client_stream(nursery, stream, host, "/swap-market")
                await ws.send_message(json.dumps({"id": "1", "reqType": "sub", "dataType": "BTC-USDT@ticker"}))
                ack = json.loads(gzip.decompress(await ws.get_message()))  # type: ignore[arg-type]
                assert ack["code"] == 0
                process.send_signal(signal.SIGINT)
                with pytest.raises(trio_websocket.ConnectionClosed):
                    while True:
                        await ws.get_message()
                assert ws.closed is not None and ws.closed.code == 1001  # closed cleanly, going away
            assert await process.wait() == 130  # stopped by Ctrl-C, quietly
