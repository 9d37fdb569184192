"""``WallClockKeeper``: keeps a live source's audio on the wall clock after a stall.

While a live source stalls, the session fills the missing audio with silence (after its
grace time) so frames keep coming. When audio comes again it is either new (the source had
paused) or late (a stalled network delivering its backlog at once). Appending it after the
silence either way would shift the stream later for good, and that shift is latency: every
later frame would wait for a schedule that no longer matches the audio's arrival. Instead:

- the first audio after a stall is placed to end at the schedule's position for *now*
  (silence fills the gap), so a source that paused resumes on time;
- while silence stands in for audio that may still arrive (the debt), audio running ahead of
  the schedule is that late audio: its head is dropped, at most as much as the debt;
- the debt ends when audio arrives on time (not ahead) again;
- outside a stall the schedule follows the least-delayed arrival so far (``schedule_start``),
  so audio never waits for a schedule set by a slower first packet (or a sender clock that
  runs fast); later arrivals only make their own frames late. Audio further ahead than
  ``max_lead_s`` is a burst, not a shorter delay: the session's backlog rule drops it.

Pure bookkeeping on sample counts (the session holds the lock and owns the buffer).
"""

from __future__ import annotations

__all__ = ["WallClockKeeper"]


class WallClockKeeper:
    """Sample-count policy for one live session (not thread-safe: the session's lock)."""

    def __init__(self, max_lead_s: float = 0.12) -> None:
        self.max_lead_s = max_lead_s
        self.stalled = False  # silence was filled in since the last audio
        self.debt = 0  # samples of silence that stood in for audio that may still arrive
        self.dropped = 0  # samples of late audio dropped so far

    def filled(self, samples: int) -> None:
        """The session filled ``samples`` of silence for overdue audio."""
        self.stalled = True
        self.debt += max(int(samples), 0)

    def admit(self, n: int, written: int, expected: float, max_gap: int) -> tuple[int, int]:
        """``n`` new samples arrive; ``written``: samples in the stream so far; ``expected``:
        samples the schedule expects by now. Returns ``(gap, drop)``: write ``gap`` samples
        of silence first, then the new samples less their first ``drop``."""
        gap = 0
        resumed = self.stalled
        if resumed:
            self.stalled = False
            gap = max(min(int(expected) - n - written, max_gap), 0)
            self.debt += gap
        if self.debt <= 0:
            return gap, 0
        lead = written + gap + n - int(expected)  # samples ahead of the schedule
        if lead <= 0 and not resumed:  # on time again: nothing late is left to come
            self.debt = 0
            return gap, 0
        drop = min(self.debt, max(lead, 0), n)
        self.debt -= drop
        self.dropped += drop
        return gap, drop

    def schedule_start(self, t0: float, arrival_start: float) -> float:
        """The schedule's start (wall time of master sample 0) after audio arrived as if the
        stream had started at ``arrival_start``: moved earlier to it when that is less
        delayed, by at most ``max_lead_s``, and never during a stall."""
        if self.debt or self.stalled or not 0 < t0 - arrival_start <= self.max_lead_s:
            return t0
        return arrival_start
