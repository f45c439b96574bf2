"""A sans-IO decoder of server-to-client WebSocket frames (RFC 6455 §5), built for throughput.

wsproto decodes frames too, but builds a ``Frame`` and an event object per frame, validates UTF-8
incrementally and copies payloads through bytearrays: on a burst of small gzip pushes that was a
third of tradeloop's CPU per message. This decoder does only what a client receiving from a server
needs, and returns data messages as the plain ``bytes`` / ``str`` the codec takes.

It is pure state: :meth:`FrameDecoder.feed` takes bytes as they come off the socket, split
anywhere, and parses every complete frame in them; :meth:`FrameDecoder.events` hands over what was
parsed, in order. Sending is not its business: client frames must be masked, and wsproto does that.

What it enforces, each violation raising :class:`WebSocketProtocolError` with the close code to
fail the connection with:

- RSV bits clear (no extension is ever negotiated), known opcodes only, unmasked frames (a server
  never masks, §5.1), payload lengths in their shortest form with the top bit of the 64-bit form
  clear (§5.2);
- control frames (close, ping, pong) unfragmented and at most 125 bytes (§5.5); data messages never
  interleaved, and continuation frames only inside a fragmented message (§5.4);
- text messages strict UTF-8 (1007); close frames with a valid code and a UTF-8 reason (§7.4);
- a data message no larger than ``max_message_size`` (1009), checked from each frame's header, so
  an oversized message is refused before its payload is buffered.

A decoder that raised is finished: feeding it again raises again. Nothing after a close frame is
parsed: the close is the last frame an endpoint sends (§5.5.1).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from ..errors import InvalidValueError

__all__ = [
    "DEFAULT_MAX_MESSAGE_SIZE",
    "Close",
    "FrameDecoder",
    "Ping",
    "Pong",
    "WebSocketProtocolError",
]

DEFAULT_MAX_MESSAGE_SIZE: Final = 1024 * 1024
"""1 MiB, trio-websocket's default too. A BingX push is under 1 KB on the wire; the limit bounds what
a peer makes us buffer, and (deflate expanding at most 1032:1) what a frame could inflate to if the
codec did not bound that too (:class:`~tradeloop.exchanges.limits.PeerLimits`)."""

PROTOCOL_ERROR: Final = 1002
INVALID_PAYLOAD: Final = 1007
MESSAGE_TOO_BIG: Final = 1009
NO_STATUS: Final = 1005
"""The code a close frame with an empty payload stands for (§7.1.5); never sent on the wire."""

_CONTINUATION, _TEXT, _BINARY, _CLOSE, _PING, _PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
_FIN, _RSV, _OPCODE, _MASK = 0x80, 0x70, 0x0F, 0x80
_MAX_CONTROL_PAYLOAD = 125


class WebSocketProtocolError(Exception):
    """The server broke RFC 6455; ``code`` is the close code to fail the connection with."""

    def __init__(self, message: str, code: int = PROTOCOL_ERROR) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class Ping:
    payload: bytes


@dataclass(frozen=True, slots=True)
class Pong:
    payload: bytes


@dataclass(frozen=True, slots=True)
class Close:
    code: int
    """The status code, or 1005 (:data:`NO_STATUS`) when the frame carried none."""
    reason: str


Event = bytes | str | Ping | Pong | Close
"""A complete binary message, a complete text message, or a control frame."""


def _valid_close_code(code: int) -> bool:
    """Codes a peer may send (§7.4): the defined ones and IANA's 1012-1014, or 3000-4999.

    1004 is reserved, and 1005, 1006 and 1015 stand for conditions no frame can carry.
    """
    return 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999


def _parse_close(payload: bytes) -> Close:
    if not payload:
        return Close(NO_STATUS, "")
    if len(payload) == 1:
        raise WebSocketProtocolError("close frame with a 1-byte payload")
    code = int.from_bytes(payload[:2])
    if not _valid_close_code(code):
        raise WebSocketProtocolError(f"close frame with invalid code {code}")
    return Close(code, _utf8(payload[2:], "close reason"))


def _utf8(payload: bytes, what: str) -> str:
    try:
        return payload.decode()
    except UnicodeDecodeError as exc:
        raise WebSocketProtocolError(f"{what} is not valid UTF-8: {exc}", INVALID_PAYLOAD) from None


class FrameDecoder:
    """Server-to-client frames in, complete messages and control frames out."""

    def __init__(self, max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE) -> None:
        if max_message_size < 0:
            raise InvalidValueError(f"max_message_size must be a byte count >= 0, got {max_message_size!r}")
        self._max_message_size = max_message_size
        self._events: list[Event] = []
        # Bytes received but not parsed yet: the start of a frame, kept as chunks so a large frame
        # arriving in many reads is joined once, when ``_needed`` (its full size) has arrived.
        self._pending: list[bytes] = []
        self._pending_size = 0
        self._needed = 2
        # The fragmented message in progress: its opcode (0 when none), payloads and total size.
        self._message_opcode = 0
        self._fragments: list[bytes] = []
        self._message_size = 0
        self._closed = False
        self._error: WebSocketProtocolError | None = None

    @property
    def closed(self) -> bool:
        """Whether a close frame has been parsed (and everything after it ignored)."""
        return self._closed

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Take bytes from the server and parse every frame they complete.

        Raises :class:`WebSocketProtocolError` at the first violation; events parsed before it are
        still returned by :meth:`events`.
        """
        if self._error is not None:
            raise WebSocketProtocolError(f"the decoder failed earlier: {self._error}", self._error.code)
        if self._closed:
            return
        if type(data) is not bytes:
            data = bytes(data)
        if self._pending_size:
            self._pending.append(data)
            self._pending_size += len(data)
            if self._pending_size < self._needed:
                return
            data = b"".join(self._pending)
            self._pending.clear()
            self._pending_size = 0
        try:
            self._parse(data)
        except WebSocketProtocolError as exc:
            self._error = exc
            raise

    def events(self) -> list[Event]:
        """Everything parsed since the last call, in the order the server sent it (a list the caller owns)."""
        events, self._events = self._events, []
        return events

    def _parse(self, data: bytes) -> None:
        """Parse the frames of ``data``, which starts at a frame boundary; keep an incomplete tail."""
        events = self._events
        max_size = self._max_message_size
        end_of_data = len(data)
        position = 0
        while True:
            available = end_of_data - position
            if available < 2:
                needed = 2
                break
            first = data[position]
            length = data[position + 1]
            if first & _RSV:
                raise WebSocketProtocolError(f"reserved bits set (first byte {first:#04x}) with no extension")
            if length & _MASK:
                raise WebSocketProtocolError("masked frame from the server")
            if length < 126:
                start = position + 2
            elif length == 126:
                if available < 4:
                    needed = 4
                    break
                length = data[position + 2] << 8 | data[position + 3]
                if length < 126:
                    raise WebSocketProtocolError(f"16-bit length form used for {length} bytes")
                start = position + 4
            else:
                if available < 10:
                    needed = 10
                    break
                length = int.from_bytes(data[position + 2 : position + 10])
                if length >> 63:
                    raise WebSocketProtocolError("64-bit length with its most significant bit set")
                if length < 65536:
                    raise WebSocketProtocolError(f"64-bit length form used for {length} bytes")
                start = position + 10
            opcode = first & _OPCODE
            if not _TEXT <= opcode <= _BINARY or length > max_size or self._message_opcode:
                self._check_header(opcode, first & _FIN, length)
            end = start + length
            if end > end_of_data:
                needed = end - position
                break
            payload = data[start:end]
            position = end
            if first == _FIN | _BINARY:
                events.append(payload)
            elif first == _FIN | _TEXT:
                events.append(_utf8(payload, "text message"))
            elif opcode in (_TEXT, _BINARY):
                self._message_opcode = opcode
                self._fragments.append(payload)
                self._message_size = length
            elif opcode == _CONTINUATION:
                self._fragments.append(payload)
                self._message_size += length
                if first & _FIN:
                    events.append(self._finish_message())
            elif opcode == _PING:
                events.append(Ping(payload))
            elif opcode == _PONG:
                events.append(Pong(payload))
            else:
                events.append(_parse_close(payload))
                self._closed = True
                return
        self._needed = needed
        if available:
            tail = data[position:] if position else data
            self._pending.append(tail)
            self._pending_size = available

    def _check_header(self, opcode: int, fin: int, length: int) -> None:
        """Refuse a frame from its header alone, before waiting for its payload."""
        if opcode >= _CLOSE:
            if opcode > _PONG:
                raise WebSocketProtocolError(f"reserved control opcode {opcode:#x}")
            if not fin:
                raise WebSocketProtocolError(f"fragmented control frame (opcode {opcode:#x})")
            if length > _MAX_CONTROL_PAYLOAD:
                raise WebSocketProtocolError(f"control frame of {length} bytes (at most 125)")
            return
        if opcode > _BINARY:
            raise WebSocketProtocolError(f"reserved data opcode {opcode:#x}")
        if opcode == _CONTINUATION:
            if not self._message_opcode:
                raise WebSocketProtocolError("continuation frame with no message to continue")
            size = self._message_size + length
        else:
            if self._message_opcode:
                raise WebSocketProtocolError("new message before the fragmented one was finished")
            size = length
        if size > self._max_message_size:
            raise WebSocketProtocolError(
                f"message of at least {size} bytes exceeds the limit of {self._max_message_size}", MESSAGE_TOO_BIG
            )

    def _finish_message(self) -> bytes | str:
        payload = b"".join(self._fragments)
        opcode = self._message_opcode
        self._fragments.clear()
        self._message_opcode = 0
        self._message_size = 0
        return payload if opcode == _BINARY else _utf8(payload, "text message")
