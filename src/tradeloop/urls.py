"""The URLs a user hands tradeloop (a client's WebSocket and REST addresses), checked where given.

A URL is checked when it is given (an exchange client's constructor, a config file, a command's
flag), not when it is first used: a REST URL that is wrong only shows as failed warm-up fetches
minutes later, and a bad port only once a socket tries to open. One check for every caller, so
every bad URL reads the same: the value, what is wrong, and the form expected.
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import SplitResult, urlsplit

from .errors import InvalidValueError

__all__ = ["parse_url"]


def parse_url(url: object, schemes: Sequence[str], what: str) -> SplitResult:
    """``url`` split into its parts; it must use one of ``schemes`` and name a host and a valid port.

    Raises :class:`~tradeloop.errors.InvalidValueError` naming ``what`` (e.g. "BingX rest_url"),
    the value and the expected form.
    """
    expected = " or ".join(f"{scheme}://host[:port]/..." for scheme in schemes)
    if not isinstance(url, str):
        raise InvalidValueError(f"invalid {what} {url!r}: expected a URL string, {expected}")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - urlsplit parses the port lazily: reading it is the check
    except ValueError as exc:  # "Port out of range 0-65535", "Port could not be cast to integer value"
        raise InvalidValueError(f"invalid {what} {url!r}: {str(exc).lower()}") from None
    if parts.scheme not in schemes or not parts.hostname:
        raise InvalidValueError(f"invalid {what} {url!r}: expected {expected}")
    return parts
