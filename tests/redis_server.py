"""A real ``redis-server`` for tests: its own process, free loopback port and temporary data dir.

``make test`` installs redis-server when it is missing; if it still cannot start, the fixture
fails the test loudly (it never skips).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from tradeloop.distributed import RedisTimeouts

_START_TIMEOUT = 10.0

SIMULATED_TIMEOUTS = RedisTimeouts(connect=3600.0, command=3600.0)
"""For tests on an autojumping MockClock: while a Redis reply is on its way every task is blocked,
so the clock jumps from deadline to deadline, and a reply slowed by a loaded machine can look
minutes late (120 s was passed once, in a CI run with the 250 s push grid). Generous simulated
timeouts keep that from failing a test; a Redis that is down refuses at once, so none waits them out."""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class RedisServer:
    """One redis-server process; :meth:`restart` keeps its port and data dir (so AOF replays)."""

    def __init__(
        self, data_dir: Path, *, appendonly: bool, password: str | None = None, tls: tuple[Path, Path] | None = None
    ) -> None:
        """``tls``: a certificate and its key; the server then also listens for TLS on
        ``tls_port`` (``tls_url``), clients' certificates not asked for."""
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is not on PATH: run `make test` (it installs Debian's redis-server)")
        self.binary = binary
        self.data_dir = data_dir
        self.appendonly = appendonly
        self.password = password
        self.port = _free_port()
        auth = "" if password is None else f":{password}@"
        self.url = f"redis://{auth}127.0.0.1:{self.port}/0"
        self.tls = tls
        self.tls_port = _free_port()
        self.tls_url = f"rediss://localhost:{self.tls_port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        args = [
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.data_dir),
            "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", "always",
            "--logfile", str(self.data_dir / "redis.log"),
            *(["--requirepass", self.password] if self.password is not None else []),
            *(["--tls-port", str(self.tls_port), "--tls-cert-file", str(self.tls[0]),
               "--tls-key-file", str(self.tls[1]), "--tls-auth-clients", "no"] if self.tls is not None else []),
        ]  # fmt: skip
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + _START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                stderr = self.process.stderr.read().decode() if self.process.stderr else ""
                log = (self.data_dir / "redis.log").read_text() if (self.data_dir / "redis.log").exists() else ""
                pytest.fail(f"redis-server exited with {self.process.returncode}: {stderr}{log[-2000:]}")
            if self._answers():
                return
            time.sleep(0.02)
        self.stop()
        pytest.fail(f"redis-server did not answer on port {self.port} within {_START_TIMEOUT} s")

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1.0) as connection:
                connection.sendall(b"PING\r\n")
                reply = connection.recv(64)
                return reply.startswith(b"+PONG") or reply.startswith(b"-NOAUTH")
        except OSError:
            return False

    def stop(self) -> None:
        """Kill the server at once (SIGKILL: no shutdown save; the AOF, fsynced always, survives)."""
        if self.process is None:
            return
        self.process.kill()
        self.process.wait(timeout=_START_TIMEOUT)
        if self.process.stderr is not None:
            self.process.stderr.close()
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()


def _serving(
    data_dir: Path, *, appendonly: bool, password: str | None = None, tls: tuple[Path, Path] | None = None
) -> Iterator[RedisServer]:
    server = RedisServer(data_dir, appendonly=appendonly, password=password, tls=tls)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A fresh redis-server (no persistence) for one test."""
    yield from _serving(tmp_path, appendonly=False)


@pytest.fixture
def persistent_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A fresh redis-server with AOF on (fsync always), for restart tests."""
    yield from _serving(tmp_path, appendonly=True)


@pytest.fixture
def password_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A fresh redis-server that wants a password (``requirepass``); its url carries it."""
    yield from _serving(tmp_path, appendonly=False, password="s3cret")


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[tuple[RedisServer, Path]]:
    """A fresh redis-server that also speaks TLS (``tls_url``), with a certificate for ``localhost``
    from a throwaway CA; yields the server and the CA's certificate file."""
    ca = trustme.CA()
    certificate = ca.issue_cert("localhost")
    ca_file, cert_file, key_file = tmp_path / "ca.pem", tmp_path / "cert.pem", tmp_path / "key.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    certificate.cert_chain_pems[0].write_to_path(str(cert_file))
    certificate.private_key_pem.write_to_path(str(key_file))
    for server in _serving(tmp_path, appendonly=False, tls=(cert_file, key_file)):
        yield server, ca_file
