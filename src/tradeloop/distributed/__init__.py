"""Market data across machines over Redis Streams: collectors publish, engines consume.

See :mod:`tradeloop.distributed.keys` for the key scheme, :mod:`.publisher` for ``tradeloop
publish`` and :mod:`.consumer` for the engine side (consumer groups, topic leases, acks).

The Redis client (coredis) is imported on first use of :class:`RedisError` or :func:`open_redis`
(a module ``__getattr__``), not with the package: it is most of tradeloop's import time, and
configs and commands that never touch Redis import this package for its settings.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .keys import StreamKey
from .settings import RedisTimeouts

if TYPE_CHECKING:
    from .client import RedisError, open_redis

__all__ = ["RedisError", "RedisTimeouts", "StreamKey", "open_redis"]


def __getattr__(name: str) -> Any:
    if name in ("RedisError", "open_redis"):
        from . import client

        return getattr(client, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
