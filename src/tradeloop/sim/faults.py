"""Fault injection: the ways a real exchange misbehaves, switchable at any time.

Every switch is a plain attribute or method of :class:`Faults`, read by the servers on each push,
ping, pong or request, so a change takes effect at once. Random faults draw from one RNG seeded
from the simulator's seed, so a run with the same seed and the same pushes injects the same faults.
"""

from __future__ import annotations

import itertools
import random
import struct
import zlib
from collections.abc import Callable, Iterator
from enum import StrEnum
from functools import cache
from typing import Final, overload

from ..errors import InvalidValueError
from .protocol import MalformedKind

__all__ = ["FAULT_NAMES", "Faults", "Hostile", "RestDown", "gzip_bomb", "hostile_frame", "huge_body", "nested_json"]


class RestDown(StrEnum):
    """How REST refuses work while down."""

    HTTP_503 = "503"
    """HTTP 503 with an HTML (non-JSON) body, like a load balancer with no backend."""
    CLOSE = "close"
    """Close the connection without answering."""


class Hostile(StrEnum):
    """Payloads of a hostile peer, each a few bytes to send and ruinous to a client that trusts them."""

    NESTED = "nested"
    """JSON nested :data:`NESTED_DEPTH` levels deep (WebSocket: gzipped, about 300 bytes; REST: plain)."""
    GZIP_BOMB = "gzip_bomb"
    """A 1 MB gzip stream of :data:`BOMB_SIZE` (1 GiB) zeros (WebSocket: a frame; REST: a gzip body)."""
    HUGE = "huge"
    """REST only: a body of :data:`HUGE_SIZE` (300 MB) bytes, chunked, generated as it is sent."""


NESTED_DEPTH: Final = 100_000
BOMB_SIZE: Final = 1 << 30
HUGE_SIZE: Final = 300_000_000
_HOSTILE_WS: Final = (Hostile.NESTED, Hostile.GZIP_BOMB)

_RATES = ("malformed_rate", "duplicate_rate", "reorder_rate")
_SWITCHES = ("skip_final_update", "batch_klines", "ignore_pongs", "rest_rate_limited")
FAULT_NAMES = (
    *_RATES,
    *_SWITCHES,
    "stall",
    "stop_pings",
    "rest_down",
    "hostile_ws",
    "hostile_rest",
    "drop_all",
    "clear",
)
"""Names :meth:`Faults.set` accepts (the CLI's ``--fault NAME[=VALUE]``)."""

_TRUE = frozenset({"", "1", "on", "true", "yes"})
_FALSE = frozenset({"0", "off", "false", "no"})


class _Rate:
    """A fault rate attribute: a fraction in [0, 1], checked when set."""

    def __set_name__(self, owner: type, name: str) -> None:
        self._name = name

    @overload
    def __get__(self, instance: None, owner: type) -> _Rate: ...
    @overload
    def __get__(self, instance: Faults, owner: type) -> float: ...
    def __get__(self, instance: Faults | None, owner: type) -> _Rate | float:
        return self if instance is None else instance._rates[self._name]

    def __set__(self, instance: Faults, value: float) -> None:
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
            raise InvalidValueError(f"invalid {self._name} {value!r}: expected a fraction between 0 and 1")
        instance._rates[self._name] = float(value)


