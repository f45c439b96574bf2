"""Another git revision's tradeloop, to run beside today's in the same benchmark run (``--baseline REV``).

The revision's ``src/`` is exported with ``git archive`` into a temporary directory, and the
tradeloop client process runs with ``PYTHONPATH`` pointing there (see
:func:`benchmarks.variants.baseline`): the server, the client script and ccxt.pro stay today's,
only the imported ``tradeloop`` changes. An export rather than ``git worktree add`` leaves nothing
in the repository to clean up, even if the run is killed.
"""

from __future__ import annotations

import io
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path

from .variants import Variant, baseline

__all__ = ["BaselineError", "checkouts", "resolve"]

_REPOSITORY = Path(__file__).resolve().parent.parent


class BaselineError(Exception):
    """A ``--baseline`` revision that is no commit of this repository, or whose tradeloop the client cannot import."""


def _git(*args: str) -> bytes:
    return subprocess.run(["git", *args], cwd=_REPOSITORY, capture_output=True, check=True).stdout


def resolve(revision: str) -> str:
    """The short hash of ``revision``; raises :class:`BaselineError` if it names no commit with a tradeloop."""
    try:
        short = _git("rev-parse", "--short", "--verify", f"{revision}^{{commit}}").decode().strip()
        _git("cat-file", "-e", f"{short}:src/tradeloop/__init__.py")
    except subprocess.CalledProcessError:
        raise BaselineError(f"--baseline {revision!r}: not a commit of this repository with src/tradeloop") from None
    return short


@contextmanager
def checkouts(revisions: Sequence[str]) -> Iterator[list[Variant]]:
    """A baseline variant per revision (resolved by :func:`resolve`), its ``src`` exported until exit."""
    with ExitStack() as stack:
        variants = []
        for revision in revisions:
            directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix=f"tradeloop-{revision}-")))
            with tarfile.open(fileobj=io.BytesIO(_git("archive", revision, "src"))) as archive:
                archive.extractall(directory, filter="data")
            variant = baseline(revision, str(directory / "src"))
            _check_imports(revision, variant)
            variants.append(variant)
        yield variants


def _check_imports(revision: str, variant: Variant) -> None:
    """Fail before any benchmark runs if the client script cannot import the revision's tradeloop."""
    check = subprocess.run(
        [sys.executable, "-c", f"import benchmarks.{variant.runner}"],
        cwd=_REPOSITORY,
        env=variant.environment(),
        capture_output=True,
        text=True,
    )
    if check.returncode:
        last_line = (check.stderr.strip().splitlines() or ["no error message"])[-1]
        raise BaselineError(f"--baseline {revision}: the client cannot import its tradeloop: {last_line}")
