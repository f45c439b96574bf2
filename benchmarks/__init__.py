"""tradeloop's benchmarks: throughput, CPU per message, latency, scale, shutdown and recovery.

Run ``python -m benchmarks`` (full) or ``python -m benchmarks --quick``. Every number is measured
in the run that reports it; ccxt.pro is measured side by side against the same server. These are
not tests: nothing here asserts a timing.
"""