class Faults:
    """Switchable misbehaviour of the simulator's WebSocket and REST servers.

    WebSocket pushes:
      - ``malformed_rate``: fraction of pushes replaced by a broken frame, cycling through bad
        gzip, bad JSON and a missing field;
      - ``duplicate_rate``: fraction of pushes sent twice in a row;
      - ``reorder_rate``: fraction of pushes followed by the topic's previous (stale) update; with
        any rate above 0, the first push of every new candle is also followed by the previous
        candle's last update, the reordering most likely to fool a client;
      - ``skip_final_update``: a candle's final value is never pushed: the next candle's first
        push follows its penultimate update (only REST has the final value);
      - ``batch_klines``: swap kline pushes carry two candles, the previous candle's final value
        and the current update (spot kline pushes have no list form).
    Connections: :meth:`drop_all`, :meth:`stall` / :meth:`unstall`, :meth:`stop_pings` /
    :meth:`resume_pings`, ``ignore_pongs`` (pongs do not count, so sockets are closed after
    ``pong_timeout``).
    REST: ``rest_rate_limited`` (HTTP 429, code 100410), ``rest_down`` (a :class:`RestDown`).
    Hostile peer (:class:`Hostile`): ``hostile_ws`` replaces every push by a hostile frame,
    ``hostile_rest`` every REST answer by a hostile body; ``hostile_sent`` counts what was sent.
    """

    def __init__(self, seed: int, drop_all: Callable[[], int]) -> None:
        self._rng = random.Random(f"{seed}:faults")
        self._drop_all = drop_all
        self._malformed_kinds = itertools.cycle(MalformedKind)
        self._rates: dict[str, float] = dict.fromkeys(_RATES, 0.0)
        self.skip_final_update = False
        self.batch_klines = False
        self.ignore_pongs = False
        self.rest_rate_limited = False
        self.rest_down: RestDown | None = None
        self.hostile_ws: Hostile | None = None
        self.hostile_rest: Hostile | None = None
        self.hostile_sent = 0
        """Hostile frames queued and hostile bodies answered so far."""
        self.stalled = False
        """No pushes while set (sockets stay open, requests are still answered)."""
        self.pings_while_stalled = True
        self.pings_stopped = False

    malformed_rate = _Rate()
    duplicate_rate = _Rate()
    reorder_rate = _Rate()

    # -- actions --------------------------------------------------------------------------------

    def drop_all(self) -> int:
        """Abort every WebSocket connection now (no close frame: clients see 1006); the count."""
        return self._drop_all()

    def stall(self, *, pings: bool = True) -> None:
        """Keep sockets open but push nothing; ``pings``: whether heartbeats continue."""
        self.stalled = True
        self.pings_while_stalled = pings

    def unstall(self) -> None:
        self.stalled = False
        self.pings_while_stalled = True

    def stop_pings(self) -> None:
        """The server stops sending heartbeats (pushes continue)."""
        self.pings_stopped = True

    def resume_pings(self) -> None:
        self.pings_stopped = False

    def clear(self) -> None:
        """Switch every fault off."""
        for name in _RATES:
            self._rates[name] = 0.0
        for name in _SWITCHES:
            setattr(self, name, False)
        self.rest_down = None
        self.hostile_ws = self.hostile_rest = None
        self.unstall()
        self.resume_pings()

    def set(self, name: str, value: str | None = None) -> None:
        """Switch a fault by name from text: ``malformed_rate=0.1``, ``batch_klines``,
        ``batch_klines=off``, ``stall`` / ``stall=silent`` (no pings) / ``stall=off``,
        ``stop_pings`` / ``stop_pings=off``, ``rest_down`` / ``rest_down=close`` / ``rest_down=off``,
        ``hostile_ws=nested|gzip_bomb|off``, ``hostile_rest=nested|gzip_bomb|huge|off``,
        ``drop_all``, ``clear``. ValueError naming the bad name or value.
        """
        text = "" if value is None else value.strip().lower()
        if name in _RATES:
            try:
                rate = float(text)
            except ValueError:
                raise InvalidValueError(f"invalid {name} {value!r}: expected a fraction between 0 and 1") from None
            setattr(self, name, rate)
        elif name in _SWITCHES:
            setattr(self, name, _switch(name, text))
        elif name == "stall":
            if text in ("silent", "nopings"):
                self.stall(pings=False)
            elif text == "pings" or _switch(name, text, extra="pings, silent"):
                self.stall(pings=True)
            else:
                self.unstall()
        elif name == "stop_pings":
            if _switch(name, text):
                self.stop_pings()
            else:
                self.resume_pings()
        elif name == "rest_down":
            if text in _FALSE:
                self.rest_down = None
            elif text in _TRUE:
                self.rest_down = RestDown.HTTP_503
            else:
                try:
                    self.rest_down = RestDown(text)
                except ValueError:
                    raise InvalidValueError(f"invalid rest_down {value!r}: expected 503, close or off") from None
        elif name in ("hostile_ws", "hostile_rest"):
            allowed = _HOSTILE_WS if name == "hostile_ws" else tuple(Hostile)
            if text in _FALSE:
                setattr(self, name, None)
            elif text in allowed:
                setattr(self, name, Hostile(text))
            else:
                raise InvalidValueError(f"invalid {name} {value!r}: expected {', '.join(allowed)} or off")
        elif name in ("drop_all", "clear") and value is None:
            if name == "drop_all":
                self.drop_all()
            else:
                self.clear()
        else:
            raise InvalidValueError(
                f"invalid fault {name if value is None else f'{name}={value}'!r}: "
                f"expected one of {', '.join(FAULT_NAMES)} (drop_all and clear take no value)"
            )

    # -- used by the servers --------------------------------------------------------------------

    def roll(self, rate: float) -> bool:
        """True with probability ``rate`` (no RNG draw while the rate is 0)."""
        return rate > 0.0 and self._rng.random() < rate

    def next_malformed_kind(self) -> MalformedKind:
        return next(self._malformed_kinds)

    @property
    def sends_pings(self) -> bool:
        return not self.pings_stopped and (self.pings_while_stalled or not self.stalled)


