"""``python -m benchmarks [--quick] [--out DIR]``: run every benchmark, write JSON, tables and a plot.

A full run writes to ``benchmarks/results`` (committed); a quick run to a temporary directory.
Order: the decoding floor (in this process), burst throughput, live rates, scale and shutdown,
recovery. Each writes ``<name>.json`` in the results directory as soon as it is done; the end
writes ``summary.md`` (the tables also printed here) and ``throughput.png``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from . import bench_burst, bench_live, bench_recovery, bench_scale
from .floor import measure_floor
from .harness import machine
from .modes import FULL, QUICK
from .report import markdown, plot

_RESULTS = Path(__file__).resolve().parent / "results"
_QUICK_RESULTS = Path(tempfile.gettempdir()) / "tradeloop-benchmarks-quick"


def _save(directory: Path, name: str, data: dict[str, Any]) -> None:
    (directory / f"{name}.json").write_text(json.dumps(data, indent=1) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, one run each (under a minute)")
    parser.add_argument(
        "--out", type=Path, help=f"results directory (default: {_RESULTS} for a full run, {_QUICK_RESULTS} for quick)"
    )
    args = parser.parse_args()
    mode = QUICK if args.quick else FULL
    if args.out is None:
        # A quick run must not overwrite the committed results of a full run.
        args.out = _QUICK_RESULTS if args.quick else _RESULTS
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    results: dict[str, Any] = {"mode": mode.name, "runs": mode.runs, "machine": machine()}

    def step(name: str, data: dict[str, Any]) -> None:
        results[name] = data
        _save(args.out, name, {"mode": mode.name, "machine": results["machine"], **data})
        print(f"[{time.perf_counter() - started:5.1f} s] {name} done", flush=True)

    step("floor", measure_floor(mode.floor_pushes))
    step("burst", bench_burst.run(mode, results["floor"]["floor_msgs_per_s"]))
    step("live", bench_live.run(mode))
    step("scale", bench_scale.run(mode))
    step("recovery", bench_recovery.run(mode))
    summary = markdown(results)
    (args.out / "summary.md").write_text(summary)
    plot(results, args.out / "throughput.png")
    print()
    print(summary)
    print(f"results in {args.out} ({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
