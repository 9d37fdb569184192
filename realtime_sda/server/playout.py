"""``PlayoutClock``: when each frame of a viewer's stream is sent.

One clock per viewer, shared by its video and audio track, maps the master clock (model-rate
samples, ``VideoFrame.pts * time_base``) to the wall clock, so a frame and its own audio
period are sent at the same moment with timestamps from the same master time. The playout
decisions live here (:meth:`PlayoutClock.place`): a frame that is late while a newer one
waits is dropped, never delayed; when even the newest is late the clock slips later, and it
moves earlier again once frames come early. No media library is needed for them.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Callable

__all__ = ["PlayoutClock", "DEFAULT_MARGIN_S", "MIN_MARGIN_S", "MAX_MARGIN_S", "MIN_SLACK_S", "check_margin"]

MIN_SLACK_S = 0.005  # a frame arriving closer than this to its slot (or after it) moves playback later

#: The playout margin: how early (at least) a frame should reach a viewer's feed before it is
#: sent. The one default (the server's ``ServerConfig.playout_margin_ms`` and every viewer
#: feed take it from here) and the one range, checked by :func:`check_margin`. A margin
#: below ``MIN_SLACK_S`` would move playback later on every frame.
DEFAULT_MARGIN_S = 0.010
MIN_MARGIN_S = MIN_SLACK_S
MAX_MARGIN_S = 1.0


def check_margin(margin_s: float) -> float:
    """``margin_s`` if it is a valid playout margin (5 ms to 1 s), else ``ValueError``."""
    if not MIN_MARGIN_S <= margin_s <= MAX_MARGIN_S:
        raise ValueError(f"the playout margin must be between {1000 * MIN_MARGIN_S:g} and "
                         f"{1000 * MAX_MARGIN_S:g} ms, got {1000 * margin_s:g} ms")
    return float(margin_s)


class PlayoutClock:
    """Maps master time to wall time for one viewer (shared by its audio and video track).

    Output time ``tau = master + shift``; media with output time ``tau`` is sent at
    ``origin + tau`` (monotonic seconds). The playout delay adapts both ways:

    - a frame arriving less than ``MIN_SLACK_S`` before its slot moves playback later
      (``slip``: its audio came (nearly) too late for its first packet; e.g. the first frame,
      which fixed the mapping, came early, or the producer fell behind after a stall), so it
      settles at the latest arrivals plus the margin;
    - frames arriving consistently early (for ``window`` frames, by more than the margin plus
      ``reclaim_s``) move it earlier again (``observe``), skipping that much media, so a
      transient stall does not leave the latency raised for good.

    ``shift`` starts at ``base_s`` so it can shrink without output times going negative.
    """

    def __init__(self, margin_s: float = DEFAULT_MARGIN_S, period_s: float = 0.04, window: int = 50, base_s: float = 1.0,
                 reclaim_s: float | None = None, now: Callable[[], float] = time.monotonic) -> None:
        self.now = now
        self.margin_s = check_margin(margin_s)
        self.period_s = period_s
        #: how much more than the margin every frame of the window must be early by before
        #: playback moves earlier (default: one period)
        self.reclaim_s = period_s if reclaim_s is None else reclaim_s
        self.base_s = base_s
        self.origin: float | None = None
        self.shift = base_s
        self.slips = 0
        self.reclaims = 0
        self._slack: deque[float] = deque(maxlen=window)
        self.anchored = asyncio.Event()

    def anchor(self, master_s: float) -> None:
        """Fix the mapping at the first frame: it is sent ``margin_s`` from now."""
        if self.origin is None:
            self.origin = self.now() + self.margin_s - master_s - self.shift
            self.anchored.set()

    @property
    def delay_s(self) -> float:
        """Playout delay added on top of the producer's schedule (margin + adaptations)."""
        return self.margin_s + self.shift - self.base_s

    def due(self, master_s: float) -> float:
        assert self.origin is not None
        return self.origin + master_s + self.shift

    def output_time(self, master_s: float) -> float:
        return master_s + self.shift

    def slip(self, lateness_s: float) -> None:
        """Move playback later by ``lateness_s`` plus the margin."""
        self.shift += lateness_s + self.margin_s
        self.slips += 1
        self._slack.clear()

    def advance(self, early_s: float) -> None:
        """Move playback earlier by ``early_s`` (media after a jump arrives early).

        The output timeline absorbs what ``shift`` holds (so it stays continuous); a jump
        larger than that moves the wall-clock origin, leaving a gap in the output timestamps
        (media was skipped) rather than sending every later frame ``early_s`` too late."""
        early_s = max(early_s, 0.0)
        taken = min(early_s, self.shift)
        self.shift -= taken
        if self.origin is not None:
            self.origin -= early_s - taken
        self.reclaims += 1
        self._slack.clear()

    def observe(self, slack_s: float) -> None:
        """Record how early a frame arrived (its slot minus its arrival); reclaim delay when
        every frame of the window came early by more than margin + ``reclaim_s``."""
        self._slack.append(slack_s)
        if len(self._slack) == self._slack.maxlen:
            excess = min(self._slack) - self.margin_s
            if excess > self.reclaim_s:
                self.advance(excess)

    def place(self, master_s: float, arrival: float, late_s: float, newer_waiting: bool) -> float | None:
        """Decide when the frame at ``master_s`` (arrived at ``arrival``) is sent: the seconds
        to wait before sending it, or None to drop it. ``late_s``: how late a frame may be
        before it is dropped for a newer one (``newer_waiting``) or, when it is the newest,
        playback moves later. Adapts the delay on the way (``slip``, ``observe``,
        ``advance``)."""
        lateness = self.now() - self.due(master_s)
        if lateness > late_s:
            if newer_waiting:
                return None  # late and a newer frame waits: drop it, never delay
            self.slip(lateness)  # even the newest frame is late: the producer fell behind
        elif self.due(master_s) - arrival < MIN_SLACK_S:
            self.slip(arrival - self.due(master_s))  # its audio (nearly) missed its slot: play later
        else:
            self.observe(self.due(master_s) - arrival)
        wait = self.due(master_s) - self.now()
        if wait > self.margin_s + late_s:
            self.advance(wait - self.margin_s)  # far too early (the producer jumped): catch up
            wait = self.due(master_s) - self.now()
        return wait
