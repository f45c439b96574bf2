"""The ``tradeloop`` console script: Ctrl-C while tradeloop starts exits 130, without a traceback.

Importing tradeloop takes most of a second (the package's ``__init__`` imports every subpackage,
so that ``from tradeloop import ...`` has every name at hand), and a KeyboardInterrupt raised in
that time would print a traceback through the imports. The package's ``__init__`` runs before any
code of :mod:`tradeloop.cli`, so the catch has to sit outside the package: in this module, which
imports nothing of tradeloop until it is inside the ``try``. (A lazy package ``__init__`` would
narrow the window too, but not close it, and would change how every user's import resolves.)
"""

from __future__ import annotations

__all__ = ["main"]

EXIT_INTERRUPTED = 130
"""128 + SIGINT, as ``tradeloop.cli.EXIT_INTERRUPTED``: importing that is what Ctrl-C may interrupt."""


def main() -> int:
    try:
        from tradeloop.cli import main as tradeloop_main

        return tradeloop_main()
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
