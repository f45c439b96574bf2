"""Bounds on what an exchange, or anything posing as one, can make tradeloop allocate or compute.

A peer controls every byte tradeloop decodes, and a few bytes are enough to end or freeze a
process that trusts them: a gzip stream of 1 MB inflates to 1 GiB (deflate reaches 1032:1), a JSON
document of a few dozen bytes (``[[[[…``) nested deeper than Python's recursion limit makes
msgspec and ``json`` raise RecursionError, and a REST body has no size at all until it ends. So
every exchange decodes through the three functions here, with the bounds of one
:class:`PeerLimits`:

- :func:`gunzip`: a gzip stream (a BingX WebSocket frame) inflated to at most ``max_frame_size``
  bytes, incrementally: the inflater stops at the cap, it never inflates the rest to see how big it is;
- :func:`check_json_depth`: refuses a JSON document nested deeper than ``max_json_depth``,
  found without recursion before the decoder (which recurses) sees it;
- :func:`get_body`: a REST GET whose body is read as it streams in and given up at ``max_body_size``
  bytes, as received and as decoded (httpx would inflate a gzip body whole; here it is inflated
  by the same bounded inflater as frames).

Each refusal is a :class:`~tradeloop.exchanges.base.ProtocolError` (kind ``TOO_LARGE``,
``TOO_DEEP`` or ``BAD_GZIP``): the one error a codec raises on bad input, so the stream layer
counts it, logs it and skips the frame (a REST call is retried), exactly like any malformed frame.
The work per frame is bounded by the same caps: inflating and decoding are linear in the inflated
size, the depth check at most ``max_json_depth`` passes over its brackets (tens of milliseconds
for a hostile megabyte, microseconds for a push). The size of a message *on the wire* is bounded earlier, by the
transport (:class:`~tradeloop.streams.frames.FrameDecoder`'s ``max_message_size``), which fails
the connection before buffering an oversized message.

An exchange client takes a ``PeerLimits`` at construction and hands it to its codecs and REST
parsers; the defaults fit BingX and Binance market data with two orders of magnitude to spare::

    limits = PeerLimits(max_body_size=16 * 1024 * 1024)   # e.g. for a large exchangeInfo
    text = gunzip(frame, limits.max_frame_size)              # bytes, or ProtocolError
    # (a text frame is not compressed: refuse len(frame) > limits.max_frame_size as TOO_LARGE)
    check_json_depth(text, limits.max_json_depth)            # None, or ProtocolError
    message = decoder.decode(text)                           # now safe: no RecursionError
    body = await get_body(http, url, params=params, max_size=limits.max_body_size)
"""

from __future__ import annotations

import logging
import re
import zlib
from dataclasses import dataclass, fields
from typing import Final

import httpx

from ..errors import InvalidValueError
from .base import ErrorKind, ProtocolError

__all__ = [
    "DEFAULT_LIMITS",
    "MAX_JSON_DEPTH_CEILING",
    "PeerLimits",
    "RestBody",
    "check_json_depth",
    "get_body",
    "gunzip",
]

logger = logging.getLogger(__name__)

MAX_JSON_DEPTH_CEILING: Final = 64
"""Highest ``max_json_depth`` accepted: msgspec and ``json`` recurse once per level, and Python's
recursion limit (1000) must stay out of reach however deep the caller's own stack is; the depth
check's worst case also grows with the limit (:func:`check_json_depth`)."""

_MiB: Final = 1024 * 1024


@dataclass(frozen=True, slots=True)
class PeerLimits:
    """How much of a peer's input tradeloop accepts; every field a byte count or a depth, > 0.

    The defaults leave room for any market-data message and refuse what no exchange sends.
    """

    max_frame_size: int = _MiB
    """Bytes of one WebSocket message after decompression. BingX pushes are under 1 KB; a gzip
    frame inflating beyond this is refused (``TOO_LARGE``) once the inflater reaches it."""
    max_body_size: int = 8 * _MiB
    """Bytes of one REST response body, as received and after decompression. 1440 BingX candles
    are about 160 KB; a larger body is refused (``TOO_LARGE``) without reading the rest."""
    max_json_depth: int = 32
    """Nesting of arrays and objects in one JSON document (BingX and Binance use at most 4);
    at most :data:`MAX_JSON_DEPTH_CEILING`. Deeper is refused (``TOO_DEEP``)."""

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidValueError(f"PeerLimits.{field.name} must be a positive whole number, got {value!r}")
        if self.max_json_depth > MAX_JSON_DEPTH_CEILING:
            raise InvalidValueError(
                f"PeerLimits.max_json_depth must be at most {MAX_JSON_DEPTH_CEILING} (market data nests 4 deep "
                f"at most, and checking costs more the deeper it may go), got {self.max_json_depth!r}"
            )


DEFAULT_LIMITS: Final = PeerLimits()


# -- gzip ------------------------------------------------------------------------------------------

_MAX_DEFLATE_RATIO: Final = 1032
"""Deflate's largest possible expansion, 1032:1 (zlib's technical details: a 258-byte match coded
in 2 bits). A stream of n bytes cannot inflate beyond 1032 n bytes, whatever it claims."""
_GZIP: Final = 31
"""zlib's ``wbits`` for a gzip wrapper (16 + the 15-bit window)."""


