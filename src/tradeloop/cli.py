"""The ``tradeloop`` command: ``run``, ``backtest``, ``sim``, ``watch`` and ``publish``.

Each sub-command lives beside the code it drives and contributes its own parser through
``add_parser(subparsers)``; this module only assembles them and maps errors to exit codes, in
one place for every command:

- a usage mistake (an argument argparse refuses, or an :class:`~tradeloop.errors.InvalidValueError`: a bad symbol,
  URL, config value) is one line on stderr and exit status 2;
- a runtime failure tradeloop raises on purpose (any other :class:`~tradeloop.errors.TradeloopError`:
  an unusable journal, a rejected subscription) or the operating system reports (a busy port, an
  unknown host) is one line and exit status 1;
- Ctrl-C that reaches here (``watch``; ``run``, ``sim`` and ``backtest`` handle their own) is
  exit status 130, quietly; so is Ctrl-C while the command starts, before this module is
  imported (the console script is ``_tradeloop_launcher``, outside the package);
- a closed stdout (``watch ... | head -1``) is 141 (128 + SIGPIPE), quietly.

Errors raised inside Trio nurseries arrive wrapped in exception groups; :func:`sole_error`
unwraps a group of one to the error itself so its message is what the user sees. Anything else
is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from importlib import metadata
from typing import NoReturn

from ._groups import sole_error
from .errors import TradeloopError

__all__ = ["EXIT_BROKEN_PIPE", "EXIT_INTERRUPTED", "EXIT_RUNTIME_ERROR", "EXIT_USAGE", "main", "seconds", "sole_error"]

EXIT_RUNTIME_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
"""128 + SIGINT, what a shell reports for a command stopped by Ctrl-C."""
EXIT_BROKEN_PIPE = 141
"""128 + SIGPIPE, what a shell reports for a writer whose reader went away."""

_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors as one line (argparse adds a usage block; ``--help`` has it)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    from .backtest import cli as backtest_cli
    from .distributed import cli as publish_cli
    from .sim import cli as sim_cli
    from .streams import cli as watch_cli
    from .trading import cli as run_cli

    parser = _Parser(prog="tradeloop", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--log-level",
        default="ERROR",
        type=_log_level,
        help=f"logging on stderr: {', '.join(_LOG_LEVELS)} (default ERROR)",
    )
    parser.add_argument("--version", action=_Version, nargs=0, help="show the version and exit")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for module in (run_cli, backtest_cli, sim_cli, watch_cli, publish_cli):
        module.add_parser(subparsers)
    return parser


class _Version(argparse.Action):
    """``--version``, read from the installed distribution only when asked (a checkout run with
    ``PYTHONPATH=src`` has none, and every other command must work there)."""

    def __call__(self, parser: argparse.ArgumentParser, *args: object) -> None:
        try:
            version = metadata.version("tradeloop")
        except metadata.PackageNotFoundError:
            version = "(not installed: run from a source tree)"
        print(f"tradeloop {version}")
        parser.exit()


def _log_level(text: str) -> str:
    level = text.upper()
    if level not in _LOG_LEVELS:
        raise argparse.ArgumentTypeError(f"invalid log level {text!r}: expected one of {', '.join(_LOG_LEVELS)}")
    return level


def seconds(text: str) -> float:
    """An argparse type every command shares: a finite number of seconds > 0."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"invalid duration {text!r}: expected a number of seconds > 0")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # a usage error (printed, status 2) or --help (0): a status to return
        return exit_.code if isinstance(exit_.code, int) else EXIT_USAGE
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    # coredis logs a failed connection at ERROR with an empty traceback ("NoneType: None") before
    # raising the error tradeloop reports in one line; below DEBUG it is only noise.
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
        logging.getLogger("coredis").setLevel(logging.CRITICAL)
    try:
        result: int = args.handler(args)
    except BaseException as exc:  # every error is mapped to an exit status, or re-raised
        return _exit_status(args.command, exc)
    return result


def _exit_status(command: str, exc: BaseException) -> int:
    """The exit status for ``exc``, after printing its one line; re-raises a bug."""
    if isinstance(exc, BaseExceptionGroup):
        # Ctrl-C or a closed pipe can surface in several tasks at once; either ends the command.
        if exc.subgroup(KeyboardInterrupt) is not None:
            return EXIT_INTERRUPTED
        if exc.subgroup(BrokenPipeError) is not None:
            return _broken_pipe()
    error = sole_error(exc)
    if isinstance(error, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    if isinstance(error, BrokenPipeError):
        return _broken_pipe()
    if isinstance(error, ValueError):  # InvalidValueError, and the ValueErrors of bad input before it existed
        status = EXIT_USAGE
    elif isinstance(error, TradeloopError | OSError):
        status = EXIT_RUNTIME_ERROR
    else:
        raise exc
    message = str(error)
    if isinstance(error, OSError) and error.strerror:  # "[Errno 17] File exists: 'x'" reads as noise
        message = error.strerror if error.filename is None else f"{error.filename}: {error.strerror}"
    print(f"tradeloop {command}: {message}", file=sys.stderr)
    return status


def _broken_pipe() -> int:
    """Point stdout at /dev/null: the interpreter's final flush would fail on the closed pipe again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout replaced by something without a descriptor (a test's capture)
        pass
    finally:
        os.close(devnull)
    return EXIT_BROKEN_PIPE


if __name__ == "__main__":
    sys.exit(main())
