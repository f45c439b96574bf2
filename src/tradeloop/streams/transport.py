"""A client WebSocket whose TCP stream is closed on every path.

Two gaps in trio-websocket (0.12) make a reconnect loop leak sockets:
- ``connect_websocket_url`` opens the TCP (and TLS) stream, then waits for the opening
  handshake; cancelled during that wait, it never closes the stream;
- as a client it leaves the stream open when the *server* closes first, abnormally or with a
  close frame (RFC 6455 lets a client wait for the server's TCP close), and ``aclose()`` then
  returns at once because the connection already counts as closed.
So we own the stream and close it ourselves when the session ends. This module is also the
seam where a different WebSocket implementation would plug in.
"""

from __future__ import annotations

import math
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

import trio
import trio_websocket

__all__ = ["websocket_session"]

_DEFAULT_PORTS = {"ws": 80, "wss": 443}


@asynccontextmanager
async def websocket_session(
    url: str, *, connect_timeout: float, close_timeout: float, message_queue_size: int
) -> AsyncIterator[trio_websocket.WebSocketConnection]:
    """Connect to ``url`` (ws:// or wss://) within ``connect_timeout``; close on exit.

    On exit the closing handshake is attempted (shielded, within ``close_timeout``) unless we are
    being cancelled: then trio-websocket's reader, which completes the handshake, is being
    cancelled too and waiting would only wait out the timeout, so the stream is closed at once.
    """
    parts = urlsplit(url)
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
        raise ValueError(f"invalid WebSocket URL {url!r}: expected ws://host[:port]/path or wss://...")
    port = parts.port or _DEFAULT_PORTS[parts.scheme]
    resource = parts.path or "/"
    if parts.query:
        resource = f"{resource}?{parts.query}"
    host_header = parts.hostname if port in (80, 443) else f"{parts.hostname}:{port}"
    async with trio.open_nursery() as nursery:
        stream: trio.SocketStream | trio.SSLStream[trio.SocketStream] | None = None
        try:
            with trio.fail_after(connect_timeout):
                if parts.scheme == "wss":
                    stream = await trio.open_ssl_over_tcp_stream(
                        parts.hostname, port, ssl_context=ssl.create_default_context(), https_compatible=True
                    )
                else:
                    stream = await trio.open_tcp_stream(parts.hostname, port)
                ws = await trio_websocket.wrap_client_stream(
                    nursery, stream, host_header, resource, message_queue_size=message_queue_size
                )
            try:
                yield ws
            finally:
                if trio.current_effective_deadline() == -math.inf:
                    await trio.aclose_forcefully(ws)
                else:
                    with trio.move_on_after(close_timeout) as cleanup:
                        cleanup.shield = True
                        await ws.aclose()
        finally:
            if stream is not None:
                await trio.aclose_forcefully(stream)
            nursery.cancel_scope.cancel()