class _Inflater:
    """A gzip stream inflated piece by piece, never past ``max_size`` bytes of output in total."""

    __slots__ = ("_inflater", "_max_size", "size")

    def __init__(self, max_size: int) -> None:
        self._inflater = zlib.decompressobj(_GZIP)
        self._max_size = max_size
        self.size = 0

    def inflate(self, data: bytes) -> bytes:
        """The output of ``data``; ProtocolError (TOO_LARGE) as soon as the total passes the cap.

        Asking zlib for one byte more than the room left is what bounds the work: zlib stops
        there and keeps the rest of the input unprocessed. Getting less means all of ``data``
        was consumed (or the stream ended; bytes after it are ignored, like ``zlib.decompress``).
        """
        room = self._max_size - self.size
        try:
            output = self._inflater.decompress(data, room + 1)
        except zlib.error as exc:
            raise ProtocolError(ErrorKind.BAD_GZIP, f"not a gzip stream ({exc})") from None
        self.size += len(output)
        if len(output) > room:
            raise ProtocolError(ErrorKind.TOO_LARGE, f"gzip stream inflates beyond the limit of {self._max_size} bytes")
        return output

    def finish(self) -> None:
        """Raise ProtocolError (BAD_GZIP) unless the gzip stream ended."""
        if not self._inflater.eof:
            raise ProtocolError(ErrorKind.BAD_GZIP, "not a gzip stream (incomplete or truncated stream)")


def gunzip(data: bytes, max_size: int) -> bytes:
    """The content of the gzip stream ``data``, at most ``max_size`` bytes; bytes after the
    stream's end are ignored.

    Raises ProtocolError: ``TOO_LARGE`` past ``max_size`` (found after inflating ``max_size + 1``
    bytes, no more), ``BAD_GZIP`` for anything that is not one complete gzip stream.

    A stream too short to reach the cap, whatever it holds (every push of a market-data feed),
    takes the one-call path ``zlib.decompress``, which costs a quarter less than an inflater object.
    """
    if len(data) * _MAX_DEFLATE_RATIO <= max_size:
        try:
            return zlib.decompress(data, _GZIP)
        except zlib.error as exc:
            raise ProtocolError(ErrorKind.BAD_GZIP, f"not a gzip stream ({exc})") from None
    inflater = _Inflater(max_size)
    text = inflater.inflate(data)
    inflater.finish()
    return text


# -- JSON depth ------------------------------------------------------------------------------------

_ESCAPE: Final = re.compile(rb"\\.", re.DOTALL)
"""A backslash escape inside a JSON string (matched left to right, so ``\\\\`` is one escape)."""
_STRING: Final = re.compile(rb'"[^"]*"')
"""A JSON string once its escapes are gone: no quote inside."""
_BRACKETS: Final = bytes.maketrans(b"{}", b"[]")
_NOT_A_BRACKET: Final = bytes(byte for byte in range(256) if byte not in b"[]{}")


def check_json_depth(document: bytes | str, max_depth: int) -> None:
    """Raise ProtocolError (``TOO_DEEP``) if ``document`` nests arrays and objects deeper than
    ``max_depth``, brackets inside strings not counted. Call it before decoding.

    Exact for valid JSON; on anything else it never lets pass what a decoder would recurse into
    deeper than ``max_depth`` (a decoder stops at the first error, and everything before it is
    read here as the decoder reads it), and may refuse text that is not JSON anyway. No recursion
    and no Python loop over the bytes, so it costs little next to decoding:

    - a document with no more opening brackets than ``max_depth`` cannot nest deeper: two
      ``count`` calls clear the usual push (about 0.1 µs for 150 bytes);
    - otherwise escapes and strings are cut out by regular expressions and the brackets left
      reduced to ``[`` and ``]``. A run of ``max_depth + 1`` openings is too deep at once (the
      ``[[[[…`` of a hostile peer, 1 ms per MB). Else every pass deletes the innermost pairs
      ``[]``: a valid document of depth d vanishes after d passes, so more than ``max_depth``
      passes is too deep. Passes stop early when no pair is left (the brackets do not balance,
      e.g. a truncated body): what remains is ``]]…[[``, and the depth was at most the passes
      made plus its unclosed openings, each pass lowering the deepest point by one at most.

    Worst case, a megabyte of groups just ``max_depth`` deep: ``max_depth`` passes, about 50 ms
    for the default 32 (a megabyte of JSON numbers takes msgspec as long to turn into Decimals);
    a valid market-data body, a few passes over its brackets (0.02 ms for 1440 candles).
    """
    if isinstance(document, str):
        openings = document.count("[") + document.count("{")
    else:
        openings = document.count(b"[") + document.count(b"{")
    if openings <= max_depth:
        return
    data = document.encode("utf-8", "surrogatepass") if isinstance(document, str) else document
    if b"\\" in data:
        data = _ESCAPE.sub(b"", data)
    if b'"' in data:
        data = _STRING.sub(b"", data)
    brackets = data.translate(_BRACKETS, _NOT_A_BRACKET)
    too_deep = b"[" * (max_depth + 1) in brackets
    passes = 0
    while brackets and not too_deep:
        innermost_removed = brackets.replace(b"[]", b"")
        if len(innermost_removed) == len(brackets):  # no pair left: "]]…[["
            too_deep = passes + brackets.count(b"[") - brackets.count(b"]") > max_depth
            break
        passes += 1
        too_deep = passes > max_depth
        brackets = innermost_removed
    if too_deep:
        raise ProtocolError(ErrorKind.TOO_DEEP, f"JSON nested deeper than the limit of {max_depth} levels")


