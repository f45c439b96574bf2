"""A tradeloop client in a process of its own, for test_hostile_peer.py: its peak memory is its own.

    python hostile_client.py ws WS_URL REST_URL   ticks over the WebSocket: waits until the stream
                                                  counted 2 bad frames, then for 3 ticks after them
    python hostile_client.py ws-asyncio WS_URL REST_URL
                                                  the same on asyncio (its own socket reader)
    python hostile_client.py rest REST_URL        fetch_klines, retried on ProtocolError until one
                                                  succeeds after 2 failures

Exits 0 once the stream recovered, after printing one JSON line: ``peak_rss_kib`` (peak resident
memory) and ``errors`` (ProtocolError kinds counted). The parent bounds its time.

The peak is ``VmHWM`` of /proc/self/status, the high-water mark of this program's own memory.
Not ``ru_maxrss``: Linux carries it over ``execve`` from the forked copy of the parent, so a
client started by a large pytest process would report the parent's size.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

import anyio
import httpx
import trio

from tradeloop.exchanges import ProtocolError
from tradeloop.exchanges.bingx import BingX
from tradeloop.streams import StreamConfig, StreamManager

SYMBOL = "BTC/USDT:USDT"
BAD_FRAMES = 2
TICKS_AFTER = 3


async def watch_ticks(ws_url: str, rest_url: str) -> Counter[str]:
    # Never fall back to REST on bad frames: a tick must come over the WebSocket, once it behaves.
    config = StreamConfig(max_parse_frame_retries=1_000_000, reconnect_delay=0.1, reconnect_delay_max=0.5)
    exchange = BingX(ws_url=ws_url, rest_url=rest_url)
    async with StreamManager.open({"bingx": exchange}, config) as streams, streams.ticks("bingx", SYMBOL) as ticks:
        after_bad_frames = 0
        async for _tick in ticks:
            if streams.health().total_parse_errors >= BAD_FRAMES:
                after_bad_frames += 1
                if after_bad_frames == TICKS_AFTER:
                    break
        errors: Counter[str] = Counter()  # read while the socket is open: its health goes with it
        for connection in streams.health().connections:
            errors.update(connection.parse_errors)
        return errors


async def fetch_klines(rest_url: str) -> Counter[str]:
    errors: Counter[str] = Counter()
    bingx = BingX(rest_url=rest_url)
    async with httpx.AsyncClient(timeout=10) as http:
        while True:
            try:
                await bingx.fetch_klines(http, SYMBOL, "1m", limit=5)
            except ProtocolError as exc:
                errors[exc.kind.value] += 1
                await trio.sleep(0.05)
                continue
            if errors.total() >= BAD_FRAMES:
                return errors


def peak_rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status")


def main() -> None:
    mode, *urls = sys.argv[1:]
    if mode == "ws-asyncio":
        errors = anyio.run(watch_ticks, *urls, backend="asyncio")
    else:
        errors = trio.run(watch_ticks, *urls) if mode == "ws" else trio.run(fetch_klines, *urls)
    print(json.dumps({"peak_rss_kib": peak_rss_kib(), "errors": errors}))


if __name__ == "__main__":
    main()
