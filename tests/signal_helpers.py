"""Running ``tradeloop`` as a process that a test interrupts as Ctrl-C would."""

from __future__ import annotations

import signal


def default_sigint() -> None:
    """``preexec_fn`` of an interrupted process: a background job may inherit SIGINT ignored."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
