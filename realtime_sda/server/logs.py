"""The server's log: one short line per refused request, rate-limited per client address, so
hostile clients cannot flood it; the ``websockets`` library's per-connection lines and
tracebacks folded into that; aiortc/aioice's ICE chatter kept at WARNING.

A refusal is logged at INFO as ``refused ADDR: reason`` (at most :attr:`RefusalLog.burst`
lines per address per :attr:`RefusalLog.window_s`; the rest are counted and summed up in one
line when the window ends). Tracebacks are never written for client input.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from typing import Any, Callable

__all__ = ["RefusalLog", "ConnectionLogFilter", "CONNECTION_LOGGER", "quiet_media_loggers", "client_address"]

log = logging.getLogger("realtime_sda.server")
#: the logger given to ``websockets.serve``: each server adds its :class:`ConnectionLogFilter`
CONNECTION_LOGGER = "realtime_sda.server.connections"

#: refusal texts are cut to this many characters (a request line may be 8 KB)
MAX_REASON_CHARS = 160


def client_address(ws: Any) -> str:
    """The remote IP address of a websocket connection ('?' when unknown)."""
    try:
        addr = ws.remote_address
    except Exception:  # a closed transport, or a weak proxy to a collected connection
        return "?"
    return str(addr[0]) if isinstance(addr, tuple) and addr else "?"


def _short(text: str) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= MAX_REASON_CHARS else text[: MAX_REASON_CHARS - 3] + "..."


class RefusalLog:
    """``refuse(address, reason)``: one INFO line, at most ``burst`` per address per window.

    The table of addresses is bounded (``max_addresses``, least recently seen dropped), so a
    scan from many addresses costs a bounded amount of memory."""

    def __init__(self, logger: logging.Logger = log, burst: int = 3, window_s: float = 60.0,
                 max_addresses: int = 1024, clock: Callable[[], float] = time.monotonic) -> None:
        self.logger = logger
        self.burst = burst
        self.window_s = window_s
        self.max_addresses = max_addresses
        self.clock = clock
        self._seen: OrderedDict[str, list[float]] = OrderedDict()  # address -> [window start, lines, suppressed]
        self.lines = 0
        self.suppressed = 0

    def refuse(self, address: str, reason: str) -> None:
        """Log that a request from ``address`` was refused (rate-limited)."""
        now = self.clock()
        entry = self._seen.pop(address, None)
        if entry is None or now - entry[0] >= self.window_s:
            if entry is not None and entry[2]:
                self.logger.info("refused %s: %d more refusals in the last %.0f s (not logged)",
                                 address, int(entry[2]), now - entry[0])
            entry = [now, 0.0, 0.0]
        self._seen[address] = entry
        while len(self._seen) > self.max_addresses:
            self._seen.popitem(last=False)
        if entry[1] < self.burst:
            entry[1] += 1
            self.lines += 1
            self.logger.info("refused %s: %s", address, _short(reason))
        else:
            entry[2] += 1
            self.suppressed += 1


class ConnectionLogFilter(logging.Filter):
    """On the logger given to ``websockets.serve``: its per-connection INFO lines ("connection
    open", "HTTP response sent") pass only at DEBUG, and an error with a traceback (a request
    the HTTP layer failed on) becomes one rate-limited refusal line."""

    _CHATTY = ("connection open", "connection closed", "connection rejected", "HTTP response sent")

    def __init__(self, refusals: RefusalLog) -> None:
        super().__init__()
        self.refusals = refusals

    def filter(self, record: logging.LogRecord) -> bool:
        msg = str(record.msg)
        if record.levelno < logging.WARNING:
            if msg.startswith(self._CHATTY):
                return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)
            return True
        if record.exc_info:
            exc = record.exc_info[1]
            ws = getattr(record, "websocket", None)
            reason = f"{msg} ({type(exc).__name__}: {exc})" if exc is not None else msg
            self.refusals.refuse(client_address(ws) if ws is not None else "?", reason)
            return False
        return True


def quiet_media_loggers(level: int = logging.WARNING) -> None:
    """aioice logs every ICE candidate pair and aiortc every transceiver at INFO: set both
    to ``level`` (``serve --verbose`` keeps them)."""
    for name in ("aioice", "aiortc"):
        logging.getLogger(name).setLevel(level)
