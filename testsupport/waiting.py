"""``eventually``: wait for a condition on the event loop, failing loudly when it never holds
(instead of a fixed sleep that races on a slow machine, or a poll loop that ends silently)."""

from __future__ import annotations

import asyncio
from typing import Callable

__all__ = ["eventually"]


async def eventually(check: Callable[[], bool], what: str, timeout: float = 20.0, poll_s: float = 0.02) -> None:
    """Return once ``check()`` is true; raise AssertionError naming ``what`` after ``timeout`` s."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        if loop.time() > deadline:
            raise AssertionError(f"never happened within {timeout} s: {what}")
        await asyncio.sleep(poll_s)
