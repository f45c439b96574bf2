"""Processes and numbers: the feed server and client processes, medians and percentiles.

The orchestrator is plain synchronous Python: it starts the feed server once per benchmark, then
one client process per run, and talks to both over pipes with a deadline on every read, so a
stuck process ends the benchmark with an error instead of hanging it.
"""

from __future__ import annotations

import json
import os
import platform
import select
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import IO, Any

import psutil  # type: ignore[import-untyped]

from .variants import Variant

__all__ = [
    "FeedProcess",
    "ServerProcess",
    "machine",
    "median",
    "percentiles",
    "read_client_result",
    "read_json_line",
    "run_client",
    "start_client",
    "start_python",
    "stop_client",
]

_STARTUP_TIMEOUT = 30.0
_REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def start_python(*args: str) -> subprocess.Popen[str]:
    """``python -m <args>`` in this interpreter, with pipes for stdin and stdout."""
    return subprocess.Popen(
        [sys.executable, "-m", *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=_REPOSITORY,
    )


def read_json_line(process: subprocess.Popen[str], timeout: float) -> dict[str, Any]:
    """The next JSON line the process prints, waiting at most ``timeout`` seconds."""
    stdout: IO[str] | None = process.stdout
    assert stdout is not None
    ready, _, _ = select.select([stdout], [], [], timeout)
    if not ready:
        raise TimeoutError(f"{process.args!r} printed nothing for {timeout:g} s")
    line = stdout.readline()
    if not line:
        raise RuntimeError(f"{process.args!r} exited with {process.wait(5)} before answering")
    reply: dict[str, Any] = json.loads(line)
    return reply


def _stop(process: subprocess.Popen[str]) -> None:
    if process.stdin is not None and not process.stdin.closed:
        process.stdin.close()
    try:
        process.wait(5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)
    _close_output(process)


def _close_output(process: subprocess.Popen[str]) -> None:
    """Close our end of the process's stdout pipe (left open, it leaks one descriptor per run)."""
    if process.stdout is not None:
        process.stdout.close()


class ServerProcess:
    """A process driven by JSON-line commands (:mod:`benchmarks.control`); ``hello`` is its first line."""

    def __init__(self, module: str, *args: str) -> None:
        self.module = module
        self.process = start_python(module, *args)
        try:
            self.hello = read_json_line(self.process, _STARTUP_TIMEOUT)
        except BaseException:
            _stop(self.process)
            raise

    def command(self, timeout: float = 120.0, **command: Any) -> dict[str, Any]:
        stdin = self.process.stdin
        assert stdin is not None
        stdin.write(json.dumps(command) + "\n")
        stdin.flush()
        reply = read_json_line(self.process, timeout)
        if not reply.pop("ok"):
            raise RuntimeError(f"{self.module} failed {command['cmd']!r}: {reply['error']}")
        return reply

    def close(self) -> None:
        _stop(self.process)

    @classmethod
    @contextmanager
    def running(cls, module: str, *args: str) -> Iterator[ServerProcess]:
        server = cls(module, *args)
        try:
            yield server
        finally:
            server.close()


class FeedProcess(ServerProcess):
    """The load generator (``benchmarks.feed``) in its own process."""

    def __init__(self, dialect: str = "bingx") -> None:
        super().__init__("benchmarks.feed", dialect)
        self.url: str = self.hello["url"]

    @classmethod
    @contextmanager
    def start(cls, dialect: str = "bingx") -> Iterator[FeedProcess]:
        feed = cls(dialect)
        try:
            yield feed
        finally:
            feed.close()


def run_client(
    feed: FeedProcess, variant: Variant, spec: dict[str, Any], command: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Start a ``variant`` client process with ``spec``, have the server run ``command`` for it, return both results.

    The server command waits for the client's subscriptions itself, so there is no race between the
    client subscribing and the pushes starting.
    """
    client = start_client(variant, spec)
    try:
        served = feed.command(timeout=spec["timeout"], **command)
        measured = read_client_result(client, variant, spec["timeout"])
    finally:
        stop_client(client)
    feed.command(cmd="wait_idle", timeout=30)
    return served, measured


def start_client(variant: Variant, spec: dict[str, Any]) -> subprocess.Popen[str]:
    """A measured client process (:mod:`benchmarks.client`) running ``variant`` with ``spec``."""
    return subprocess.Popen(
        [sys.executable, "-m", "benchmarks.client", json.dumps(variant.spec(**spec))],
        stdout=subprocess.PIPE,
        text=True,
        cwd=_REPOSITORY,
        env=variant.environment(),
    )


def read_client_result(client: subprocess.Popen[str], variant: Variant, timeout: float) -> dict[str, Any]:
    """The client's result line, checked to come from the ``tradeloop`` the variant asked for."""
    measured = read_json_line(client, timeout)
    imported = measured.get("tradeloop_imported_from")
    if variant.pythonpath is not None and not (imported or "").startswith(variant.pythonpath):
        raise RuntimeError(f"{variant.label} imported tradeloop from {imported}, not from {variant.pythonpath}")
    return measured


def stop_client(client: subprocess.Popen[str]) -> None:
    """Wait briefly for a client that has answered to exit; kill one that has not."""
    try:
        client.wait(10)
    except subprocess.TimeoutExpired:
        client.kill()
        client.wait(5)
    _close_output(client)


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def percentiles(values: Sequence[float]) -> dict[str, float]:
    """p50, p99 and max of ``values`` (nearest-rank)."""
    ordered = sorted(values)
    if not ordered:
        return {"p50": float("nan"), "p99": float("nan"), "max": float("nan")}

    def rank(q: float) -> float:
        return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]

    return {"p50": rank(0.50), "p99": rank(0.99), "max": ordered[-1]}


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    frequency = psutil.cpu_freq()
    return {
        "cpu": _cpu_model(),
        "cores": psutil.cpu_count(logical=True),
        "cpu_mhz": round(frequency.current) if frequency else None,
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "system": f"{platform.system()} {platform.release()}",
        "date": time.strftime("%Y-%m-%d"),
    }


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"
