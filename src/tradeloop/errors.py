"""The root of every error tradeloop raises on purpose.

``except tradeloop.TradeloopError`` catches anything the library raises by design (a bad value, a
rejected subscription, an exchange's error reply, a malformed frame that reached the caller, a
journal that cannot be used), and nothing else: a bug still surfaces as the built-in exception it
is. Errors that were ``ValueError`` before this root existed still are (``InvalidValueError``
derives from both), so existing ``except ValueError`` code keeps working.
"""

from __future__ import annotations

__all__ = ["ForeignLoopError", "InvalidValueError", "ListenError", "SubscriptionError", "TradeloopError"]


class TradeloopError(Exception):
    """Base class of every error tradeloop raises on purpose."""


class InvalidValueError(TradeloopError, ValueError):
    """A value given by the user (symbol, timeframe, URL, exchange name, setting) is not allowed.

    The message names the bad value and what is allowed, in one line.
    """


class ForeignLoopError(TradeloopError, RuntimeError):
    """A tradeloop object was used from a thread other than the one whose event loop opened it.

    Its tasks, events and sockets belong to that loop; the message names the owner and how to hand
    work to it instead.
    """


class SubscriptionError(TradeloopError):
    """The exchange rejected a subscription, or the topic cannot be served.

    Raised from the subscriber's ``receive()`` / ``async for`` promptly after the exchange said so;
    the upstream subscription is released.
    """

    def __init__(self, exchange: str, topic: str, code: int | None, message: str) -> None:
        where = f"{exchange} {topic}"
        reason = message if code is None else f"code {code}: {message}"
        super().__init__(f"{where}: subscription rejected ({reason})")
        self.exchange = exchange
        self.topic = topic
        self.code = code
        self.message = message


class ListenError(TradeloopError):
    """A server cannot listen where it was asked to (a port in use, an address not of this host,
    an unknown host); the message names the address.
    """


def preview(text: bytes | str, limit: int = 120) -> str:
    """A bounded, printable excerpt of a frame, body or value for an error message (one may be
    megabytes)."""
    return repr(text[:limit]) + ("…" if len(text) > limit else "")
