"""Results as Markdown tables (printed, and saved as ``results/summary.md``) and the throughput plot."""

from __future__ import annotations

import math
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .bench_live import FEEDS

__all__ = ["binance_markdown", "markdown", "plot"]

def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _n(value: float, digits: int = 0) -> str:
    return f"{value:,.{digits}f}"


def _burst(r: dict[str, Any], floor: dict[str, Any]) -> str:
    ccxt = r["summary"]["ccxt"]["msgs_per_s"]
    rows = [["decoding floor (gunzip + msgspec + Kline, no socket)", _n(r["floor_msgs_per_s"]), _n(floor["floor"], 2),
             _n(r["floor_msgs_per_s"] / ccxt, 2), "1.00", ""]]
    for client, s in r["summary"].items():
        wakeups = sorted(run["consumer_wakeups"][0] for run in r["runs"][client])[len(r["runs"][client]) // 2]
        rows.append([r["labels"][client], _n(s["msgs_per_s"]), _n(s["cpu_us_per_msg"], 1),
                     _n(s["msgs_per_s"] / ccxt, 2), _n(s["msgs_per_s"] / r["floor_msgs_per_s"], 2), _n(wakeups)])
    simulator = r.get("simulator_burst_to_wsproto")
    if simulator:
        rows.append([f"simulator's `sim.burst` ({_n(simulator['pushes'])} pushes) → wsproto receive (reference)",
                     _n(simulator["msgs_per_s"]), "", _n(simulator["msgs_per_s"] / ccxt, 2),
                     _n(simulator["msgs_per_s"] / r["floor_msgs_per_s"], 2), ""])
    return _table(["path", "msgs/s", "CPU µs/msg", "× ccxt.pro", "× floor", "wake-ups of one consumer"], rows)


def _latency_ms(summary: dict[str, float]) -> str:
    return " / ".join(_n(summary[f"latency_{k}_us"] / 1000, 2) for k in ("p50", "p99", "max"))


def _live(r: dict[str, Any], feed: str) -> str:
    rows = []
    for rate, data in r["feeds"][feed].items():
        for client, s in data["summary"].items():
            rows.append([_n(int(rate)), r["labels"][client], _n(s["cpu_us_per_msg"], 1), _n(s["cpu_to_ccxt"], 2),
                         _n(s.get("cpu_to_same_loop", s["cpu_to_ccxt"]), 2), _latency_ms(s), f"{s['observed']:.0%}",
                         _n(s["pushes_per_wakeup"], 2)])
    return _table(
        ["msg/s", "client", "CPU µs/msg", "CPU × ccxt.pro's", "CPU × ccxt.pro's on the same loop",
         "latency ms p50/p99/max", "pushes its consumers saw", "pushes per consumer wake-up"],
        rows,
    )


def _binance(r: dict[str, Any]) -> str:
    """Burst and per-packet live rates of the Binance lineup, with tradeloop's ratio to each peer."""
    labels, peers = r["labels"], list(r["burst"]["ratio_tradeloop_to"])
    burst = r["burst"]
    burst_rows = [[labels[client], _n(s["msgs_per_s"]), _n(s["cpu_us_per_msg"], 1)]
                  for client, s in burst["summary"].items()]
    burst_rows.append(["tradeloop × " + " / ".join(labels[p] for p in peers), " / ".join(
        _n(burst["ratio_tradeloop_to"][p], 2) for p in peers), ""])
    live_rows = []
    for rate, data in r["live"].items():
        for client, s in data["summary"].items():
            live_rows.append([_n(int(rate)), labels[client], _n(s["cpu_us_per_msg"], 1), _latency_ms(s),
                              f"{s['observed']:.0%}"])
        live_rows.append([_n(int(rate)), "tradeloop's CPU × " + " / ".join(labels[p] for p in peers),
                          " / ".join(_n(data["cpu_ratio_tradeloop_to"][p], 2) for p in peers), "", ""])
    behind = [f"{labels[client]} fell behind at {_n(int(rate))} msg/s (its consumers saw {s['observed']:.0%} of the "
              "pushes): it read many pushes per receive, so its CPU per message is lower than keeping up costs."
              for rate, data in r["live"].items() for client, s in data["summary"].items() if s["observed"] < 0.99]
    return "\n\n".join([
        f"Burst: {_n(burst['pushes'])} pushes of one topic, {r['consumers']} consumers",
        _table(["client", "msgs/s", "CPU µs/msg"], burst_rows),
        f"Live rates, one frame per packet: {r['topics']} topics, {r['seconds']:g} s per run",
        _table(["msg/s", "client", "CPU µs/msg", "latency ms p50/p99/max", "pushes its consumers saw"], live_rows),
        *behind,
    ])


def _ccxt_adapter(r: dict[str, Any]) -> str:
    names = {"bare": "bare ccxt.pro (`watch_ohlcv` on asyncio)", "adapter": "`ccxt:bingx` adapter, under Trio",
             "streams": "adapter + stream layer (`StreamManager.klines`)"}
    rows = [[names.get(mode, mode), _n(m["msgs_per_s"]), _n(m["cpu_us_per_msg"], 1), _n(m["overhead_us_per_msg"], 1)]
            for mode, m in r["modes"].items()]
    return (_table(["mode", "msgs/s", "CPU µs/msg", "overhead µs/msg over bare ccxt.pro"], rows)
            + f"\n\n{r['seconds']:g} s per mode, {r['rounds']} round(s). One `AsyncioThread.run` round trip "
            f"(what each REST call through the adapter adds): {r['call_us']:.1f} µs.")


def _scale_table(r: dict[str, Any]) -> str:
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


@dataclass(frozen=True, slots=True)
class _Goal:
    issue: int
    text: str
    measure: Callable[[dict[str, Any], str], float | None]
    """The measured value for a tradeloop variant's key (None where that variant did not run)."""
    unit: str
    met: Callable[[float], bool]
    on_uvloop: Callable[[dict[str, Any]], float | None] = lambda results: None
    """The same goal for tradeloop on asyncio+uvloop, measured against its peer on uvloop too
    (None where the goal has no such peer in the run)."""


def _live_cpu_ratio(feed: str, rate: str) -> Callable[[dict[str, Any], str], float | None]:
    def measure(results: dict[str, Any], key: str) -> float | None:
        summary = results["live"]["feeds"][feed].get(rate, {}).get("summary", {})
        return summary[key]["cpu_to_ccxt"] if key in summary else None

    return measure


def _uvloop_cpu_ratio(feed: str, rate: str) -> Callable[[dict[str, Any]], float | None]:
    """tradeloop on uvloop over ccxt.pro on uvloop, where both ran."""

    def measure(results: dict[str, Any]) -> float | None:
        summary = results["live"]["feeds"][feed].get(rate, {}).get("summary", {})
        if "tradeloop_uvloop" not in summary or "ccxt_uvloop" not in summary:
            return None
        return float(summary["tradeloop_uvloop"]["cpu_to_same_loop"])

    return measure


def _binance_uvloop_ratio(field: str, peer: str, rate: str | None) -> Callable[[dict[str, Any]], float | None]:
    """tradeloop on uvloop over ``peer`` at ``rate`` (None: the top one), for a peer on uvloop:
    cryptofeed (its default). ccxt.pro's binance client runs on plain asyncio in the Binance
    lineup, so against it there is no same-loop ratio."""

    def measure(results: dict[str, Any]) -> float | None:
        live = results.get("binance", {}).get("live")
        if not live or peer != "cryptofeed":
            return None
        summary = live[rate or max(live, key=int)]["summary"]
        if "tradeloop_binance_uvloop" not in summary:
            return None
        return float(summary["tradeloop_binance_uvloop"][field] / summary[peer][field])

    return measure


def _burst_ratio(results: dict[str, Any], key: str) -> float | None:
    summary = results["burst"]["summary"]
    return summary[key]["msgs_per_s"] / summary["ccxt"]["msgs_per_s"] if key in summary else None


def _p99_ms(results: dict[str, Any], key: str) -> float | None:
    summary = results["live"]["feeds"]["batched"].get("10000", {}).get("summary", {})
    return summary[key]["latency_p99_us"] / 1000 if key in summary else None


def _scale(*fields: str) -> Callable[[dict[str, Any], str], float | None]:
    """The sum of scale measurements: only today's tradeloop runs there."""

    def measure(results: dict[str, Any], key: str) -> float | None:
        s = results["scale"]["summary"]
        return float(sum(s[f] for f in fields)) if key == "tradeloop" else None

    return measure


def _binance_burst_ratio(peer: str) -> Callable[[dict[str, Any], str], float | None]:
    def measure(results: dict[str, Any], key: str) -> float | None:
        binance = results.get("binance")
        return binance["burst"]["ratio_tradeloop_to"][peer] if binance and key == "tradeloop" else None

    return measure


def _binance_cpu_ratio(peer: str, rate: str) -> Callable[[dict[str, Any], str], float | None]:
    def measure(results: dict[str, Any], key: str) -> float | None:
        data = results["binance"]["live"].get(rate) if "binance" in results and key == "tradeloop" else None
        return data["cpu_ratio_tradeloop_to"][peer] if data else None

    return measure


def _binance_p99_ratio(peer: str) -> Callable[[dict[str, Any], str], float | None]:
    """tradeloop's p99 latency over ``peer``'s at the highest rate measured."""

    def measure(results: dict[str, Any], key: str) -> float | None:
        if "binance" not in results or key != "tradeloop":
            return None
        live = results["binance"]["live"]
        summary = live[max(live, key=int)]["summary"]
        return float(summary["tradeloop_binance"]["latency_p99_us"] / summary[peer]["latency_p99_us"])

    return measure


_GOALS = (
    _Goal(5, "burst ≥ 2× ccxt.pro msgs/s", _burst_ratio, "×", lambda v: v >= 2),
    _Goal(5, "CPU/msg at 2,000 msg/s ≤ ½ ccxt.pro's (many frames per send_all)", _live_cpu_ratio("batched", "2000"),
          "×", lambda v: v <= 0.5),
    _Goal(5, "CPU/msg at 10,000 msg/s ≤ ½ ccxt.pro's (many frames per send_all)",
          _live_cpu_ratio("batched", "10000"), "×", lambda v: v <= 0.5),
    _Goal(5, "latency p99 < 2 ms at 10,000 msg/s", _p99_ms, " ms", lambda v: v < 2),
    _Goal(5, "shutdown < 1 s at {topics} topics", _scale("shutdown_s"), " s", lambda v: v < 1),
    _Goal(5, "memory < 150 MB at {topics} topics", _scale("rss_mb"), " MB", lambda v: v < 150),
    _Goal(5, "tasks and sockets left after shutdown = 0", _scale("tasks_left", "sockets_left"), "", lambda v: v == 0),
    _Goal(9, "burst ≥ 3× ccxt.pro msgs/s to 3 consumers", _burst_ratio, "×", lambda v: v >= 3),
    _Goal(9, "CPU/msg at 2,000 msg/s ≤ 0.5× ccxt.pro's, one frame per packet", _live_cpu_ratio("per_packet", "2000"),
          "×", lambda v: v <= 0.5, _uvloop_cpu_ratio("per_packet", "2000")),
    _Goal(9, "CPU/msg at 10,000 msg/s ≤ 0.4× ccxt.pro's, one frame per packet",
          _live_cpu_ratio("per_packet", "10000"), "×", lambda v: v <= 0.4, _uvloop_cpu_ratio("per_packet", "10000")),
    *(goal for peer, name in (("ccxt_binance", "ccxt.pro binance"), ("cryptofeed", "cryptofeed")) for goal in (
        _Goal(11, f"Binance burst ahead of {name} (msgs/s ×)", _binance_burst_ratio(peer), "×", lambda v: v > 1),
        _Goal(11, f"Binance CPU/msg at 2,000 msg/s below {name}'s (×), one frame per packet",
              _binance_cpu_ratio(peer, "2000"), "×", lambda v: v < 1,
              _binance_uvloop_ratio("cpu_us_per_msg", peer, "2000")),
        _Goal(11, f"Binance CPU/msg at 10,000 msg/s below {name}'s (×), one frame per packet",
              _binance_cpu_ratio(peer, "10000"), "×", lambda v: v < 1,
              _binance_uvloop_ratio("cpu_us_per_msg", peer, "10000")),
        _Goal(11, f"Binance p99 latency at the top rate below {name}'s (×)", _binance_p99_ratio(peer), "×",
              lambda v: v < 1,
              _binance_uvloop_ratio("latency_p99_us", peer, None)),
    )),
)


def _measured(value: float | None, unit: str) -> str:
    if value is None:
        return ""
    digits = 0 if not unit else 1 if unit == " MB" else 2
    return f"{value:.{digits}f}{unit}"


_FLOORS = {"bare_trio": "bare-Trio floor", "bare_trio_consumer": "bare-Trio floor + a consumer task"}
"""Reference columns of the goals table: what the floors measure on the same goal, where they ran."""


def _goals(results: dict[str, Any]) -> str:
    baselines = results.get("baselines", {})
    topics = _n(results["scale"]["topics"])
    goals = [goal for goal in _GOALS if goal.measure(results, "tradeloop") is not None]  # rates this run measured
    floors = {key: label for key, label in _FLOORS.items() if any(g.measure(results, key) is not None for g in goals)}
    uvloop = any(goal.on_uvloop(results) is not None for goal in goals)
    rows = []
    for goal in goals:
        value = goal.measure(results, "tradeloop")
        assert value is not None
        on_uvloop = goal.on_uvloop(results)
        uvloop_cells = [] if not uvloop else ["" if on_uvloop is None else
                                              f"{_measured(on_uvloop, goal.unit)} ({_yes(goal.met(on_uvloop))})"]
        rows.append([f"#{goal.issue}", goal.text.format(topics=topics), _measured(value, goal.unit),
                     _yes(goal.met(value)), *uvloop_cells,
                     *(_measured(goal.measure(results, key), goal.unit) for key in [*baselines, *floors])])
    labels = (["on asyncio+uvloop, against the peer on uvloop (met)"] if uvloop else []) + [
        f"{label}: measured" for label in baselines.values()] + list(floors.values())
    return _table(["issue", "goal", "measured (on Trio)", "met", *labels], rows)


def _fell_behind(live: dict[str, Any]) -> str:
    """A note for every live run where ccxt.pro missed pushes: its CPU ratio there flatters it."""
    notes = []
    for feed, name in FEEDS.items():
        for rate, data in live["feeds"][feed].items():
            ccxt = data["summary"]["ccxt"]
            if ccxt["observed"] < 0.99:
                p50_ms = ccxt["latency_p50_us"] / 1000
                notes.append(f"ccxt.pro fell behind at {_n(int(rate))} msg/s, {name} (its consumers saw "
                             f"{ccxt['observed']:.0%} of the pushes, p50 latency {p50_ms:.1f} ms): it read many "
                             "pushes per receive, so its CPU per message is lower than keeping up costs.")
    return "\n\n".join(notes)


def _yes(met: bool) -> str:
    return "yes" if met else "**no**"


def _profile(profile: dict[str, Any] | None) -> str:
    if not profile:
        return ""
    layers = profile["profile"]["layers"]
    rows = [[layer, f"{share:.0%}"] for layer, share in layers.items() if share >= 0.005]
    per_push = [[label, f"{count:.2g}"] for label, count in profile["profile"]["per_push"].items()]
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
        *(part for feed, name in FEEDS.items() for part in (
            f"### Live rates, {name}: {results['live']['topics']} topics, {results['live']['seconds']:g} s per run",
            _live(results["live"], feed),
        )),
        *(("### Binance USDⓈ-M klines: tradeloop, ccxt.pro binance, cryptofeed BinanceFutures",
           _binance(results["binance"])) if "binance" in results else ()),
        *(("### The ccxt adapter's cost over bare ccxt.pro (the simulator's BingX swap klines)",
           _ccxt_adapter(results["ccxt_adapter"])) if "ccxt_adapter" in results else ()),
        "### Scale and shutdown",
        _scale_table(results["scale"]),
        "### Recovery (simulator at 60× speed: one 1m candle per real second)",
        _recovery(results["recovery"]),
        "### Goals",
        _goals(results),
    ]
    behind = _fell_behind(results["live"])
    if behind:
        parts.append(behind)
    profile = _profile(results["burst"].get("profile"))
    if profile:
        parts += [f"### Where tradeloop's burst time goes ({_n(results['burst']['profile']['msgs_per_s'])} msgs/s "
                  "under the profiler)", profile]
    return "\n\n".join(parts) + "\n"


