"""Where a profiled run spends its time, by layer, from cProfile's own-time (``tottime``) counts.

Each function's own time is charged to the layer its code belongs to, so the shares add up to the
whole run. cProfile's per-call overhead inflates the layers with the most calls (trio's scheduler,
small helpers), so the shares are a map, not a stopwatch; the unprofiled runs give the rates.
"""

from __future__ import annotations

import cProfile
import pstats
from typing import Any

__all__ = ["where_time_goes"]

# (layer, test on "file:function"); the first that matches wins.
_LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("gunzip (zlib)", ("zlib.decompress",)),
    ("JSON (msgspec)", ("msgspec",)),
    ("trio-websocket", ("trio_websocket",)),
    ("wsproto framing", ("wsproto",)),
    ("socket syscalls", ("method 'recv", "method 'send", "recv_into", "epoll")),
    ("trio scheduler and channels", ("/trio/", "trio/_")),
    ("BingX codec, Kline and Decimal", ("exchanges/bingx", "Decimal", "models.py", "<string>:__init__")),
    ("tradeloop transport (streams/transport.py)", ("tradeloop/streams/transport",)),
    ("stream layer (connection, topic, fan-out)", ("tradeloop/streams",)),
    ("consumers (benchmark)", ("benchmarks/",)),
)


def _layer(where: str) -> str:
    for layer, needles in _LAYERS:
        if any(needle in where for needle in needles):
            return layer
    return "other"


# Calls counted per push: how many times each push makes Trio switch tasks and touch a channel.
_PER_PUSH = {
    "scheduler passes": "unrolled_run",
    "task suspensions (scheduling points)": "wait_task_rescheduled",
    "memory-channel receive calls": "receive",
}


def where_time_goes(profiler: cProfile.Profile, pushes: int, top: int = 15) -> dict[str, Any]:
    stats = pstats.Stats(profiler)
    entries = stats.stats  # type: ignore[attr-defined]
    total = sum(entry[2] for entry in entries.values())
    layers: dict[str, float] = {}
    functions = []
    for (filename, line, name), (_, calls, tottime, _, callers) in entries.items():
        layer = _layer(f"{filename}:{name}")
        if layer == "other" and callers:
            # A builtin (len, isinstance, ...) works for whoever called it: split its time among them.
            caller_time = sum(c[2] for c in callers.values()) or 1.0
            for (c_file, _, c_name), c_stats in callers.items():
                owner = _layer(f"{c_file}:{c_name}")
                layers[owner] = layers.get(owner, 0.0) + tottime * c_stats[2] / caller_time
        else:
            layers[layer] = layers.get(layer, 0.0) + tottime
        functions.append((tottime, calls, f"{filename.rsplit('site-packages/', 1)[-1]}:{line}({name})", layer))
    functions.sort(reverse=True)
    per_push = {
        label: sum(
            entry[1]
            for (filename, _, name), entry in entries.items()
            if name == function and ("trio/_core" in filename or "trio/_channel" in filename)
        )
        / pushes
        for label, function in _PER_PUSH.items()
    }
    return {
        "total_s": total,
        "per_push": per_push,
        "layers": {layer: seconds / total for layer, seconds in sorted(layers.items(), key=lambda kv: -kv[1])},
        "top": [
            {"function": where, "layer": layer, "calls": calls, "share": seconds / total}
            for seconds, calls, where, layer in functions[:top]
        ],
    }
