"""PlayoutClock.place on an injected clock: the playout decisions without media or sleeps."""

from __future__ import annotations

import pytest

from realtime_sda.server.playout import DEFAULT_MARGIN_S, PlayoutClock, check_margin


class FakeTime:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def make(margin: float = 0.02, period: float = 0.04) -> tuple[PlayoutClock, FakeTime]:
    now = FakeTime()
    clock = PlayoutClock(margin_s=margin, period_s=period, window=3, now=now)
    clock.anchor(0.0)
    return clock, now


def test_on_time_frame_waits_for_its_slot() -> None:
    clock, now = make()
    assert clock.place(0.0, arrival=now.t, late_s=0.04, newer_waiting=False) == pytest.approx(0.02)
    assert clock.slips == 0


def test_late_frame_is_dropped_when_a_newer_one_waits_else_playback_slips() -> None:
    clock, now = make()
    now.t += 0.1  # frame 0 is 80 ms past its slot
    assert clock.place(0.0, arrival=now.t, late_s=0.04, newer_waiting=True) is None
    assert clock.slips == 0
    wait = clock.place(0.0, arrival=now.t, late_s=0.04, newer_waiting=False)
    assert clock.slips == 1 and wait == pytest.approx(0.02)  # moved later by lateness + margin


def test_frame_that_nearly_missed_its_slot_moves_playback_later() -> None:
    clock, now = make()
    due = clock.due(0.04)
    now.t = due - 0.001
    clock.place(0.04, arrival=now.t, late_s=0.04, newer_waiting=False)
    assert clock.slips == 1 and clock.delay_s == pytest.approx(0.02 + 0.02 - 0.001)


def test_consistently_early_frames_reclaim_delay_and_far_early_ones_catch_up() -> None:
    clock, now = make(margin=0.02)
    clock.slip(0.2)  # a stall raised the delay
    for i in range(3):  # every frame of the window arrives 0.2 s early
        master = 0.04 * i
        now.t = clock.due(master) - 0.2
        clock.place(master, arrival=now.t, late_s=0.04, newer_waiting=False)
    assert clock.reclaims >= 1 and clock.delay_s < 0.1


def test_a_jump_larger_than_the_base_shift_is_caught_up_whole() -> None:
    """A producer that jumps further ahead than ``base_s`` (a live source after a long stall)
    is sent at once again, not ``jump - base_s`` late for the rest of the session."""
    clock, now = make(margin=0.02)
    clock.place(0.0, arrival=now.t, late_s=0.04, newer_waiting=False)
    now.t += 0.04
    master = 0.04 + 3.0  # 3 s of media skipped, three times base_s
    wait = clock.place(master, arrival=now.t, late_s=0.04, newer_waiting=False)
    assert wait is not None and 0.0 <= wait <= 0.02 + 0.04
    assert clock.output_time(master) > clock.output_time(0.0)  # timestamps still move forward
    now.t += 0.04
    assert clock.place(master + 0.04, arrival=now.t, late_s=0.04, newer_waiting=False) == pytest.approx(wait, abs=1e-6)


def test_one_margin_default_and_one_range() -> None:
    """The playout margin's default and bounds live in playout.py; the clock, the viewer feed
    and the server's config all take them from there."""
    assert DEFAULT_MARGIN_S == pytest.approx(0.010)
    assert PlayoutClock().margin_s == DEFAULT_MARGIN_S
    assert check_margin(0.005) == 0.005 and check_margin(1.0) == 1.0
    for bad in (0.002, 1.5, -0.01):
        with pytest.raises(ValueError, match="between 5 and 1000 ms"):
            check_margin(bad)
        with pytest.raises(ValueError, match="between 5 and 1000 ms"):
            PlayoutClock(margin_s=bad)


def test_server_config_default_is_the_playout_default() -> None:
    pytest.importorskip("aiortc")  # the server package needs its media stack
    from realtime_sda.server.app import ServerConfig

    assert ServerConfig().playout_margin_ms == pytest.approx(1000 * DEFAULT_MARGIN_S)
