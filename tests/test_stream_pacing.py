"""Real-time policy with an injected manual clock: pacing, stall -> silence at the video rate,
no backlog after the source resumes, reduced look-ahead."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from testsupport.streaming import manual_worker, random_still

pytestmark = pytest.mark.usefixtures("one_torch_thread")



def _drain(q) -> list:
    out = []
    while (f := q.get_nowait()) is not None:
        out.append(f)
    return out


def test_pacing_stall_and_recovery(tiny_model) -> None:
    cfg = tiny_model.config
    rate, stride, period = cfg.audio_rate, cfg.stride, cfg.stride / cfg.audio_rate
    chunk = rate // 50  # 20 ms pushes
    audio = (0.5 * np.sin(np.arange(rate * 4) * 0.05) + 0.1).astype(np.float32)

    async def main():
        async with manual_worker(tiny_model) as (clock, worker):
            s = await worker.open_session(random_still(tiny_model), seed=0, grace_ms=60, max_backlog_ms=120)
            q = s.subscribe(10_000)
            t0, pos, log = clock.now(), 0, []  # log: (time, frames so far)

            async def run(seconds: float, push: bool) -> None:
                nonlocal pos
                for _ in range(int(round(seconds / 0.02))):
                    clock.advance(0.02)
                    if push:
                        s.push_audio(audio[pos : pos + chunk], rate)
                        pos += chunk
                    await worker.tick()
                    log.append((clock.now() - t0, s.frames_emitted))

            await run(1.0, push=True)  # 1 s of live audio
            n_live = s.frames_emitted
            # pacing: audio pushed in real time -> frame i exactly when due, never before
            assert n_live == int((1.0 - s.lookahead_ms / 1000) / period + 1e-9)
            await run(1.0, push=False)  # the source stalls for 1 s
            n_stall = s.frames_emitted - n_live
            snap = s.stats.snapshot()
            assert 23 <= n_stall <= 25 and snap.silence_frames >= 22  # still ~25 fps, from silence
            # the source resumes and delivers its 1 s backlog at once, then continues live
            s.push_audio(audio[pos : pos + rate], rate)
            pos += rate
            await run(1.0, push=True)
            snap = s.stats.snapshot()
            frames = _drain(q)
            return frames, snap, log, s.buffered_seconds()

    frames, snap, log, buffered = asyncio.run(main())
    # one master clock: consecutive indices, pts = index * stride, audio slices of stride
    assert [f.index for f in frames] == list(range(len(frames)))
    assert all(f.pts == f.index * stride and f.audio.shape == (stride,) for f in frames)
    # no backlog: the late audio was skipped, the stream kept pace with the wall clock
    assert snap.skipped_frames >= 20
    t_end, n_end = log[-1]
    assert abs(n_end - (t_end - 0.08) / period) <= 3
    assert buffered <= 0.12 + period
    # frames during the stall carry silence; live frames carry the pushed audio
    silent = [f for f in frames if not f.audio.any()]
    assert len(silent) >= 20
    assert frames[5].audio.any()
    # rate: one frame per period in every second of the run
    counts = np.diff([n for t, n in log if abs(t % 1.0) < 1e-6 or abs(t % 1.0 - 1.0) < 1e-6])
    assert all(abs(c - 25) <= 2 for c in counts)


def test_reduced_lookahead_emits_earlier_and_zero_fills(tiny_model) -> None:
    cfg = tiny_model.config
    rate = cfg.audio_rate

    async def main():
        async with manual_worker(tiny_model) as (clock, worker):
            full = await worker.open_session(random_still(tiny_model), seed=0)
            fast = await worker.open_session(random_still(tiny_model), seed=0, lookahead_ms=0)
            assert full.lookahead_ms == 1000.0 * cfg.lookahead_samples / rate and fast.lookahead_ms == 0
            first = {}
            for k in range(30):
                clock.advance(0.01)
                for s in (full, fast):
                    s.push_audio(np.ones(rate // 100, np.float32), rate)
                await worker.tick()
                for s in (full, fast):
                    if s.frames_emitted and s not in first:
                        first[s] = (k + 1) * 0.01
            return first[full], first[fast]

    t_full, t_fast = asyncio.run(main())
    # frame 0 needs audio up to stride + lookahead: 40 + 80 ms vs 40 + 0 ms
    assert abs(t_full - 0.12) < 1e-6 and abs(t_fast - 0.04) < 1e-6


def test_slow_steps_jump_the_timeline_instead_of_falling_behind(tiny_model) -> None:
    """A worker that can only step every 200 ms (5 periods): each step makes the frame due
    now; indices skip, pts stay on the wall clock, latency stays bounded."""
    cfg = tiny_model.config
    rate = cfg.audio_rate
    chunk = rate // 50
    audio = (0.3 * np.sin(np.arange(rate * 3) * 0.03)).astype(np.float32)

    async def main():
        async with manual_worker(tiny_model) as (clock, worker):
            s = await worker.open_session(random_still(tiny_model), seed=0)
            q = s.subscribe(1000)
            for k in range(150):  # 3 s of audio in 20 ms pushes, a step every 10th push
                clock.advance(0.02)
                s.push_audio(audio[k * chunk : (k + 1) * chunk], rate)
                if k % 10 == 9:
                    await worker.tick()
            return _drain(q), s.stats.snapshot(), s.schedule.wall_index(clock.now())

    frames, snap, wall_index = asyncio.run(main())
    idx = [f.index for f in frames]
    assert len(frames) == 15 and idx == sorted(set(idx))
    assert all(b - a == 5 for a, b in zip(idx[1:], idx[2:]))  # 5 periods per step: 4 skipped
    assert wall_index - idx[-1] <= 1  # the last frame is the one due now
    assert all(f.pts == f.index * cfg.stride for f in frames)
    assert snap.skipped_frames >= 4 * 12 and snap.latency_max_ms <= 200 + 1e-6


def _live_run(tiny_model, backlog: bool):
    """1 s live, 0.5 s stall, then (with ``backlog``) the stalled 0.5 s at once, then 1 s
    live; returns the frames and, per live tick after the stall, (wall index, frames due)."""
    cfg = tiny_model.config
    rate = cfg.audio_rate
    chunk = rate // 50
    audio = (0.4 * np.sin(np.arange(rate * 4) * 0.05) + 0.1).astype(np.float32)

    async def main():
        async with manual_worker(tiny_model) as (clock, worker):
            s = await worker.open_session(random_still(tiny_model), seed=0, grace_ms=60, max_backlog_ms=120)
            q = s.subscribe(10_000)
            pos, after = 0, []

            async def step(push: bool) -> None:
                nonlocal pos
                clock.advance(0.02)
                if push:
                    s.push_audio(audio[pos : pos + chunk], rate)
                    pos += chunk
                await worker.tick()

            for _ in range(50):
                await step(True)
            for _ in range(25):
                await step(False)
                if backlog:
                    pos += chunk  # this audio is late: it comes with the backlog below
            if backlog:
                s.push_audio(audio[pos - 25 * chunk : pos], rate)
                await worker.tick()
            for _ in range(50):
                await step(True)
                after.append((s.schedule.wall_index(clock.now()), s.next_index - 1, s.stats.snapshot()))
            return _drain(q), after

    return asyncio.run(main())


@pytest.mark.parametrize("backlog", [True, False], ids=["late-burst", "pause"])
def test_live_stream_returns_to_the_wall_clock_after_a_stall(tiny_model, backlog) -> None:
    """After a stall filled with silence, a live source's frames are again made as soon as
    their audio arrives and stay on the wall clock: whether the stalled audio comes late in
    one burst (it is dropped, its time was silence) or never (the source paused)."""
    frames, after = _live_run(tiny_model, backlog)
    assert [f.index for f in frames] == sorted({f.index for f in frames})
    assert all(f.pts == f.index * tiny_model.config.stride for f in frames)
    # a few frames after the source is back: the last frame made is the one due now, so
    # nothing waits (the schedule is not behind the audio, and not ahead of it)
    for wall, last, _ in after[5:]:
        assert wall - 1 <= last <= wall, (wall, last)
    snap = after[-1][2]
    # every frame was made at the tick its audio arrived (the manual clock makes this exact):
    # none was held back behind a schedule that the stall had pushed later
    assert snap.latency_max_ms == 0.0
    assert snap.silence_frames >= 10
    if backlog:  # the late half second was dropped, not queued
        assert snap.skipped_frames >= 10
    # the live audio after the stall reaches the frames
    assert frames[-1].audio.any()


def test_wall_clock_keeper_bookkeeping() -> None:
    from realtime_sda.streaming.livewall import WallClockKeeper

    k = WallClockKeeper()
    assert k.admit(320, 1000, 1320, 10**6) == (0, 0)  # no stall: audio untouched
    k.filled(640)  # a stall: silence stood in for 640 samples
    assert k.admit(320, 2000, 2420, 10**6) == (100, 0)  # resumes 100 behind now: gap filled
    assert k.debt == 740
    assert k.admit(960, 2420, 2430, 10**6) == (0, 740)  # the backlog: its late head dropped
    assert k.debt == 0 and k.dropped == 740
    assert k.admit(320, 2640, 2750, 10**6) == (0, 0)  # later audio is kept
    k.filled(640)
    assert k.admit(320, 4000, 4000, 10**6) == (0, 320)  # ahead right after a stall: late
    assert k.admit(320, 4000, 4330, 10**6) == (0, 0) and k.debt == 0  # on time again: debt over


def test_live_schedule_follows_the_least_delayed_arrival(tiny_model) -> None:
    """The first packet comes 15 ms later than the rest (e.g. connection set-up): the live
    schedule moves earlier with the next packet, so each frame is made as soon as the packet
    completing its window arrives, not 15 ms later; a later, slower packet does not move it
    back."""
    cfg = tiny_model.config
    rate, chunk = cfg.audio_rate, cfg.audio_rate // 50  # 20 ms packets
    audio = (0.3 * np.sin(np.arange(rate * 2) * 0.05)).astype(np.float32)

    async def main():
        async with manual_worker(tiny_model) as (clock, worker):
            s = await worker.open_session(random_still(tiny_model), seed=0)
            s.push_audio(audio[:chunk], rate)  # packet 0, late
            clock.advance(0.005)  # packet 1 arrives only 5 ms later
            t0_first, made_with = None, []
            for k in range(1, 40):
                s.push_audio(audio[k * chunk : (k + 1) * chunk], rate)
                t0_first = s.schedule.t0 if t0_first is None else t0_first
                if k == 20:
                    clock.advance(0.010)  # one slow packet
                await worker.tick()
                made_with.append((k, s.frames_emitted))
                clock.advance(0.020 if k != 20 else 0.010)
            return made_with, t0_first, s.schedule.t0

    made_with, t0_first, t0_last = asyncio.run(main())
    for k, emitted in made_with:  # frame i's window ends with packet (E_i / chunk) - 1
        ready = sum(1 for i in range(64) if ((i + 1) * cfg.stride + cfg.lookahead_samples) // chunk - 1 <= k)
        assert emitted == ready, (k, emitted, ready)
    assert t0_last == pytest.approx(t0_first)  # the slow packet left the schedule alone


def test_live_burst_ahead_is_dropped_not_made_at_once(tiny_model) -> None:
    """A live source that suddenly delivers 1 s ahead (no stall before it) is a burst, not a
    shorter network delay: the schedule does not jump 1 s earlier (which would make 25 frames
    at once); the backlog rule drops the oldest of it and frames keep the video rate."""
    cfg = tiny_model.config
    rate, chunk = cfg.audio_rate, cfg.audio_rate // 50
    audio = (0.3 * np.sin(np.arange(rate * 4) * 0.05)).astype(np.float32)

    async def main():
        async with manual_worker(tiny_model) as (clock, worker):
            s = await worker.open_session(random_still(tiny_model), seed=0, max_backlog_ms=120)
            pos, per_tick = 0, []
            for k in range(100):
                n = chunk + (rate if k == 50 else 0)  # packet 50 brings 1 s extra
                s.push_audio(audio[pos : pos + n], rate)
                pos += n
                before = s.frames_emitted
                await worker.tick()
                per_tick.append(s.frames_emitted - before)
                clock.advance(0.02)
            return per_tick, s.stats.snapshot()

    per_tick, snap = asyncio.run(main())
    assert max(per_tick) <= 4  # at most the 120 ms backlog plus the frame due
    assert snap.skipped_frames >= 20  # the rest of the burst was dropped
    assert snap.silence_frames == 0  # and the schedule still matches the audio that follows


def test_schedule_start_moves_earlier_only_within_the_backlog_and_outside_stalls() -> None:
    """The min-delay rule on its own: an arrival less delayed than the schedule moves it
    earlier, by at most ``max_lead_s``; never later; never while a stall's debt is open."""
    from realtime_sda.streaming.livewall import WallClockKeeper

    k = WallClockKeeper(max_lead_s=0.12)
    assert k.schedule_start(10.0, 9.99) == 9.99  # 10 ms less delay: adopted
    assert k.schedule_start(10.0, 10.05) == 10.0  # a later arrival never moves it later
    assert k.schedule_start(10.0, 9.5) == 10.0  # 500 ms ahead is a burst, not a shorter delay
    assert k.schedule_start(10.0, 9.88) == 9.88  # exactly the backlog: still adopted
    k.filled(160)  # a stall: silence stood in for audio
    assert k.schedule_start(10.0, 9.99) == 10.0
