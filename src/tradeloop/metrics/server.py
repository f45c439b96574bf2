"""``GET /metrics`` over a small anyio HTTP/1.1 handler, inside the caller's task group.

prometheus_client's own server runs in a thread, outside structured concurrency; this one is a
task of the command's nursery, so it stops with the command. It answers one request per
connection (``Connection: close``), which is all a Prometheus scrape needs, and bounds every read:
a request head over 8 KiB or slower than 5 s is dropped.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import anyio
import anyio.abc
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from .collector import Snapshot, SnapshotCollector

__all__ = ["serve_metrics"]

log = logging.getLogger(__name__)

_MAX_HEAD = 8192
_REQUEST_TIMEOUT = 5.0


async def serve_metrics(
    snapshot: Callable[[], Snapshot],
    port: int,
    host: str = "127.0.0.1",
    *,
    task_status: anyio.abc.TaskStatus[int] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``snapshot()`` as Prometheus text at ``http://host:port/metrics`` until cancelled.

    ``task_status.started(port)`` reports the bound port (useful with port 0). Raises OSError if
    the address cannot be bound.
    """
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(snapshot))
    listener = await anyio.create_tcp_listener(local_host=host, local_port=port)
    async with listener:
        bound: int = listener.extra(anyio.abc.SocketAttribute.local_port)
        log.info("metrics at http://%s:%d/metrics", host, bound)
        task_status.started(bound)
        await listener.serve(lambda stream: _answer(stream, registry))


async def _answer(stream: anyio.abc.SocketStream, registry: CollectorRegistry) -> None:
    async with stream:
        with anyio.move_on_after(_REQUEST_TIMEOUT):
            try:
                head = await _read_head(stream)
                if head is None:
                    return
                try:
                    reply = _response(head, registry)
                except Exception:  # a snapshot that cannot be read: this scrape fails, not the program
                    log.exception("metrics: the snapshot could not be turned into metrics")
                    reply = _reply(500, "Internal Server Error", b"the snapshot could not be read\n", "text/plain")
                await stream.send(reply)
            except (anyio.EndOfStream, anyio.BrokenResourceError, OSError) as exc:
                log.debug("metrics client went away: %r", exc)


async def _read_head(stream: anyio.abc.SocketStream) -> bytes | None:
    head = b""
    while b"\r\n\r\n" not in head:
        if len(head) > _MAX_HEAD:
            return None
        head += await stream.receive()
    return head


def _response(head: bytes, registry: CollectorRegistry) -> bytes:
    method, _, rest = head.partition(b" ")
    target = rest.partition(b" ")[0].partition(b"?")[0]
    if method not in (b"GET", b"HEAD"):
        return _reply(405, "Method Not Allowed", b"only GET\n", "text/plain", extra="Allow: GET, HEAD\r\n")
    if target != b"/metrics":
        return _reply(404, "Not Found", b"see /metrics\n", "text/plain")
    body = generate_latest(registry)
    return _reply(200, "OK", b"" if method == b"HEAD" else body, CONTENT_TYPE_LATEST, length=len(body))


def _reply(
    status: int, reason: str, body: bytes, content_type: str, *, extra: str = "", length: int | None = None
) -> bytes:
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body) if length is None else length}\r\nConnection: close\r\n{extra}\r\n"
    )
    return head.encode() + body
