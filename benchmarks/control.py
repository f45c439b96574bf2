"""The JSON-lines control channel of a server process (feed server, simulator host).

The orchestrator writes one ``{"cmd": name, **arguments}`` line on the process's stdin and reads
one reply line on its stdout: ``{"ok": true, ...}`` or ``{"ok": false, "error": ...}``. Closing
stdin (or ``{"cmd": "quit"}``) ends the process.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import msgspec
import trio

__all__ = ["Handler", "serve_commands"]

Handler = Callable[..., Awaitable[dict[str, Any]]]

_RECEIVE_SIZE = 65536


async def serve_commands(hello: dict[str, Any], handlers: Mapping[str, Handler]) -> None:
    """Print ``hello``, then answer commands until stdin closes or ``quit`` arrives."""
    stdin = trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))
    stdout = trio.lowlevel.FdStream(os.dup(sys.stdout.fileno()))
    encode = msgspec.json.encode
    await stdout.send_all(encode(hello) + b"\n")
    buffer = b""
    while True:
        data = await stdin.receive_some(_RECEIVE_SIZE)
        if not data:
            return
        buffer += data
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            command = json.loads(line)
            name = command.pop("cmd")
            if name == "quit":
                return
            try:
                reply = {"ok": True, **await handlers[name](**command)}
            except (trio.TooSlowError, KeyError, ValueError, AssertionError) as exc:
                # Reported to the orchestrator, which raises it there with the command's name.
                reply = {"ok": False, "error": repr(exc)}
            await stdout.send_all(encode(reply) + b"\n")
