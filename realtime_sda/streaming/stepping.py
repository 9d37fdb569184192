"""The boundary between the inference thread and the sessions it steps.

:class:`~.worker.InferenceWorker` knows sessions only through :class:`SteppedSession`; a
session knows its worker only through two callables it is given (:class:`WorkerLink`).
Neither module imports the other for this (the worker imports :mod:`.session` only to
construct sessions in ``open_session``).

One round of the inference thread, per session (all on that thread):

1. ``poll(now)``: apply the session's real-time policy (pacing, silence for a stall,
   catch-up, backlog); True when its next frame should be made now;
2. ``take()``: the :class:`StepInput` of that frame (its window, noise and index);
3. the worker runs one batched model step over every due session's ``state``;
4. ``deliver(step, image, state, ready)``: the frame's image and the session's new state,
   handed to its subscribers; or ``fail(error)`` when its step failed (the session closes
   with that error, the others go on).

Between rounds the worker sleeps until the earliest ``next_wakeup(now)`` of its sessions, or
until a session calls its ``wake`` callable (new audio completes a window).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol

import numpy as np
import torch

from ..core.state import StreamState

__all__ = ["StepInput", "SteppedSession", "WorkerLink"]


@dataclass(frozen=True, slots=True)
class StepInput:
    """What one session contributes to a batched step."""

    index: int  #: the frame's index on the master clock
    window: np.ndarray  #: (audio_feat_samples,) float32 audio window
    noise: torch.Tensor  #: (1, aux_latent) raw noise of this frame
    arrival: float  #: clock time the window's last needed sample arrived


class SteppedSession(Protocol):
    """What the inference thread needs of a session (see the module docstring)."""

    @property
    def state(self) -> StreamState | None:
        """The recurrent state before the next frame; None once closed."""
        ...

    def poll(self, now: float) -> bool: ...

    def next_wakeup(self, now: float) -> float | None: ...

    def take(self) -> StepInput: ...

    def deliver(self, step: StepInput, image: np.ndarray, state: StreamState, ready: float) -> None: ...

    def fail(self, error: BaseException) -> None: ...


@dataclass(frozen=True)
class WorkerLink:
    """What a session may ask of the worker stepping it (thread-safe, never blocking)."""

    #: wake the inference thread: new audio is ready or the session ended
    wake: Callable[[], None]
    #: take the session off the schedule (it closed, failed or made its last frame); idempotent
    release: Callable[[SteppedSession], None]

    @classmethod
    def detached(cls) -> "WorkerLink":
        """A link to no worker (a session stepped by hand, e.g. in a test)."""
        return cls(lambda: None, lambda _session: None)
