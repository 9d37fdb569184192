"""The avatar tracks on their own: master-clock timestamps, gap-free audio, late frames
dropped (never delayed), and the playout clock adapting both ways."""

from __future__ import annotations

import asyncio
import contextlib
import time
from fractions import Fraction

import numpy as np
import pytest

pytest.importorskip("aiortc")

from realtime_sda.server.tracks import PlayoutClock, ViewerFeed, make_tracks  # noqa: E402
from realtime_sda.streaming import VideoFrame  # noqa: E402

RATE, STRIDE = 16000, 640  # tiny model: 25 fps


def frame(i: int, tone_hz: float = 440.0, pad: int = RATE // 100) -> VideoFrame:
    """Frame ``i`` of a tone; with ``pad`` samples of the neighbours' audio, as a session makes."""
    t = (i * STRIDE + np.arange(-pad, STRIDE + pad)) / RATE
    tone = (0.5 * np.sin(2 * np.pi * tone_hz * t)).astype(np.float32)
    return VideoFrame(index=i, pts=i * STRIDE, time_base=Fraction(1, RATE),
                      image=np.full((8, 6, 3), i % 256, np.uint8),
                      audio=tone[pad : pad + STRIDE], audio_rate=RATE, latency_s=0.01,
                      audio_padded=tone if pad else None, audio_pad=pad)


def test_clock_slips_and_catches_up():
    now = 500.0  # an injected clock: no timer jitter in the figures
    clock = PlayoutClock(margin_s=0.04, period_s=0.04, window=5, now=lambda: now)
    clock.anchor(10.0)
    due0 = clock.due(10.0)
    assert due0 == pytest.approx(now + 0.04)
    clock.slip(0.5)
    assert abs(clock.due(10.0) - due0 - 0.54) < 1e-9 and clock.delay_s > 0.5
    for _ in range(5):  # frames keep arriving 0.3 s earlier than their slots
        clock.observe(0.3)
    assert clock.reclaims == 1 and abs(clock.due(10.0) - due0 - 0.28) < 1e-9
    clock.advance(10.0)  # never below the base: output times stay positive
    assert clock.shift == 0.0 and clock.output_time(0.0) == 0.0


def test_sink_is_bounded_and_ignores_frames_before_start():
    feed = ViewerFeed(video_queue=3, audio_queue=5)
    feed.put(frame(0))
    assert not feed.video  # nobody asked yet: not kept
    feed.open()
    for i in range(10):
        feed.put(frame(i))
    assert [f.index for f, _ in feed.video] == [7, 8, 9] and feed.dropped_full == 7
    assert [f.index for f in feed.audio] == [5, 6, 7, 8, 9]


@pytest.mark.parametrize("pad", [RATE // 100, 0], ids=["frames-alone", "streaming-resampler"])
def test_tracks_timestamps_gap_free_audio_and_late_drop(pad):
    async def main():
        # a margin of a whole period: this machine's timer jitter never moves playback here
        feed = ViewerFeed(period_s=STRIDE / RATE, margin_s=STRIDE / RATE)
        video, audio = make_tracks(feed, 25.0)
        got_v, got_a = [], []

        async def produce():
            start = time.monotonic()
            for i in range(40):
                if 15 <= i < 20:
                    continue  # frames 15-19 never arrive: their audio must become silence
                await asyncio.sleep(max(0.0, start + i * 0.04 - time.monotonic()))
                feed.put(frame(i, pad=pad))
                if i == 30:  # a stale frame (index 29 again) shows up late behind 30
                    feed.put(frame(29, pad=pad))
            await asyncio.sleep(0.3)
            feed.close()

        async def pull_video():
            from aiortc.mediastreams import MediaStreamError

            try:
                while True:
                    f = await video.recv()
                    got_v.append((f.pts, int(f.to_ndarray(format="rgb24")[0, 0, 0])))
            except MediaStreamError:
                pass

        async def pull_audio():
            from aiortc.mediastreams import MediaStreamError

            try:
                while True:
                    f = await audio.recv()
                    got_a.append((f.pts, f.to_ndarray().reshape(-1).astype(np.float32) / 32767))
            except MediaStreamError:
                pass

        feed.open()  # as on the first recv
        await asyncio.gather(produce(), pull_video(), pull_audio())
        return got_v, got_a, video

    got_v, got_a, video = asyncio.run(main())
    pts = np.array([p for p, _ in got_v])
    idx = [i for _, i in got_v]
    # 90 kHz timestamps from the master clock: 3600 per frame index, never backwards
    assert np.all(np.diff(pts) > 0)
    assert np.all((pts - pts[0]) == (np.array(idx) - idx[0]) * 3600), list(zip(pts - pts[0], idx))
    assert not set(range(15, 20)) & set(idx) and idx.count(29) == 1
    # audio: contiguous 20 ms frames, the tone where frames came, silence for 15-19
    apts = np.array([p for p, _ in got_a])
    assert np.all(np.diff(apts) == 960)
    pcm = np.concatenate([a for _, a in got_a])
    start = round((pts[0] / 90000) * 48000) - apts[0]  # frame idx[0]'s first sample in pcm
    per = 1920  # 48 kHz samples per frame
    gap = pcm[start + (15 - idx[0]) * per + 200 : start + (20 - idx[0]) * per - 200]
    tone = pcm[start + (5 - idx[0]) * per : start + (10 - idx[0]) * per]
    assert np.abs(gap).max() < 0.01
    spectrum = np.abs(np.fft.rfft(tone))
    assert abs(np.argmax(spectrum) * 48000 / len(tone) - 440) < 15 and 0.3 < np.abs(tone).max() < 0.6


def test_playout_moves_later_when_frames_come_too_close_to_their_slot():
    """The first frame fixes the mapping; when every later frame arrives 30 ms later than the
    first one's pattern (past the 20 ms margin), playback moves later once, so their audio is
    in time for its packets instead of being replaced by silence."""

    async def main():
        feed = ViewerFeed(period_s=STRIDE / RATE, margin_s=0.02)
        video, audio = make_tracks(feed, 25.0)
        feed.open()

        async def produce():
            start = time.monotonic()
            for i in range(30):
                late = 0.0 if i == 0 else 0.03
                await asyncio.sleep(max(0.0, start + i * 0.04 + late - time.monotonic()))
                feed.put(frame(i))
            await asyncio.sleep(0.2)
            feed.close()

        async def pull(track, got):
            from aiortc.mediastreams import MediaStreamError

            with contextlib.suppress(MediaStreamError):
                while True:
                    f = await track.recv()
                    got.append(bool(np.any(f.to_ndarray())))

        loud: list[bool] = []
        await asyncio.gather(produce(), pull(video, []), pull(audio, loud))
        return feed.clock, video, loud

    clock, video, loud = asyncio.run(main())
    assert clock.slips >= 1 and clock.delay_s >= 0.02 + 0.03 - 0.005
    assert video.sent >= 28
    # the audio of the frames is there for its packets: once the tone has started, at most
    # the packets around the one move are silent (later ones are the silence after the end)
    first, last = loud.index(True), len(loud) - 1 - loud[::-1].index(True)
    assert last - first >= 50 and loud[first : last + 1].count(False) <= 2, "".join(".X"[x] for x in loud)


def test_feed_takes_the_playout_default_and_range():
    from realtime_sda.server.playout import DEFAULT_MARGIN_S

    assert ViewerFeed().clock.margin_s == DEFAULT_MARGIN_S
    for bad in (0.002, 2.0):
        with pytest.raises(ValueError, match="between 5 and 1000 ms"):
            ViewerFeed(margin_s=bad)
