"""Finding the port a command's ``--metrics-port 0`` bound."""

from __future__ import annotations

import re

import pytest
import trio


async def metrics_port(capsys: pytest.CaptureFixture[str]) -> int:
    """The port ``start_metrics`` announced on stderr."""
    with trio.fail_after(60):
        while True:
            found = re.search(r"metrics at http://127\.0\.0\.1:(\d+)/metrics", capsys.readouterr().err)
            if found:
                return int(found.group(1))
            await trio.sleep(0.1)
