"""Owned asyncio tasks: cancel one and wait for it, bounded, without swallowing our own
cancellation."""

from __future__ import annotations

import asyncio
import contextlib
import logging

__all__ = ["cancel_and_wait"]

log = logging.getLogger(__name__)


async def cancel_and_wait(task: asyncio.Task | None, timeout: float = 5.0) -> None:
    """Cancel ``task`` and wait up to ``timeout`` s for it to finish. If the calling task is
    itself being cancelled meanwhile, its CancelledError is re-raised (not swallowed)."""
    if task is None or task.done():
        return
    task.cancel()
    try:
        await asyncio.wait_for(asyncio.shield(task), timeout)
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise
    except asyncio.TimeoutError:
        log.warning("task %s did not finish within %.1f s of being cancelled", task.get_name(), timeout)
    except Exception:  # the task's own failure was already its business
        log.debug("task %s ended with an error", task.get_name(), exc_info=True)
    with contextlib.suppress(asyncio.CancelledError, Exception):
        if task.done():
            task.result()
