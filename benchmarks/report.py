"""Results as Markdown tables (printed, and saved as ``results/summary.md``) and the throughput plot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["markdown", "plot"]

_NAMES = {
    "tradeloop": "tradeloop",
    "ccxt": "ccxt.pro",
    "tradeloop_trio_websocket": "tradeloop on the trio-websocket transport (reference)",
    "trio_websocket": "trio-websocket receive + codec (reference)",
    "wsproto": "wsproto-on-Trio receive + codec (reference)",
}


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _n(value: float, digits: int = 0) -> str:
    return f"{value:,.{digits}f}"


def _burst(r: dict[str, Any], floor: dict[str, Any]) -> str:
    ccxt = r["summary"]["ccxt"]["msgs_per_s"]
    rows = [["decoding floor (gunzip + msgspec + Kline)", _n(r["floor_msgs_per_s"]), _n(floor["floor"], 2),
             _n(r["floor_msgs_per_s"] / ccxt, 2), "1.00", ""]]
    for client, s in r["summary"].items():
        wakeups = sorted(run["consumer_wakeups"][0] for run in r["runs"][client])[len(r["runs"][client]) // 2]
        rows.append([_NAMES[client], _n(s["msgs_per_s"]), _n(s["cpu_us_per_msg"], 1), _n(s["msgs_per_s"] / ccxt, 2),
                     _n(s["msgs_per_s"] / r["floor_msgs_per_s"], 2), _n(wakeups)])
    simulator = r.get("simulator_burst_to_wsproto")
    if simulator:
        rows.append([f"simulator's `sim.burst` ({_n(simulator['pushes'])} pushes) → wsproto receive (reference)",
                     _n(simulator["msgs_per_s"]), "", _n(simulator["msgs_per_s"] / ccxt, 2),
                     _n(simulator["msgs_per_s"] / r["floor_msgs_per_s"], 2), ""])
    return _table(["path", "msgs/s", "CPU µs/msg", "× ccxt.pro", "× floor", "wake-ups of one consumer"], rows)


def _live(r: dict[str, Any]) -> str:
    rows = []
    for rate, data in r["rates"].items():
        t, c = data["summary"]["tradeloop"], data["summary"]["ccxt"]
        reference = data["summary"].get("tradeloop_trio_websocket")
        rows.append([
            _n(int(rate)),
            _n(t["cpu_us_per_msg"], 1),
            _n(c["cpu_us_per_msg"], 1),
            _n(reference["cpu_us_per_msg"], 1) if reference else "",
            _n(data["ratio_cpu_tradeloop_to_ccxt"], 2),
            " / ".join(_n(t[f"latency_{k}_us"] / 1000, 2) for k in ("p50", "p99", "max")),
            " / ".join(_n(c[f"latency_{k}_us"] / 1000, 2) for k in ("p50", "p99", "max")),
            f"{c['observed']:.0%}",
        ])
    return _table(
        ["msg/s", "tradeloop CPU µs/msg", "ccxt.pro CPU µs/msg", "tradeloop on trio-websocket CPU µs/msg",
         "CPU ratio tradeloop / ccxt.pro", "tradeloop latency ms p50/p99/max",
         "ccxt.pro latency ms p50/p99/max", "pushes ccxt.pro consumers saw"],
        rows,
    )


def _scale(r: dict[str, Any]) -> str:
    s = r["summary"]
    sockets = r["runs"][0]["connections"]["sockets"]
    return _table(
        ["topics", "sockets", "all subscribed (s)", "RSS (MB)", "CPU, 1 push/s/topic", "CPU, heartbeats only",
         "shutdown (s)", "tasks left", "sockets left"],
        [[_n(r["topics"]), str(sockets), _n(s["all_subscribed_s"], 1), _n(s["rss_mb"], 1),
          f"{s['live_cpu_percent']:.1f} %", f"{s['idle_cpu_percent']:.2f} %", _n(s["shutdown_s"], 2),
          str(s["tasks_left"]), str(s["sockets_left"])]],
    )


def _recovery(r: dict[str, Any]) -> str:
    s = r["summary"]
    closed = r["runs"][0]["closed_delivered_after_drop"]
    return _table(
        ["feed silent for", "closed candles delivered after the drop (per topic)", "missed candles backfilled (s)",
         "live data again (s)"],
        [[f"{r['candles_missed']} candles", ", ".join(map(str, closed)), _n(s["backfilled_s"], 3),
          _n(s["live_again_s"], 3)]],
    )


def _goals(results: dict[str, Any]) -> str:
    burst, live, scale = results["burst"], results["live"], results["scale"]
    rows = [["burst ≥ 2× ccxt.pro msgs/s", f"{burst['ratio_tradeloop_to_ccxt']:.2f}×", _yes(burst["goal_met"])]]
    for rate in ("2000", "10000"):
        if rate in live["rates"]:
            ratio = live["rates"][rate]["ratio_cpu_tradeloop_to_ccxt"]
            rows.append([f"CPU/msg at {_n(int(rate))} msg/s ≤ ½ ccxt.pro's", f"{ratio:.2f}×", _yes(ratio <= 0.5)])
    if "10000" in live["rates"]:
        p99 = live["rates"]["10000"]["summary"]["tradeloop"]["latency_p99_us"] / 1000
        rows.append(["latency p99 < 2 ms at 10,000 msg/s", f"{p99:.2f} ms", _yes(p99 < 2)])
    s = scale["summary"]
    topics = _n(scale["topics"])
    rows.append([f"shutdown < 1 s at {topics} topics", f"{s['shutdown_s']:.2f} s", _yes(s["shutdown_s"] < 1)])
    rows.append([f"memory < 150 MB at {topics} topics", f"{s['rss_mb']:.1f} MB", _yes(s["rss_mb"] < 150)])
    left = s["tasks_left"] + s["sockets_left"]
    rows.append(["tasks and sockets left after shutdown = 0", str(left), _yes(left == 0)])
    return _table(["goal", "measured", "met"], rows)


def _yes(met: bool) -> str:
    return "yes" if met else "**no**"


def _profile(profile: dict[str, Any] | None) -> str:
    if not profile:
        return ""
    layers = profile["profile"]["layers"]
    rows = [[layer, f"{share:.0%}"] for layer, share in layers.items() if share >= 0.005]
    per_push = [[label, f"{count:.1f}"] for label, count in profile["profile"]["per_push"].items()]
    return (
        _table(["layer (tradeloop burst, cProfile CPU own time)", "share"], rows)
        + "\n\n"
        + _table(["Trio work per push", "count"], per_push)
    )


def markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    parts = [
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, Python {m['python']}, {m['system']}; "
        f"{results['mode']} mode ({results['runs']} run(s) each, medians), {m['date']}.",
        f"### Burst: {_n(results['burst']['pushes'])} pushes, {results['burst']['consumers']} consumers",
        _burst(results["burst"], results["floor"]),
        f"### Live rates: {results['live']['topics']} topics, {results['live']['seconds']:g} s per run",
        _live(results["live"]),
        "### Scale and shutdown",
        _scale(results["scale"]),
        "### Recovery (simulator at 60× speed: one 1m candle per real second)",
        _recovery(results["recovery"]),
        "### Goals",
        _goals(results),
    ]
    profile = _profile(results["burst"].get("profile"))
    if profile:
        parts += [f"### Where tradeloop's burst time goes ({_n(results['burst']['profile']['msgs_per_s'])} msgs/s "
                  "under the profiler)", profile]
    return "\n\n".join(parts) + "\n"


def plot(results: dict[str, Any], path: Path) -> None:
    """Burst msgs/s and CPU µs per message: tradeloop vs ccxt.pro vs the decoding floor."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    burst, live, floor = results["burst"], results["live"], results["floor"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 5.4))
    labels = {
        "tradeloop": "tradeloop",
        "ccxt": "ccxt.pro",
        "tradeloop_trio_websocket": "tradeloop on\ntrio-websocket",
        "trio_websocket": "trio-websocket\n(receive only)",
        "wsproto": "wsproto on Trio\n(receive only)",
    }
    names = ["decoding floor", *labels.values()]
    rates = [burst["floor_msgs_per_s"]] + [burst["summary"][c]["msgs_per_s"] for c in labels]
    colors = ["#999999", "#1f77b4", "#ff7f0e", "#9edae5", "#aec7e8", "#98df8a"]
    bars = left.barh(names[::-1], [r / 1000 for r in rates[::-1]], color=colors[::-1])
    left.bar_label(bars, labels=[f"{r / 1000:,.0f}k" for r in rates[::-1]], padding=3)
    left.set_xlabel("thousand messages per second (higher is better)")
    left.set_title(f"Burst: {burst['pushes']:,} pushes, 3 consumers")
    left.set_xlim(0, max(rates) / 1000 * 1.2)

    conditions = ["burst"] + [f"{int(rate):,}/s" for rate in live["rates"]]
    tradeloop = [burst["summary"]["tradeloop"]["cpu_us_per_msg"]] + [
        d["summary"]["tradeloop"]["cpu_us_per_msg"] for d in live["rates"].values()
    ]
    ccxt = [burst["summary"]["ccxt"]["cpu_us_per_msg"]] + [
        d["summary"]["ccxt"]["cpu_us_per_msg"] for d in live["rates"].values()
    ]
    x = range(len(conditions))
    width = 0.38
    b1 = right.bar([i - width / 2 for i in x], tradeloop, width, label="tradeloop", color=colors[1])
    b2 = right.bar([i + width / 2 for i in x], ccxt, width, label="ccxt.pro", color=colors[2])
    right.bar_label(b1, fmt="%.0f", padding=2)
    right.bar_label(b2, fmt="%.0f", padding=2)
    right.axhline(floor["floor"], color=colors[0], linestyle="--", label=f"decoding floor ({floor['floor']:.1f} µs)")
    right.set_xticks(list(x), conditions)
    right.set_ylabel("CPU µs per message (lower is better)")
    right.set_title("CPU per message: burst and paced over 100 topics")
    right.set_ylim(0, max(tradeloop + ccxt) * 1.4)  # room for the legend above the bars
    right.legend(loc="upper right")
    m = results["machine"]
    fig.suptitle(f"tradeloop vs ccxt.pro on BingX swap klines — {m['cpu']}, {m['cores']} cores, loopback", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
