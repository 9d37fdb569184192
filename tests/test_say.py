"""Text in (``session.say``) and interruption (``session.interrupt``) on a real worker: the
sentences are synthesised one at a time and the first plays before the last is made; an
interrupt drops the queued speech and the very next frame is silent; the idle face keeps its
frame rate; espeak-ng speech moves the lips. Manual clock (no sleeps) except the espeak test."""

from __future__ import annotations

import asyncio
import shutil
import threading

import numpy as np
import pytest

from realtime_sda.streaming.say import EspeakTTS, SayError, split_sentences
from testsupport.loopback_client import audio_responsive_model
from testsupport.media import speech_like
from testsupport.streaming import manual_worker, random_still

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def model():
    return audio_responsive_model()


def test_split_sentences_cuts_at_ends_and_long_clauses() -> None:
    assert split_sentences("Hello there. How are you?  Fine!\nNext line") == [
        "Hello there.", "How are you?", "Fine!", "Next line"]
    long = "word " * 120
    pieces = split_sentences(long, max_chars=100)
    assert all(len(p) <= 100 for p in pieces) and " ".join(pieces) == long.strip()
    assert split_sentences(" \n ") == []


class ToneTTS:
    """A text-to-speech engine as the API takes one (a callable returning PCM): sentence k
    becomes ``k+1`` tenths of a second of speech-like sound at 16 kHz. ``hold`` makes the
    call for the last sentence wait until the test releases it."""

    def __init__(self, hold_last: int | None = None) -> None:
        self.calls: list[str] = []
        self.release = threading.Event()
        self.hold_last = hold_last
        self.held_timed_out = False

    def __call__(self, text: str, voice: str | None) -> tuple[np.ndarray, int]:
        k = len(self.calls)
        self.calls.append(text)
        if self.hold_last is not None and k == self.hold_last:
            self.held_timed_out = not self.release.wait(10.0)
        return tone_pcm(k), 16000


def tone_pcm(k: int) -> np.ndarray:
    """Sentence k's sound: speech-like, with no exact zero inside (so its run is whole)."""
    pcm = (speech_like(0.4 + 0.1 * k, 16000, seed=k) * 0.8).astype(np.float32)
    pcm[pcm == 0] = 1e-3
    return pcm


def _audio_runs(audio: np.ndarray) -> list[int]:
    """Lengths of the runs of sound (non-zero samples) in ``audio``."""
    nz = np.abs(audio) > 0
    edges = np.flatnonzero(np.diff(np.r_[0, nz.astype(np.int8), 0]))
    return [int(b - a) for a, b in zip(edges[::2], edges[1::2])]


async def _tick(clock, worker, period: float, n: int = 1) -> None:
    for _ in range(n):
        clock.advance(period)
        await worker.tick()
        await asyncio.sleep(0.002)  # the speaker's thread and the frame queue get a turn


def test_sentences_play_in_order_and_the_first_plays_before_the_last_is_made(model) -> None:
    cfg = model.config
    period = cfg.stride / cfg.audio_rate
    tts = ToneTTS(hold_last=2)

    async def main():
        async with manual_worker(model) as (clock, worker):
            s = await worker.open_session(random_still(model), seed=0, max_backlog_ms=None)
            s.speaker(tts)
            q = s.subscribe(maxsize=1000)
            utt = s.say("First one. Second one. Third one.")
            heard_before_last = False
            frames = []
            for _ in range(400):
                await _tick(clock, worker, period)
                while (f := q.get_nowait()) is not None:
                    frames.append(f)
                if not tts.release.is_set() and len(tts.calls) == 3 and any(np.abs(f.audio).max() > 0 for f in frames):
                    heard_before_last = True  # sentence 1 was shown while sentence 3 was still being made
                    tts.release.set()
                if utt._done.done() and s.next_index * cfg.stride > (utt.end_sample or 0) + cfg.audio_rate:
                    break
            return utt, frames, heard_before_last, s

    utt, frames, heard_before_last, s = asyncio.run(main())
    assert heard_before_last and not tts.held_timed_out
    assert tts.calls == ["First one.", "Second one.", "Third one."]
    assert utt.state == "queued" and utt.sentences_queued == 3
    audio = np.concatenate([f.audio for f in frames])
    # the three sentences whole, in order and back to back (each was queued before the one
    # before it ran out)
    want = np.concatenate([tone_pcm(k) for k in range(3)])
    assert _audio_runs(audio) == [len(want)]
    start = int(np.flatnonzero(audio)[0])
    np.testing.assert_allclose(audio[start : start + len(want)], want, atol=1e-6)
    assert [f.index for f in frames] == list(range(frames[0].index, frames[0].index + len(frames)))  # no gap


