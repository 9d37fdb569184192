"""``IdleMemory``: the model's memory of silence, so an interrupt returns the face to rest at once.

The content GRU remembers the speech it heard: after an interrupt its state would fade from
the interrupted speech to rest over some ten frames (the mouth closing slowly). This keeps a
copy of the content state from the latest long enough stretch of silence (every window all
zeros for ``settle`` frames: the GRU has settled, the mouth is closed) and, once armed by an
interrupt, puts it back before the next step. The noise state (blinks, head motion) is left
alone, so the head does not jump; only the mouth returns to rest.

Not thread-safe on its own: the session calls it under its lock.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..core.state import StreamState

if TYPE_CHECKING:
    import torch

__all__ = ["IdleMemory"]


class IdleMemory:
    """The content state of the latest settled silence (see the module doc)."""

    def __init__(self, settle: int = 12) -> None:
        self.settle = int(settle)
        self.silent_run = 0  # consecutive frames whose whole window was silence
        self.content: torch.Tensor | None = None  # content_h of the latest settled silence (a copy)
        self.armed = False
        self.restored = 0

    def observe(self, window: np.ndarray, state: StreamState) -> None:
        """After a step: ``window`` was its input, ``state`` the state after it."""
        if window.size and not np.any(window):
            self.silent_run += 1
            if self.silent_run >= self.settle and state.content_h is not None:
                self.content = state.content_h.clone()
        else:
            self.silent_run = 0

    def arm(self) -> None:
        """An interrupt: restore the resting state before the next step (if one is known)."""
        self.armed = self.content is not None

    def restore(self, state: StreamState | None) -> StreamState | None:
        """``state`` with the resting content state, when armed (disarms)."""
        if not self.armed or state is None or self.content is None:
            self.armed = False
            return state
        self.armed = False
        self.restored += 1
        return StreamState(state.identity, self.content.clone(), state.noise_h)
