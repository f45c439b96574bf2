"""The exchange registry: names normalised to lower case once, clear errors for the rest."""

from __future__ import annotations

import subprocess
import sys
from typing import ClassVar

import pytest

import tradeloop
from tradeloop import available_exchanges, create_exchange
from tradeloop.exchanges import exchange_class, register_exchange
from tradeloop.exchanges.bingx import BingX


@pytest.mark.parametrize("name", ["bingx", "BingX", "BINGX", " bingx "])
def test_names_are_case_insensitive(name: str) -> None:
    assert exchange_class(name) is BingX
    assert isinstance(create_exchange(name), BingX)


def test_unknown_exchange_names_the_value_and_the_choices() -> None:
    expected = (
        "unknown exchange 'kraken': expected one of binance, bingx, "
        "or any ccxt exchange as ccxt:<id> (e.g. ccxt:kraken)"
    )
    with pytest.raises(ValueError) as raised:
        create_exchange("kraken")
    assert str(raised.value) == expected
    with pytest.raises(ValueError, match="invalid exchange name"):
        exchange_class("  ")


def test_a_misspelt_exchange_gets_the_close_name_not_a_ccxt_id() -> None:
    with pytest.raises(ValueError) as raised:
        create_exchange("bingz")
    assert str(raised.value).endswith("or any ccxt exchange as ccxt:<id>; did you mean 'bingx'?")


def test_urls_point_the_client_elsewhere() -> None:
    client = create_exchange("bingx", ws_url="ws://127.0.0.1:1/swap-market", rest_url="http://127.0.0.1:2")
    assert isinstance(client, BingX)
    assert "bingx" in available_exchanges()


def test_a_second_class_cannot_take_a_registered_name() -> None:
    class Impostor(BingX):
        name: ClassVar[str] = "BingX"

    with pytest.raises(ValueError, match="already registered"):
        register_exchange(Impostor)
    assert exchange_class("bingx") is BingX


def test_the_library_prints_no_log_line_unless_the_program_sets_up_logging() -> None:
    # Without a handler of its own, Python prints warnings on stderr ("last resort"): an error a
    # program catches (a rejected subscription) was also printed. A library leaves that to the program.
    program = "import logging, tradeloop; logging.getLogger('tradeloop.streams').warning('printed')"
    quiet = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=60, check=True)
    assert quiet.stderr == ""
    configured = program.replace("tradeloop;", "tradeloop; logging.basicConfig();")
    loud = subprocess.run([sys.executable, "-c", configured], capture_output=True, text=True, timeout=60, check=True)
    assert "printed" in loud.stderr


def test_both_native_exchanges_are_exported() -> None:
    assert tradeloop.Binance is exchange_class("binance") and tradeloop.BingX is exchange_class("bingx")