def test_interrupt_drops_queued_speech_the_next_frame_is_silent_and_speech_resumes_whole(model) -> None:
    cfg = model.config
    period = cfg.stride / cfg.audio_rate

    async def main():
        async with manual_worker(model) as (clock, worker):
            s = await worker.open_session(random_still(model), seed=0, max_backlog_ms=None)
            tts = ToneTTS()
            s.speaker(tts)
            s.pause_audio()
            await _tick(clock, worker, period, 20)  # idle first: the model settles at rest
            q = s.subscribe(maxsize=1000)
            first = s.say("A long first sentence that goes on. And a second. And a third.")
            waiting = s.say("Never said.")
            frames: list = []
            while sum(np.abs(f.audio).max() > 0 for f in frames) < 5:
                await _tick(clock, worker, period)
                while (f := q.get_nowait()) is not None:
                    frames.append(f)
            cut = len(frames)
            dropped = s.interrupt()
            await _tick(clock, worker, period, 20)
            while (f := q.get_nowait()) is not None:
                frames.append(f)
            after_cut = len(frames)
            again = s.say("Back again.")
            for _ in range(60):
                await _tick(clock, worker, period)
                while (f := q.get_nowait()) is not None:
                    frames.append(f)
            return first, waiting, again, frames, cut, after_cut, dropped, tts

    first, waiting, again, frames, cut, after_cut, dropped, tts = asyncio.run(main())
    assert first.state == "interrupted" and waiting.state == "interrupted" and again.state == "queued"
    assert dropped > 0
    silent = [float(np.abs(f.audio).max()) for f in frames[cut:after_cut]]
    assert len(silent) == 20 and max(silent) == 0.0, silent  # from the very next frame: silence
    assert [f.index for f in frames] == list(range(frames[0].index, frames[0].index + len(frames)))  # never a stall
    # idle face after the interrupt: the model's memory is set back to its rest (it had
    # idled before), so the mouth is at rest from the first frame after the interrupt
    idle = np.stack([f.image.astype(np.int16) for f in frames[cut:after_cut]])
    speech = np.stack([f.image.astype(np.int16) for f in frames[:cut]])
    idle_motion = np.abs(np.diff(idle, axis=0)).reshape(len(idle) - 1, -1).max(axis=1)
    speech_motion = np.abs(np.diff(speech, axis=0)).reshape(len(speech) - 1, -1).max(axis=1)
    assert idle_motion.max() <= 2 < 10 < np.median(speech_motion), (idle_motion, speech_motion)
    # the next text plays whole, none of it lost in the window overlap
    pcm = tone_pcm(tts.calls.index("Back again."))
    audio = np.concatenate([f.audio for f in frames[after_cut:]])
    assert _audio_runs(audio) == [len(pcm)]  # only the new text: nothing dropped comes back
    start = int(np.flatnonzero(np.abs(audio) > 0)[0])
    np.testing.assert_allclose(audio[start : start + len(pcm)], pcm.astype(np.float32), atol=1e-6)


def test_the_idle_face_keeps_its_frame_rate_after_speech(model) -> None:
    cfg = model.config
    period = cfg.stride / cfg.audio_rate

    async def main():
        async with manual_worker(model) as (clock, worker):
            s = await worker.open_session(random_still(model), seed=0, max_backlog_ms=None)
            s.speaker(ToneTTS())
            utt = s.say("Short.")
            made = []
            for _ in range(60):
                await _tick(clock, worker, period)
                made.append(s.frames_emitted)
            return utt, made, s.stats.snapshot()

    utt, made, snap = asyncio.run(main())
    assert utt.state == "queued"
    # one frame every period from start to end: silence stood in at once, never a frozen frame
    assert np.all(np.diff(made[5:]) == 1), made
    assert snap.silence_frames > 0


def test_bad_texts_and_voices_are_refused_with_the_fix(model) -> None:
    async def main():
        async with manual_worker(model) as (_clock, worker):
            s = await worker.open_session(random_still(model), seed=0, max_backlog_ms=None)
            sp = s.speaker(ToneTTS(hold_last=0))
            errors = []
            for text, voice in [("", None), ("x" * 6000, None), ("hi", "-w /tmp/x"), ("hi", "en us")]:
                with pytest.raises(SayError) as info:
                    s.say(text, voice=voice)
                errors.append(str(info.value))
            sp.max_pending = 2
            s.say("one")
            await asyncio.sleep(0.05)  # the first is taken (held in the engine)
            s.say("two")
            s.say("three")
            with pytest.raises(SayError, match="wait"):
                s.say("four")
            sp.tts.release.set()  # type: ignore[attr-defined]
            live = await worker.open_session(random_still(model), seed=0)
            live.push_audio(np.zeros(800, np.float32), 16000)
            with pytest.raises(SayError, match="max_backlog_ms=None"):
                live.say("hello")
            return errors

    errors = asyncio.run(main())
    assert "empty" in errors[0] and "at most" in errors[1] and "voice" in errors[2] and "voice" in errors[3]


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
def test_espeak_speech_moves_the_lips_on_a_real_clock(model) -> None:
    from realtime_sda.streaming import InferenceWorker

    pcm, rate = EspeakTTS()("-Hello there.", None)  # a leading dash is not an option
    assert rate > 0 and pcm.size > rate // 4 and np.abs(pcm).max() > 0.05

    async def main():
        async with InferenceWorker(model) as worker:
            s = await worker.open_session(random_still(model), seed=0, max_backlog_ms=None)
            s.pause_audio()
            frames = []

            async def watch() -> None:
                async for f in s.frames(maxsize=1000):
                    frames.append(f)

            viewer = asyncio.create_task(watch())
            await asyncio.sleep(1.0)  # idle first (the model's start-up motion fades in ~0.5 s)
            utt = s.say("Hello there. How are you today?", voice="en-us")
            assert await asyncio.wait_for(utt.spoken(), 30)
            await asyncio.sleep(0.3)
            viewer.cancel()
            return frames

    frames = asyncio.run(main())
    loud = [f for f in frames if np.abs(f.audio).max() > 0.05]
    assert len(loud) > 25  # more than a second of speech reached the frames
    imgs = np.stack([f.image.astype(np.int16) for f in frames])
    motion = np.abs(np.diff(imgs, axis=0)).reshape(len(frames) - 1, -1).max(axis=1)
    speaking = np.array([np.abs(f.audio).max() > 0.05 for f in frames[1:]])
    first = int(np.argmax(speaking))
    assert first >= 15  # idle frames came first
    # lips move with the speech (the window hears it 2 frames ahead), far more than at idle
    assert motion[speaking].mean() > 4 * max(motion[first - 8 : first - 3].mean(), 1.0), motion[: first + 3]
