"""One error out of an ``async with``, not an ExceptionGroup.

Trio's nurseries wrap whatever their tasks (and the body of an ``async with`` around one) raise in
an ExceptionGroup, so ``except ValueError`` around ``StreamManager.open`` would miss a ValueError
its body raised, and Ctrl-C would arrive as nested groups. trio-websocket 0.12 solved the same
problem for its context managers the same way: when a group holds exactly one real error (the
cancellation exceptions a cancellation adds alongside it, ``trio.Cancelled`` or asyncio's
``CancelledError`` depending on the running backend, do not count), that error leaves as
itself; several real errors still leave as the group, since none of them may be hidden.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from typing import ParamSpec, TypeVar

import anyio

__all__ = ["first_error_of", "leaves", "real_errors", "single_error", "single_error_context", "sole_error"]

P = ParamSpec("P")
T = TypeVar("T")


def leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    """The exceptions inside nested groups, in order (each nursery level adds one)."""
    found: list[BaseException] = []
    for exc in group.exceptions:
        found.extend(leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    return found


def sole_error(error: BaseException) -> BaseException:
    """The error inside a chain of exception groups of one (what nested nurseries wrap a single
    error in), else ``error`` itself: for a command line that maps one error to one line."""
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    return error


@contextmanager
def single_error() -> Iterator[None]:
    """Re-raise a group holding one real error as that error (see the module docstring)."""
    try:
        yield
    except BaseExceptionGroup as group:
        real = real_errors(group)
        if len({id(exc) for exc in real}) != 1:
            raise
        error = real[0]
        # Keep the error's own cause; the group it came in adds nothing a reader needs.
        raise error from error.__cause__


@contextmanager
def first_error_of(kind: type[BaseException]) -> Iterator[None]:
    """Re-raise a group whose real errors are all ``kind`` as the first of them.

    For errors that are each reported where they arise and say the same to the caller: a symbol's
    ticks and candles rejected together stop a run with one line, not a group of two.
    """
    try:
        yield
    except BaseExceptionGroup as group:
        real = real_errors(group)
        if not real or not all(isinstance(exc, kind) for exc in real):
            raise
        raise real[0] from real[0].__cause__


def real_errors(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    """The leaves of ``group`` but the running backend's cancellation exceptions."""
    cancelled = anyio.get_cancelled_exc_class()
    return [exc for exc in leaves(group) if not isinstance(exc, cancelled)]


def single_error_context(
    function: Callable[P, AbstractAsyncContextManager[T]],
) -> Callable[P, AbstractAsyncContextManager[T]]:
    """Decorate a function returning an async context manager so that one error leaves it as itself."""

    @functools.wraps(function)
    @asynccontextmanager
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> AsyncIterator[T]:
        with single_error():
            async with function(*args, **kwargs) as value:
                yield value

    return wrapper
