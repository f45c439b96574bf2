"""The simulator's TCP listeners: opened on one port, served until cancelled, then closed.

Both servers (WebSocket and REST) accept the same way; anyio's listener leaves closing itself to
its owner, so :func:`serve` closes it when accepting stops (cancelled by the server's shutdown).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio
import anyio.abc
from anyio.abc import SocketAttribute

__all__ = ["Listener", "listen", "port", "serve"]

Listener = anyio.abc.Listener[anyio.abc.SocketStream]


async def listen(host: str, port: int) -> Listener:
    """Listen on every address of ``host``; with port 0 anyio binds them all to one free port."""
    return await anyio.create_tcp_listener(local_host=host, local_port=port)


def port(listener: Listener) -> int:
    bound: int = listener.extra(SocketAttribute.local_port)
    return bound


async def serve(
    listener: Listener,
    handler: Callable[[anyio.abc.SocketStream], Awaitable[None]],
    handlers: anyio.abc.TaskGroup,
) -> None:
    """Accept connections into ``handlers`` (one task each) until cancelled; then close the listener."""
    async with listener:
        await listener.serve(handler, handlers)
