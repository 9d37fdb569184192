"""Freed heap memory back to the system: glibc keeps the pages a process freed (decoded
photos, a closed peer's codec buffers, an offline clip's temporaries) for reuse, so a server
that served a burst stays at its peak size unless told to hand them back."""

from __future__ import annotations

import ctypes
import ctypes.util
from typing import Any

__all__ = ["release_memory"]

_libc: Any = None


def release_memory() -> bool:
    """Return freed heap memory to the system (glibc ``malloc_trim(0)``); False where the C
    library has none (musl, macOS, Windows). Takes milliseconds: call it off the event loop."""
    global _libc
    if _libc is None:
        try:
            _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            _libc.malloc_trim.argtypes = [ctypes.c_size_t]
        except (OSError, AttributeError):
            _libc = False
    if not _libc:
        return False
    try:
        return bool(_libc.malloc_trim(0))
    except AttributeError:
        return False