def binance_markdown(results: dict[str, Any]) -> str:
    """The Binance tables alone (``python -m benchmarks.bench_binance``)."""
    return _binance(results["binance"]) + "\n"


def plot(results: dict[str, Any], path: Path) -> None:
    """Burst msgs/s of every path, and CPU µs per message of the clients and the floors in every run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    burst, live, floor = results["burst"], results["live"], results["floor"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(14, 6))
    colors = {key: f"C{i % 10}" for i, key in enumerate(burst["summary"])}  # matplotlib's default cycle
    names = ["decoding floor", *(textwrap.fill(burst["labels"][key], 32) for key in burst["summary"])]
    rates = [burst["floor_msgs_per_s"], *(s["msgs_per_s"] for s in burst["summary"].values())]
    bars = left.barh(names[::-1], [r / 1000 for r in rates[::-1]],
                     color=["#999999", *(colors[key] for key in burst["summary"])][::-1])
    left.bar_label(bars, labels=[f"{r / 1000:,.0f}k" for r in rates[::-1]], padding=3)
    left.set_xlabel("thousand messages per second (higher is better)")
    left.set_title(f"Burst: {burst['pushes']:,} pushes, 3 consumers")
    left.set_xlim(0, max(rates) / 1000 * 1.25)
    left.tick_params(axis="y", labelsize=7)

    runs = [("burst", burst["summary"])] + [
        (f"{int(rate) // 1000}k/s {'packets' if feed == 'per_packet' else 'batched'}", data["summary"])
        for feed in FEEDS for rate, data in live["feeds"][feed].items()
    ]
    series = ["tradeloop", "ccxt", "bare_trio", *results.get("baselines", {})]
    width = 0.8 / len(series)
    for n, key in enumerate(series):
        values = [summary[key]["cpu_us_per_msg"] if key in summary else math.nan for _, summary in runs]
        bar = right.bar([i - 0.4 + (n + 0.5) * width for i in range(len(runs))], values, width,
                        label=burst["labels"][key].split(" (")[0], color=colors[key])
        right.bar_label(bar, labels=["" if math.isnan(v) else f"{v:.0f}" for v in values], padding=2, fontsize=7)
    right.axhline(floor["floor"], color="#999999", linestyle="--",
                  label=f"decoding floor, no socket ({floor['floor']:.1f} µs)")
    right.set_xticks(range(len(runs)), [name for name, _ in runs], fontsize=8)
    right.set_ylabel("CPU µs per message (lower is better)")
    right.set_title("CPU per message: burst, and paced over 100 topics")
    highest = max(s["cpu_us_per_msg"] for _, summary in runs for key, s in summary.items() if key in series)
    right.set_ylim(0, highest * 1.4)  # room for the legend above the bars
    right.legend(loc="upper right", fontsize=8)
    m = results["machine"]
    fig.suptitle(f"tradeloop vs ccxt.pro on BingX swap klines — {m['cpu']}, {m['cores']} cores, loopback", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
