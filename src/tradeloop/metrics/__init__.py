"""Prometheus metrics of a running command, served from its health snapshot (``--metrics-port``)."""

from .collector import Snapshot, SnapshotCollector
from .server import serve_metrics

__all__ = ["Snapshot", "SnapshotCollector", "serve_metrics"]