def _switch(name: str, text: str, *, extra: str = "") -> bool:
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    allowed = "on or off" + (f" (or {extra})" if extra else "")
    raise InvalidValueError(f"invalid {name} value {text!r}: expected {allowed}")


# -- hostile payloads ------------------------------------------------------------------------------


@cache
def nested_json() -> bytes:
    """``[[[…]]]``, :data:`NESTED_DEPTH` levels: valid JSON that JSON decoders recurse into."""
    return b"[" * NESTED_DEPTH + b"]" * NESTED_DEPTH


@cache
def gzip_bomb(size: int = BOMB_SIZE) -> bytes:
    """One valid gzip stream of ``size`` zero bytes (a multiple of 4 MiB), built in a fraction of a second.

    Compressing 1 GiB takes seconds, so 4 MiB are compressed and the block they give is repeated:
    a full flush ends it on a byte boundary with no reference to earlier data, so copies of it
    chain into one deflate stream. The CRC and length in the trailer make the stream valid. At
    1,045,780 bytes it fits in a WebSocket message of 1 MiB, the transport's default limit.
    """
    chunk = bytes(4 << 20)
    copies, rest = divmod(size, len(chunk))
    if rest:
        raise InvalidValueError(f"gzip bomb size {size} is not a multiple of {len(chunk)}")
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = compressor.compress(chunk) + compressor.flush(zlib.Z_FULL_FLUSH)
    crc = 0
    for _ in range(copies):
        crc = zlib.crc32(chunk, crc)
    final_block = zlib.compressobj(9, zlib.DEFLATED, -15).flush()
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"
    return header + block * copies + final_block + struct.pack("<II", crc, size & 0xFFFFFFFF)


@cache
def hostile_frame(kind: Hostile) -> bytes:
    """The WebSocket frame of a hostile push: a gzip stream, as BingX frames every message."""
    if kind is Hostile.NESTED:
        return zlib.compress(nested_json(), 9, wbits=31)
    if kind is Hostile.GZIP_BOMB:
        return gzip_bomb()
    raise InvalidValueError(f"hostile payload {kind.value!r} is REST only")


def huge_body(chunk_size: int = 1 << 16) -> Iterator[bytes]:
    """:data:`HUGE_SIZE` bytes of a JSON array that never ends in time, produced as it is sent."""
    chunk = b"0," * (chunk_size // 2)
    yield b'{"code":0,"data":['
    for _ in range(HUGE_SIZE // len(chunk)):
        yield chunk
