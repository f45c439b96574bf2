"""``rediss://``: tradeloop's Redis client over TLS, against a real redis-server speaking TLS.

The server's certificate comes from a throwaway CA (trustme). The client verifies it against the
system's trust store by default (here the CA, put there through ``SSL_CERT_FILE``) or against a
context the caller passes, and refuses a server the trust store does not know, as one
RedisError that names the failed verification.
"""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
import trio
from redis_server import RedisServer, tls_redis  # noqa: F401 (fixture)

from tradeloop.distributed import open_redis
from tradeloop.distributed.client import RedisError


async def test_rediss_round_trips_with_the_default_trust_store(
    tls_redis: tuple[RedisServer, Path],  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server, ca_file = tls_redis
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))
    with trio.fail_after(10):
        async with open_redis(server.tls_url) as redis:
            await redis.set(b"tls-check", b"101.5")
            assert await redis.get(b"tls-check") == b"101.5"


async def test_rediss_takes_the_callers_ssl_context(tls_redis: tuple[RedisServer, Path]) -> None:  # noqa: F811
    server, ca_file = tls_redis
    context = ssl.create_default_context(cafile=str(ca_file))
    with trio.fail_after(10):
        async with open_redis(server.tls_url, ssl_context=context) as redis:
            assert await redis.ping()


async def test_rediss_refuses_a_server_the_trust_store_does_not_know(
    tls_redis: tuple[RedisServer, Path],  # noqa: F811
) -> None:
    server, _ = tls_redis
    # coredis says only "Unable to establish a connection"; the cause is named too.
    with pytest.raises(RedisError, match="CERTIFICATE_VERIFY_FAILED"), trio.fail_after(30):
        async with open_redis(server.tls_url):
            pytest.fail("a certificate from an unknown CA was accepted")
