"""``python -m benchmarks [--quick] [--out DIR] [--baseline REV]``: run every benchmark, write JSON, tables, a plot.

A full run writes to ``benchmarks/results`` (committed); a quick run to a temporary directory.
Order: the decoding floor (in this process), burst throughput, live rates, Binance side by side
(:mod:`benchmarks.bench_binance`), the ccxt adapter's cost (:mod:`benchmarks.bench_ccxt_adapter`),
scale and shutdown, recovery. Each writes ``<name>.json`` in the results directory as soon as it
is done; the end writes ``summary.md`` (the tables also printed here) and ``throughput.png``.

With ``--baseline REV`` (repeatable) the burst and live-rate benchmarks also run the tradeloop
client on the tradeloop of git revision REV, as rows "tradeloop @REV" (see :mod:`benchmarks.baseline`).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from . import bench_binance, bench_burst, bench_ccxt_adapter, bench_live, bench_recovery, bench_scale
from .baseline import BaselineError, checkouts, resolve
from .floor import measure_floor
from .harness import machine
from .modes import FULL, QUICK, Mode
from .report import markdown, plot
from .variants import Variant

_RESULTS = Path(__file__).resolve().parent / "results"
_QUICK_RESULTS = Path(tempfile.gettempdir()) / "tradeloop-benchmarks-quick"


def _save(directory: Path, name: str, data: dict[str, Any]) -> None:
    (directory / f"{name}.json").write_text(json.dumps(data, indent=1) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, one run each (about 3 minutes)")
    parser.add_argument(
        "--out", type=Path, help=f"results directory (default: {_RESULTS} for a full run, {_QUICK_RESULTS} for quick)"
    )
    parser.add_argument(
        "--baseline",
        action="append",
        default=[],
        metavar="REV",
        help="also run the tradeloop client on the tradeloop of git revision REV (repeatable)",
    )
    args = parser.parse_args()
    mode = QUICK if args.quick else FULL
    if args.out is None:
        # A quick run must not overwrite the committed results of a full run.
        args.out = _QUICK_RESULTS if args.quick else _RESULTS
    with ExitStack() as stack:
        try:
            baselines = stack.enter_context(checkouts([resolve(revision) for revision in args.baseline]))
        except BaselineError as exc:
            parser.error(str(exc))
        _run_all(mode, args.out, baselines)


def _run_all(mode: Mode, out: Path, baselines: list[Variant]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    results: dict[str, Any] = {
        "mode": mode.name,
        "runs": mode.runs,
        "machine": machine(),
        "baselines": {variant.key: variant.label for variant in baselines},
    }

    def step(name: str, data: dict[str, Any]) -> None:
        results[name] = data
        _save(out, name, {"mode": mode.name, "machine": results["machine"], **data})
        print(f"[{time.perf_counter() - started:5.1f} s] {name} done", flush=True)

    step("floor", measure_floor(mode.floor_pushes))
    step("burst", bench_burst.run(mode, results["floor"]["floor_msgs_per_s"], baselines))
    step("live", bench_live.run(mode, baselines))
    step("binance", bench_binance.run(mode))
    step("ccxt_adapter", bench_ccxt_adapter.run(quick=mode is QUICK))
    step("scale", bench_scale.run(mode))
    step("recovery", bench_recovery.run(mode))
    summary = markdown(results)
    (out / "summary.md").write_text(summary)
    plot(results, out / "throughput.png")
    print()
    print(summary)
    print(f"results in {out} ({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
