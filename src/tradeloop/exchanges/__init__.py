"""Exchange clients, picked by name from a registry.

Names are normalised to lower case once, here, so ``"BingX"`` and ``"bingx"`` are the same
exchange. Adding an exchange is one new module that subclasses :class:`Exchange` and decorates
the class with :func:`register_exchange`, plus its import below.

Names ``ccxt:<id>`` (``ccxt:okx``) are not registered one by one: they build the ccxt adapter
(:mod:`tradeloop.exchanges.ccxt`) for that ccxt id, imported only then, since ccxt is an optional
extra and slow to import.
"""

from __future__ import annotations

import difflib
from typing import Any, TypeVar

from ..errors import InvalidValueError, TradeloopError
from .base import (
    ErrorKind,
    ErrorReply,
    Event,
    Exchange,
    ExchangeError,
    Heartbeat,
    KlineBatch,
    ProtocolError,
    RateLimitedError,
    Reconnect,
    SubscriptionAck,
    TickUpdate,
    Topic,
    TopicKind,
    WsCodec,
)
from .limits import DEFAULT_LIMITS, PeerLimits

__all__ = [
    "DEFAULT_LIMITS",
    "ErrorKind",
    "ErrorReply",
    "Event",
    "Exchange",
    "ExchangeError",
    "Heartbeat",
    "KlineBatch",
    "PeerLimits",
    "ProtocolError",
    "RateLimitedError",
    "Reconnect",
    "SubscriptionAck",
    "TickUpdate",
    "Topic",
    "TopicKind",
    "WsCodec",
    "available_exchanges",
    "create_exchange",
    "exchange_class",
    "normalize_exchange_name",
    "register_exchange",
]

_REGISTRY: dict[str, type[Exchange]] = {}

ExchangeT = TypeVar("ExchangeT", bound=type[Exchange])


def normalize_exchange_name(name: str) -> str:
    """Lower-case and strip an exchange name; the one place names are normalised."""
    if not isinstance(name, str) or not name.strip():
        raise InvalidValueError(f"invalid exchange name {name!r}: expected one of {', '.join(available_exchanges())}")
    return name.strip().lower()


def register_exchange(cls: ExchangeT) -> ExchangeT:
    """Class decorator adding an exchange to the registry under ``cls.name`` (lower-cased)."""
    key = normalize_exchange_name(cls.name)
    existing = _REGISTRY.get(key)
    if existing is not None and existing is not cls:
        raise InvalidValueError(f"exchange name {key!r} is already registered by {existing.__qualname__}")
    _REGISTRY[key] = cls
    return cls


def available_exchanges() -> list[str]:
    return sorted(_REGISTRY)


def exchange_class(name: str) -> type[Exchange]:
    """The registered class for ``name`` (any letter case), or the ccxt adapter for ``ccxt:<id>``;
    InvalidValueError naming what is allowed, TradeloopError if ``ccxt:`` is asked without ccxt."""
    key = normalize_exchange_name(name)
    if key.startswith(_CCXT_PREFIX):
        return _ccxt_class(key.removeprefix(_CCXT_PREFIX))
    try:
        return _REGISTRY[key]
    except KeyError:
        close = difflib.get_close_matches(key, available_exchanges(), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else f" (e.g. {_CCXT_PREFIX}{key})"
        raise InvalidValueError(
            f"unknown exchange {name!r}: expected one of {', '.join(available_exchanges())}, "
            f"or any ccxt exchange as {_CCXT_PREFIX}<id>{hint}"
        ) from None


_CCXT_PREFIX = "ccxt:"


def _ccxt_class(ccxt_id: str) -> type[Exchange]:
    try:
        from .ccxt import ccxt_exchange_class
    except ModuleNotFoundError as exc:
        if exc.name != "ccxt" and not (exc.name or "").startswith("ccxt."):
            raise
        raise TradeloopError(f"exchange 'ccxt:{ccxt_id}' needs ccxt: pip install 'tradeloop[ccxt]'") from None
    return ccxt_exchange_class(ccxt_id)


def create_exchange(name: str, **options: Any) -> Exchange:
    """Instantiate the exchange registered as ``name`` with its constructor ``options``."""
    return exchange_class(name)(**options)


# Built-in exchanges register themselves on import.
from . import binance as binance  # noqa: E402
from . import bingx as bingx  # noqa: E402
