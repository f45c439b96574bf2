"""The Redis connection seam: one client object per process, one error type out of it.

We use coredis rather than a hand-written RESP client or redis-py: redis-py's asyncio client does
not run under Trio, while coredis is a maintained, fully typed client built on anyio, so it runs
natively under Trio (and asyncio), parses with hiredis, pools connections inside a task group it
owns (structured: ``async with`` opens and closes it) and reads ``redis://`` and ``rediss://``
URLs with password and database number. Its timeouts are anyio deadlines, on the running
backend's clock (Trio's or asyncio's).

Every coredis and socket error crossing this seam becomes :class:`RedisError`; callers never see a
third-party exception. Bad URLs are :class:`~tradeloop.errors.InvalidValueError`.
"""

from __future__ import annotations

import logging
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any, TypeVar
from urllib.parse import urlsplit

import anyio
import coredis
import coredis.exceptions
from anyio.abc import TaskStatus

from .._groups import sole_error
from ..errors import TradeloopError
from ..streams.backoff import full_jitter_delay
from ..streams.errors import LogThrottle
from .settings import RedisTimeouts, check_redis_url, redacted_url

__all__ = [
    "RedisClient",
    "RedisError",
    "RedisTimeouts",
    "RedisUnavailable",
    "check_redis_url",
    "open_redis",
    "redacted_url",
    "redis_errors",
    "until_available",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

RedisClient = coredis.Redis[bytes]
"""The client type the rest of the package takes (responses stay bytes: entries are msgspec JSON)."""


class RedisError(TradeloopError):
    """Redis cannot be reached, refused a command, or answered something we cannot use."""


class RedisUnavailable(RedisError):
    """The connection failed or timed out, or the server is still loading its data: worth retrying."""


class RedisGroupLost(RedisError):
    """A stream's consumer group is gone (NOGROUP): Redis restarted without its data, or someone
    deleted the stream. Its engine recreates the group and goes on from what it processed."""


class _ClosingConnection(coredis.connection.TCPConnection):
    """coredis's TCP connection, with its buffers closed however its run ends.

    coredis 6.9 opens a connection's three anyio memory streams when it constructs the connection
    and closes them only in the ``async with`` it enters once the socket is connected. A connect
    that fails (refused, timed out) or is cancelled (a collector or engine stopped while
    connecting) left the six ends to the garbage collector, which reports each as a
    ``ResourceWarning``: under ``-W error`` a test that stops an engine mid-connect failed on it.
    Closing a memory stream twice is harmless, so we close them after every run.
    """

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        try:
            await super().run(task_status=task_status)
        except coredis.exceptions.ConnectionError as exc:
            # "Unable to establish a connection" alone: the cause (a refused port, a certificate
            # that failed verification) is chained here but lost by the time the pool re-raises.
            if isinstance(exc.__cause__, OSError) and str(exc.__cause__) not in str(exc):
                raise coredis.exceptions.ConnectionError(f"{exc}: {exc.__cause__}") from exc.__cause__
            raise
        finally:
            for stream in (
                self._write_buffer_in,
                self._write_buffer_out,
                self._push_message_buffer_in,
                self._push_message_buffer_out,
                self._streamed_message_buffer_in,
                self._streamed_message_buffer_out,
            ):
                stream.close()


@contextmanager
def redis_errors(what: str) -> Iterator[None]:
    """Map coredis and socket errors raised inside to :class:`RedisError` naming ``what`` was done."""
    try:
        yield
    except (coredis.exceptions.ConnectionError, OSError, TimeoutError) as exc:
        raise RedisUnavailable(f"Redis {what}: {type(exc).__name__}: {exc}") from exc
    except coredis.exceptions.StreamConsumerGroupError as exc:
        if isinstance(exc, coredis.exceptions.StreamDuplicateConsumerGroupError):
            raise RedisError(f"Redis {what}: {type(exc).__name__}: {exc}") from exc
        raise RedisGroupLost(f"Redis {what}: the consumer group is gone ({exc})") from exc
    except coredis.exceptions.ResponseError as exc:
        if "no such key" in str(exc).lower():  # XINFO on a stream Redis lost with its data
            raise RedisGroupLost(f"Redis {what}: the stream is gone ({exc})") from exc
        raise RedisError(f"Redis {what}: {type(exc).__name__}: {exc}") from exc
    except coredis.exceptions.RedisError as exc:
        raise RedisError(f"Redis {what}: {type(exc).__name__}: {exc}") from exc


_RETRY_LOGS = LogThrottle(clock=time.monotonic)
"""One line a minute per Redis command retried: Redis away for 20 s was about 60 lines from one
engine (every stream's every command, each attempt; an outside look)."""


async def until_available(
    operation: Callable[[], Awaitable[T]],
    what: str,
    *,
    on_retry: Callable[[RedisUnavailable], None] | None = None,
    base: float = 0.05,
    cap: float = 2.0,
) -> T:
    """Run ``operation`` until Redis answers it: a lost connection or a restarting server is waited
    out with jittered exponential backoff (each failure logged and passed to ``on_retry``); any
    other error is raised as :class:`RedisError`. Only for idempotent operations.
    """
    attempt = 0
    while True:
        try:
            with redis_errors(what):
                return await operation()
        except RedisUnavailable as exc:
            attempt += 1
            if on_retry is not None:
                on_retry(exc)
            log_retry(exc, attempt, what)
            await anyio.sleep(full_jitter_delay(attempt, base, cap))


def log_retry(error: RedisUnavailable, attempt: int, what: str) -> None:
    """Log that ``what`` is retried after ``error``: one line a minute per Redis command."""
    covered = _RETRY_LOGS.admit(what.partition(" ")[0])
    if covered is not None:
        more = f"; {covered - 1} more retries of it since the last such line" if covered > 1 else ""
        log.warning("%s (attempt %d%s); retrying", error, attempt, more)


@asynccontextmanager
async def open_redis(
    url: str, *, timeouts: RedisTimeouts | None = None, ssl_context: ssl.SSLContext | None = None
) -> AsyncIterator[RedisClient]:
    """A connected client for ``url`` (``redis://``, or ``rediss://`` for TLS), closed on exit.

    Checks the server answers (PING) before yielding. Raises :class:`InvalidValueError` for a bad
    URL and :class:`RedisError` when the server cannot be reached or refuses us (e.g. AUTH).

    The client's connections live in a task shielded from the caller's cancellation until the
    body has left: cancelling the caller would otherwise cut coredis's connections at once, and
    its cleanup (acknowledging, handing a lease back) would find no connection to do it with.
    """
    check_redis_url(url)
    timeouts = timeouts or RedisTimeouts()
    options: dict[str, Any] = {}
    if urlsplit(url).scheme == "rediss":
        options["ssl_context"] = ssl_context or ssl.create_default_context()
    client: RedisClient = coredis.Redis.from_url(
        url,
        decode_responses=False,
        connect_timeout=timeouts.connect,
        stream_timeout=timeouts.command,
        # A command is retried by us, where it is safe to (explicit entry IDs make XADD idempotent).
        retry_policy=coredis.retry.NoRetryPolicy(),
        **options,
    )
    # from_url picks the connection class from the scheme (always TCP for ours) with no way to
    # pass our own; the pool constructs every connection from this attribute.
    client.connection_pool.connection_class = _ClosingConnection
    where = f"at {redacted_url(url)}"
    ready, closing = anyio.Event(), anyio.Event()
    try:
        async with anyio.create_task_group() as holder:
            # Not holder.start(): a start cancelled before the holder reports keeps waiting for
            # the (shielded) holder to finish, which waits for `closing`: a deadlock.
            holder.start_soon(_hold, client, where, ready, closing)
            try:
                await ready.wait()
                yield client
            finally:
                closing.set()
    except BaseExceptionGroup as group:
        # coredis runs its pool in an anyio task group, which wraps whatever crosses it (our own
        # errors from the body included): hand the caller the one error it is about.
        sole = sole_error(group)
        if sole is group:
            raise
        with redis_errors(where):
            raise sole from None


async def _hold(client: RedisClient, where: str, ready: anyio.Event, closing: anyio.Event) -> None:
    """Keep the client's connections open until ``closing``; connection errors are RedisError."""
    with anyio.CancelScope(shield=True):
        try:
            with redis_errors(where):
                async with client:
                    await client.ping()
                    ready.set()
                    await closing.wait()
        except RedisError:
            if not closing.is_set():
                raise
            log.debug("Redis %s: the connection failed after its user left", where, exc_info=True)


