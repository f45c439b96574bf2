"""Done when: tradeloop works inside an ordinary asyncio program (``asyncio.run``), warnings as errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).parent


def test_an_asyncio_program_streams_through_a_disconnect_and_leaves_nothing_behind() -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")]))}
    result = subprocess.run(
        [sys.executable, "-W", "error", str(TESTS / "asyncio_program.py")],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", f"the program warned or logged errors: {result.stderr}"
    assert "ok: exactly-once candles" in result.stdout
