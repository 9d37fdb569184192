"""Owned asyncio tasks: cancel one and wait for it, bounded, so that cleanup code (also in the
``finally`` of a task that is itself being cancelled) runs to its end."""

from __future__ import annotations

import asyncio
import logging

__all__ = ["cancel_and_wait"]

log = logging.getLogger(__name__)


async def cancel_and_wait(task: "asyncio.Task | None", timeout: float = 5.0) -> None:
    """Cancel ``task`` and wait up to ``timeout`` s for it to end. Its own error is logged
    (debug), a timeout too (warning). CancelledError is re-raised only when the *calling*
    task is cancelled while it waits here; a cancellation it already had pending before
    (cleanup in the ``finally`` of a cancelled task) does not stop it."""
    if task is None:
        return
    current = asyncio.current_task()
    before = current.cancelling() if current is not None else 0
    if not task.done():
        task.cancel()
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout)
        except asyncio.CancelledError:
            if current is not None and current.cancelling() > before:
                raise
        except asyncio.TimeoutError:
            log.warning("task %s did not end within %.1f s of being cancelled", task.get_name(), timeout)
        except Exception:
            pass  # the task's own error: logged below
        if current is not None and current.cancelling() > before:
            raise asyncio.CancelledError  # cancelled as the task ended (wait_for returned its result)
    if task.done() and not task.cancelled() and task.exception() is not None:
        log.debug("task %s ended with an error", task.get_name(), exc_info=task.exception())
