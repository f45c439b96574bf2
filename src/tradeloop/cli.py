"""The ``tradeloop`` command: ``run``, ``sim``, ``watch`` and ``publish``.

Each sub-command lives beside the code it drives and contributes its own parser through
``add_parser(subparsers)``; this module only assembles them and maps errors to exit codes.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence


def build_parser() -> argparse.ArgumentParser:
    from .distributed import cli as publish_cli
    from .sim import cli as sim_cli
    from .streams import cli as watch_cli
    from .trading import cli as run_cli

    parser = argparse.ArgumentParser(prog="tradeloop", description=__doc__.splitlines()[0])
    parser.add_argument("--log-level", default="ERROR", help="logging level on stderr (default ERROR)")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for module in (run_cli, sim_cli, watch_cli, publish_cli):
        module.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    try:
        result: int = args.handler(args)
    except KeyboardInterrupt:
        return 130
    except ValueError as exc:
        print(f"tradeloop {args.command}: {exc}", file=sys.stderr)
        return 2
    return result


if __name__ == "__main__":
    sys.exit(main())
