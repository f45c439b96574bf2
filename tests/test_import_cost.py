"""What importing tradeloop costs: the Redis client (most of the import time) only when used."""

from __future__ import annotations

import subprocess
import sys

CHECK = """
import sys
{statement}
heavy = sorted(name for name in ("coredis", "ccxt") if name in sys.modules)
print(",".join(heavy))
"""


def imported_after(statement: str) -> str:
    code = CHECK.format(statement=statement)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    return result.stdout.strip()


def test_importing_tradeloop_or_reading_a_config_does_not_load_the_redis_client() -> None:
    assert imported_after("import tradeloop") == ""
    config = (
        "import pathlib, tempfile\n"
        "from tradeloop.trading import load_config\n"
        "path = pathlib.Path(tempfile.mkdtemp()) / 'engine.toml'\n"
        "path.write_text('[exchanges.bingx]\\n[data]\\nsource = \"redis://localhost:6379/0\"\\n"
        "[[strategies]]\\ntype = \"breakout\"\\nsymbols = [\"BTC/USDT:USDT\"]\\nsize = 5\\n')\n"
        "assert load_config(path).data is not None"
    )
    assert imported_after(config) == ""  # a config with a Redis [data] table, read and checked
    assert imported_after("from tradeloop.cli import build_parser; build_parser()") == ""


def test_the_redis_names_load_it_when_used() -> None:
    assert imported_after("from tradeloop.distributed import RedisError, open_redis") == "coredis"
    assert imported_after("from tradeloop.distributed.consumer import RedisSourceSettings") == "coredis"
