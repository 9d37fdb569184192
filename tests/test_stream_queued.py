"""Program-pushed audio (``max_backlog_ms=None``: text-to-speech, files, ``/push``) is queued,
bounded and played at real time; driven by an injected manual clock (no sleeps)."""

from __future__ import annotations

import asyncio
import contextlib

import numpy as np
import pytest

from realtime_sda.streaming import EndOfStream
from realtime_sda.streaming.session import AudioQueueFullError
from testsupport.media import speech_like
from testsupport.streaming import manual_worker, random_still

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _drain(q) -> list:
    out = []
    with contextlib.suppress(EndOfStream):
        while (f := q.get_nowait()) is not None:
            out.append(f)
    return out


def test_a_whole_clip_pushed_at_once_plays_at_real_time_with_every_frame_of_speech(tiny_model) -> None:
    cfg = tiny_model.config
    rate, stride, period = cfg.audio_rate, cfg.stride, cfg.stride / cfg.audio_rate
    clip = speech_like(6.4, rate, seed=2)
    expected = cfg.num_frames(len(clip))

    async def main():
        async with manual_worker(tiny_model) as (clock, worker):
            s = await worker.open_session(random_still(tiny_model), seed=0, max_backlog_ms=None)
            shown: list = []

            async def watch() -> None:  # the README's loop: frames() ends after the last frame
                async for frame in s.frames(maxsize=4):
                    shown.append((clock.now(), frame))

            viewer = asyncio.create_task(watch())
            await asyncio.sleep(0)
            clock.advance(0.5)  # the face idles a while before the speech comes
            start = clock.now()
            s.push_audio(clip, rate)  # the whole clip at once
            s.end_audio()
            counts = []  # frames made by each tick, at 20 ms steps
            for _ in range(2 * expected + 100):
                await worker.tick()
                counts.append((clock.now() - start, s.frames_emitted))
                await asyncio.sleep(0)
                if viewer.done():
                    break
                clock.advance(0.02)
            await asyncio.wait_for(viewer, 5)
            return shown, counts, s.stats.snapshot(), start

    shown, counts, snap, start = asyncio.run(main())
    frames = [f for _, f in shown]
    # every frame of the clip, in order, none dropped and no silence in the middle
    assert len(frames) == expected == 160
    assert [f.index for f in frames] == list(range(expected))
    audio = np.concatenate([f.audio for f in frames])
    assert np.allclose(audio[: len(clip)], clip, atol=1e-4)
    voiced = [k for k, f in enumerate(frames) if np.abs(f.audio).max() > 1e-3]
    assert voiced == [k for k in range(expected) if np.abs(clip[k * stride : (k + 1) * stride]).max() > 1e-3]
    assert snap.skipped_frames == 0 and snap.silence_frames == 0 and snap.overflow_frames == 0
    # at real time: the first frame at once (its look-ahead was pushed with it), then one per
    # period, never ahead of that
    for t, n in counts:
        assert n == min(int(t / period + 1e-6) + 1, expected), (t, n)
    assert abs((shown[-1][0] - start) - (expected - 1) * period) < 0.021


def test_the_queue_is_bounded_with_a_clear_error_and_nothing_of_a_refused_push_queued(tiny_model) -> None:
    cfg = tiny_model.config
    rate, stride = cfg.audio_rate, cfg.stride
    clip = speech_like(4.0, rate, seed=3)
    first, refused, later = clip[: int(1.5 * rate)], clip[int(1.5 * rate) : int(2.5 * rate)], clip[int(2.5 * rate) :]

    async def main():
        async with manual_worker(tiny_model) as (clock, worker):
            s = await worker.open_session(random_still(tiny_model), seed=0, max_backlog_ms=None, max_queued_s=2.0)
            q = s.subscribe(10_000)
            with pytest.raises(AudioQueueFullError, match="max_queued_s"):
                s.push_audio(clip[: int(2.5 * rate)], rate)  # more than the bound at once
            s.push_audio(first, rate)
            with pytest.raises(AudioQueueFullError, match=r"1\.\d+ s of audio already queued"):
                s.push_audio(refused, rate)
            for _ in range(50):  # 1 s shown: room again
                await worker.tick()
                clock.advance(0.02)
            s.push_audio(later, rate)
            s.end_audio()
            for _ in range(200):
                await worker.tick()
                clock.advance(0.02)
            frames = _drain(q)
            return frames, s.stats.snapshot(), s.finished

    frames, snap, finished = asyncio.run(main())
    audio = np.concatenate([f.audio for f in frames])
    pushed = np.concatenate([first, later])
    assert finished and snap.overflow_frames == 0 and snap.skipped_frames == 0
    # what was queued plays in order, and nothing of the refused push appears
    assert np.allclose(audio[: len(pushed)], pushed, atol=1e-4)
    assert len(frames) == tiny_model.config.num_frames(len(pushed))
    assert all(f.index == k for k, f in enumerate(frames)) and frames[0].audio.shape == (stride,)


def test_slow_steps_never_skip_queued_audio_and_leave_no_burst(tiny_model) -> None:
    """Steps every 200 ms (5 periods) for a while: queued audio is not skipped (the schedule
    moves later), and once steps are fast again frames come one per period, not in a burst."""
    cfg = tiny_model.config
    rate, period = cfg.audio_rate, cfg.stride / cfg.audio_rate
    clip = speech_like(4.0, rate, seed=4)

    async def main():
        async with manual_worker(tiny_model) as (clock, worker):
            s = await worker.open_session(random_still(tiny_model), seed=0, max_backlog_ms=None)
            q = s.subscribe(10_000)
            s.push_audio(clip, rate)
            s.end_audio()
            for _ in range(10):  # 2 s of slow steps: one frame each
                clock.advance(0.2)
                await worker.tick()
            slow = s.frames_emitted
            log = []
            for _ in range(200):
                clock.advance(0.02)
                await worker.tick()
                log.append(s.frames_emitted)
            frames = _drain(q)
            return slow, np.diff([slow, *log]), frames, s.stats.snapshot()

    slow, steps, frames, snap = asyncio.run(main())
    assert slow <= 11
    # no burst: one frame every other 20 ms tick (a period is 40 ms), not one a tick to catch up
    assert steps.sum() <= 4.0 / period + 2
    # (a lag within catch-up + grace, at most 0.18 s, is made up in the first few ticks)
    assert not any(a and b for a, b in zip(steps[10:], steps[11:]))
    assert len(frames) == cfg.num_frames(len(clip)) and snap.skipped_frames == 0
    assert [f.index for f in frames] == list(range(len(frames)))


def test_live_sessions_keep_the_drop_late_rule(tiny_model) -> None:
    """The default (a live source's ``max_backlog_ms``): a clip pushed at once is mostly
    dropped as backlog, not queued (the wall-clock rule of microphones and browsers)."""
    cfg = tiny_model.config
    clip = speech_like(3.0, cfg.audio_rate, seed=5)

    async def main():
        async with manual_worker(tiny_model) as (clock, worker):
            s = await worker.open_session(random_still(tiny_model), seed=0)
            assert s.options.live and s.queue_limit is None
            s.push_audio(clip, cfg.audio_rate)  # never refused: live audio follows the wall clock
            for _ in range(20):
                clock.advance(0.02)
                await worker.tick()
            return s.stats.snapshot()

    assert asyncio.run(main()).skipped_frames > 50
