"""``RealtimeSchedule``: when a real-time session's frames are due, and what to skip.

Frame ``i`` covers master samples ``[i*stride, (i+1)*stride)`` and needs audio up to
``(i+1)*stride + lookahead``; it is due at ``t0 + ((i+1)*stride + lookahead) / rate``. ``t0``
is set when the session opens, moved to the first audio if that comes before any frame, and
moved earlier by :class:`~.livewall.WallClockKeeper` for live sources. The rules (see
:mod:`.session` for why):

- pacing: a frame is not made before it is due;
- stall: a due frame whose audio is more than ``grace_s`` overdue gets silence instead;
- catch-up: when the next frame is ``catchup_frames`` or more periods behind the wall clock
  while newer windows are ready, a live timeline jumps to the newest frame due now; a queued
  one (program-pushed audio, never skipped) moves its schedule later instead;
- backlog: ready frames more than ``max_backlog_frames`` ahead of the wall clock are dropped
  (oldest first).

Pure arithmetic on frame indices and times: the session holds the lock, owns the ring
buffer and applies the answers.
"""

from __future__ import annotations

import math

__all__ = ["RealtimeSchedule", "EPS"]

EPS = 1e-9  # seconds: float tolerance of schedule comparisons


class RealtimeSchedule:
    """The real-time schedule of one session (not thread-safe: the session's lock)."""

    def __init__(
        self,
        *,
        rate: int,
        stride: int,
        lookahead: int,
        t0: float,
        grace_s: float = 0.1,
        catchup_frames: int | None = 2,
        max_backlog_frames: int | None = None,
    ) -> None:
        self.rate = rate
        self.stride = stride
        self.lookahead = lookahead
        self.grace_s = grace_s
        self.catchup_frames = catchup_frames
        self.max_backlog_frames = max_backlog_frames
        #: wall time of master sample 0
        self.t0 = t0

    # ---- times ----------------------------------------------------------------------------
    def due_time(self, index: int) -> float:
        """Wall time at which frame ``index`` is due."""
        return self.t0 + ((index + 1) * self.stride + self.lookahead) / self.rate

    def wall_index(self, now: float) -> int:
        """The last frame index due at ``now``."""
        return math.floor(((now - self.t0) * self.rate - self.lookahead) / self.stride + 1e-9) - 1

    def is_due(self, index: int, now: float) -> bool:
        return now >= self.due_time(index) - EPS

    def is_stalled(self, index: int, now: float) -> bool:
        """Frame ``index`` (its audio incomplete) has waited out the grace time."""
        return now >= self.due_time(index) - EPS + self.grace_s

    def next_wakeup(self, index: int, waiting_for_audio: bool) -> float:
        """When to look at the session again: frame ``index``'s due time, or the end of its
        grace time while its audio is incomplete."""
        due = self.due_time(index)
        return due + self.grace_s if waiting_for_audio else due

    def sample_time(self, samples: float) -> float:
        """Wall time the schedule gives master sample ``samples``."""
        return self.t0 + samples / self.rate

    def samples_due(self, now: float) -> float:
        """Master samples the schedule expects by ``now``."""
        return (now - self.t0) * self.rate

    def start_at_first_audio(self, now: float, samples: int, queued: bool = False) -> None:
        """Audio came before any frame was made: start as if it had been recorded live (at
        most one frame back), not at open. Queued audio pushed at once already holds the first
        frame's look-ahead: with enough of it the first frame is due ``now``."""
        back = self.stride + self.lookahead if queued else self.stride
        self.t0 = now - min(samples, back) / self.rate

    # ---- what to skip ---------------------------------------------------------------------
    def catchup(self, index: int, ready: int, now: float) -> int:
        """Frames to skip so the next frame is the newest due now (0: on schedule)."""
        wall = self.wall_index(now)
        if self.catchup_frames is not None and ready > 1 and wall - index >= self.catchup_frames:
            return min(wall - index, ready - 1)
        return 0

    def reanchor_if_behind(self, index: int, ready: int, now: float) -> float:
        """Queued audio: when frame ``index`` (its window ready) is ``catchup_frames`` periods
        or more past its due time, plus the grace a stalled frame may take, move ``t0`` later
        so it is due now. Returns the shift in seconds (0: on schedule)."""
        if self.catchup_frames is None or ready < 1:
            return 0.0
        late = now - self.due_time(index)
        if late < self.catchup_frames * self.stride / self.rate + self.grace_s - EPS:
            return 0.0
        self.t0 += late
        return late

    def backlog(self, index: int, ready: int, now: float) -> int:
        """Oldest ready frames to drop so at most ``max_backlog_frames`` wait ahead of the
        wall clock (0: none)."""
        if self.max_backlog_frames is None:
            return 0
        wall = self.wall_index(now)
        ahead = index + ready - 1 - max(wall, index)  # ready frames not yet due
        return max(ahead - self.max_backlog_frames, 0)
