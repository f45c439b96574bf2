"""Market data across machines over Redis Streams: collectors publish, engines consume.

See :mod:`tradeloop.distributed.keys` for the key scheme, :mod:`.publisher` for ``tradeloop
publish`` and :mod:`.consumer` for the engine side (consumer groups, topic leases, acks).
"""

from .client import RedisError, RedisTimeouts, open_redis
from .keys import StreamKey

__all__ = ["RedisError", "RedisTimeouts", "StreamKey", "open_redis"]