# -- REST ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RestBody:
    """A REST response: its HTTP status and its body, decompressed."""

    status: int
    content: bytes


_IDENTITY: Final = frozenset({"", "identity"})


async def get_body(
    http: httpx.AsyncClient,
    url: str,
    *,
    params: dict[str, str | int] | None = None,
    max_size: int = DEFAULT_LIMITS.max_body_size,
) -> RestBody:
    """GET ``url`` and read its body, at most ``max_size`` bytes, as received and as decoded.

    Only gzip is asked for (``Accept-Encoding: gzip``), and inflated by the bounded inflater of
    :func:`gunzip`; httpx's own decoding (``aiter_bytes``) would inflate each received chunk
    whole. A ``Content-Length`` above the cap is refused before reading; otherwise the body is
    read as it streams in and the connection dropped at the cap, so a body of any size costs at
    most ``max_size`` bytes of memory and the time to receive them.

    A server may close a kept-alive connection just as the pool hands it out for the next
    request: the request then ends in "Server disconnected without sending a response". A GET is
    idempotent, so that is tried once more, on a new connection, as urllib3 and browsers do; it
    is common against the simulator on a fast clock, whose idle timeout passes in less real time
    than httpx's keep-alive expiry.

    Raises ProtocolError: ``TOO_LARGE`` past the cap, ``BAD_GZIP`` for a broken gzip body,
    ``BAD_FIELD`` for a ``Content-Encoding`` other than gzip; and httpx errors on transport
    failure, which the caller bounds in time (httpx's timeouts are per read, not per body).
    """
    try:
        return await _get_body_once(http, url, params, max_size)
    except _NoResponse as exc:
        logger.debug("GET %s: the server closed the connection without answering (%r); trying again", url, exc)
        try:
            return await _get_body_once(http, url, params, max_size)
        except _NoResponse as again:
            raise again.error from None


class _NoResponse(Exception):
    """The connection ended before any response: the request can be sent again."""

    def __init__(self, error: httpx.RemoteProtocolError) -> None:
        super().__init__(str(error))
        self.error = error


async def _get_body_once(
    http: httpx.AsyncClient, url: str, params: dict[str, str | int] | None, max_size: int
) -> RestBody:
    answered = False
    try:
        async with http.stream("GET", url, params=params, headers={"Accept-Encoding": "gzip"}) as response:
            answered = True
            encoding = response.headers.get("Content-Encoding", "").strip().lower()
            if encoding not in _IDENTITY and encoding != "gzip":
                refused = f"Content-Encoding {encoding!r} from {url}: gzip was asked for"
                raise ProtocolError(ErrorKind.BAD_FIELD, refused)
            declared = response.headers.get("Content-Length", "")
            if declared.isdigit() and int(declared) > max_size:
                raise ProtocolError(ErrorKind.TOO_LARGE, f"body of {declared} bytes from {url}, limit {max_size}")
            content = await _read_body(response, max_size, _Inflater(max_size) if encoding == "gzip" else None)
            logger.debug("GET %s %s -> HTTP %d, %d bytes", url, params, response.status_code, len(content))
            return RestBody(response.status_code, content)
    except httpx.RemoteProtocolError as exc:
        if answered:
            raise
        raise _NoResponse(exc) from exc


async def _read_body(response: httpx.Response, max_size: int, inflater: _Inflater | None) -> bytes:
    """The body of ``response`` (inflated if ``inflater``), or ProtocolError at the first byte over
    ``max_size`` received or decoded, or at broken gzip.

    On a ProtocolError the loop does not break: leaving httpx's body iterator early leaves the
    async generators nested inside it suspended, and trio warns when they are collected
    (encode/httpx#3686). The response is closed instead, so the next read fails with ReadError,
    which unwinds them all; then the ProtocolError is raised.
    """
    chunks: list[bytes] = []
    received = 0
    refusal: ProtocolError | None = None
    try:
        async for chunk in response.aiter_raw():
            received += len(chunk)
            try:
                if received > max_size:
                    raise ProtocolError(ErrorKind.TOO_LARGE, f"body from {response.url} passes {max_size} bytes")
                chunks.append(chunk if inflater is None else inflater.inflate(chunk))
            except ProtocolError as exc:
                refusal = exc
                await response.aclose()
        if inflater is not None and refusal is None:
            inflater.finish()
    except httpx.ReadError:
        if refusal is None:
            raise
    if refusal is not None:
        raise refusal
    return b"".join(chunks)
