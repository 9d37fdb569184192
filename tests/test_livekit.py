"""The avatar as a LiveKit Agents ``VideoGenerator``, driven with the framework's own frame
types (``livekit.rtc.AudioFrame`` in; ``rtc.VideoFrame``, ``rtc.AudioFrame`` and
``AudioSegmentEnd`` out) and fed into LiveKit's own ``AVSynchronizer`` with real audio and
video sources. No LiveKit server runs here: ``AvatarRunner`` itself (which publishes into a
room) is not exercised, only the interface it drives."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import numpy as np
import pytest

rtc = pytest.importorskip("livekit.rtc")
pytest.importorskip("livekit.agents.voice.avatar")

from realtime_sda.integrations.livekit import AudioSegmentEnd, SDAVideoGenerator, avatar_options  # noqa: E402
from realtime_sda.streaming import InferenceWorker  # noqa: E402
from testsupport.loopback_client import audio_responsive_model  # noqa: E402
from testsupport.media import speech_like  # noqa: E402
from testsupport.streaming import random_still  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")

RATE = 24000  # what agent TTS engines commonly produce


def _audio_frames(seconds: float, seed: int) -> list:
    """Speech as a TTS plugin hands it over: 20 ms ``rtc.AudioFrame``s at 24 kHz."""
    pcm = (speech_like(seconds, RATE, seed=seed) * 0.8 * 32767).astype(np.int16)
    step = RATE // 50
    return [rtc.AudioFrame(pcm[k : k + step].tobytes(), RATE, 1, len(pcm[k : k + step])) for k in range(0, len(pcm), step)]


async def _run(gen: SDAVideoGenerator, script) -> list:
    """Iterate the generator into a real AVSynchronizer while ``script`` pushes audio;
    returns every item it yielded, tagged with what had happened by then."""
    fmt = gen.format
    sync = rtc.AVSynchronizer(audio_source=rtc.AudioSource(fmt.sample_rate, fmt.channels, queue_size_ms=100),
                              video_source=rtc.VideoSource(fmt.width, fmt.height), video_fps=fmt.fps)
    out: list = []
    phase = {"now": "idle"}

    async def consume() -> None:
        async for item in gen:
            out.append((phase["now"], item))
            if not isinstance(item, AudioSegmentEnd):
                await sync.push(item)

    task = asyncio.create_task(consume(), name="test-livekit-consume")
    try:
        await script(phase)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await sync.aclose()
    return out


@pytest.mark.parametrize("fps,size", [(25, (96, 128)), (50, (48, 64))])
def test_speech_in_frames_out_at_the_requested_size_rate_and_sample_rate(fps, size) -> None:
    model = audio_responsive_model()
    width, height = size

    async def main():
        async with InferenceWorker(model) as worker:
            session = await worker.open_session(random_still(model), seed=0, max_backlog_ms=None)
            gen = SDAVideoGenerator(session, width=width, height=height, fps=fps, sample_rate=RATE, channels=2)

            async def script(phase) -> None:
                await asyncio.sleep(1.5)  # idle first (the model's start-up motion fades in ~1 s)
                phase["now"] = "speech"
                for frame in _audio_frames(1.2, seed=1):  # faster than real time, as agent TTS comes
                    await gen.push_audio(frame)
                await gen.push_audio(AudioSegmentEnd())
                await asyncio.sleep(2.0)

            return await _run(gen, script), avatar_options(gen)

    out, options = asyncio.run(main())
    assert (options.video_width, options.video_height, options.video_fps) == (width, height, fps)
    assert (options.audio_sample_rate, options.audio_channels) == (RATE, 2)
    items = [item for _, item in out]
    videos = [i for i in items if isinstance(i, rtc.VideoFrame)]
    audios = [i for i in items if isinstance(i, rtc.AudioFrame)]
    ends = [k for k, i in enumerate(items) if isinstance(i, AudioSegmentEnd)]
    assert all((v.width, v.height, v.type) == (width, height, rtc.VideoBufferType.RGBA) for v in videos)
    assert all((a.sample_rate, a.num_channels) == (RATE, 2) for a in audios)
    assert sum(a.duration for a in audios) == pytest.approx(1.2, abs=0.041)  # the segment's sound, whole
    assert len(ends) == 1 and ends[0] > max(k for k, i in enumerate(items) if isinstance(i, rtc.AudioFrame))
    # the frame rate: fps * 40 ms pictures for each 40 ms of sound while speaking
    first = next(k for k, i in enumerate(items) if isinstance(i, rtc.AudioFrame))
    speaking_videos = sum(isinstance(i, rtc.VideoFrame) for i in items[first : ends[0]])
    assert speaking_videos == pytest.approx(len(audios) * fps / 25, abs=fps / 25)
    # lips move with the speech: pictures change far more while sound comes than at idle
    pics = [(phase, np.frombuffer(i.data, np.uint8).astype(np.int16)) for phase, i in out if isinstance(i, rtc.VideoFrame)]
    diffs = [(p, float(np.abs(a - b).mean())) for (p, a), (_, b) in zip(pics[1:], pics[:-1])]
    idle = [d for p, d in diffs[len(diffs) // 20 :] if p == "idle"][-5:]
    talk = [d for i, (p, d) in enumerate(diffs) if p == "speech" and d > 0]
    assert np.mean(talk) > 4 * max(np.mean(idle), 0.05), (idle, talk[:10])


def test_clear_buffer_stops_the_sound_and_reports_no_segment_end() -> None:
    model = audio_responsive_model()

    async def main():
        async with InferenceWorker(model) as worker:
            session = await worker.open_session(random_still(model), seed=0, max_backlog_ms=None)
            gen = SDAVideoGenerator(session, sample_rate=RATE)

            async def script(phase) -> None:
                await asyncio.sleep(0.3)
                phase["now"] = "speech"
                for frame in _audio_frames(3.0, seed=2):
                    await gen.push_audio(frame)
                await asyncio.sleep(0.8)  # mid-sentence
                gen.clear_buffer()
                phase["now"] = "cleared"
                await asyncio.sleep(1.5)
                phase["now"] = "again"
                for frame in _audio_frames(0.4, seed=3):  # the next reply plays normally
                    await gen.push_audio(frame)
                await gen.push_audio(AudioSegmentEnd())
                await asyncio.sleep(1.2)

            return await _run(gen, script), session.interrupts

    out, interrupts = asyncio.run(main())
    assert interrupts == 1
    before = [i for p, i in out if p == "speech" and isinstance(i, rtc.AudioFrame)]
    cleared = [i for p, i in out if p == "cleared"]
    assert 0.4 < sum(a.duration for a in before) < 1.2  # it spoke, then was cut mid-sentence
    assert not any(isinstance(i, (rtc.AudioFrame, AudioSegmentEnd)) for i in cleared)  # no sound, no end after the clear
    assert sum(isinstance(i, rtc.VideoFrame) for i in cleared) > 20  # the idle face keeps coming
    again = [i for p, i in out if p == "again"]
    assert sum(a.duration for a in again if isinstance(a, rtc.AudioFrame)) == pytest.approx(0.4, abs=0.041)
    assert sum(isinstance(i, AudioSegmentEnd) for i in again) == 1


def test_push_audio_refuses_other_frames_with_the_types_it_takes() -> None:
    model = audio_responsive_model()

    async def main():
        async with InferenceWorker(model) as worker:
            session = await worker.open_session(random_still(model), seed=0, max_backlog_ms=None)
            gen = SDAVideoGenerator(session)
            with pytest.raises(TypeError, match="rtc.AudioFrame or AudioSegmentEnd"):
                await gen.push_audio(np.zeros(480, np.int16))
            with pytest.raises(ValueError, match="1 or 2 channels"):
                SDAVideoGenerator(session, channels=6)

    asyncio.run(main())


def test_importing_the_package_imports_no_framework() -> None:
    code = ("import sys, realtime_sda, realtime_sda.integrations, realtime_sda.integrations.common, realtime_sda.streaming; "
            "bad = [m for m in ('livekit', 'pipecat') if m in sys.modules]; assert not bad, bad")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]


def test_the_agents_queue_audio_output_drives_the_generator_as_the_runner_does() -> None:
    """In-process wiring (``start_in_process``) without a room: the agent's speech goes into
    LiveKit's own ``QueueAudioOutput`` (``capture_frame``, ``flush`` at a segment's end,
    ``clear_buffer`` on interruption); AvatarRunner's loop (read the receiver, push into the
    generator, clear on its ``clear_buffer`` event) feeds the generator."""
    from livekit.agents.voice.avatar import QueueAudioOutput

    model = audio_responsive_model()

    async def main():
        async with InferenceWorker(model) as worker:
            session = await worker.open_session(random_still(model), seed=0, max_backlog_ms=None)
            gen = SDAVideoGenerator(session, sample_rate=RATE)
            output = QueueAudioOutput(sample_rate=RATE)
            output.on("clear_buffer", gen.clear_buffer)

            async def runner_reads() -> None:  # what AvatarRunner._read_audio does
                async for frame in output:
                    await gen.push_audio(frame)

            reading = asyncio.create_task(runner_reads(), name="test-livekit-runner-read")

            async def script(phase) -> None:
                await asyncio.sleep(0.3)
                phase["now"] = "reply"
                for frame in _audio_frames(0.8, seed=4):
                    await output.capture_frame(frame)
                output.flush()  # the reply's end: AudioSegmentEnd
                await asyncio.sleep(1.5)
                phase["now"] = "long"
                for frame in _audio_frames(3.0, seed=5):
                    await output.capture_frame(frame)
                await asyncio.sleep(0.8)
                output.clear_buffer()  # the user barged in
                phase["now"] = "cleared"
                await asyncio.sleep(1.0)

            try:
                return await _run(gen, script), gen.cleared
            finally:
                reading.cancel()
                await asyncio.gather(reading, return_exceptions=True)

    out, cleared = asyncio.run(main())
    assert cleared == 1
    reply = [i for p, i in out if p == "reply"]
    assert sum(a.duration for a in reply if isinstance(a, rtc.AudioFrame)) == pytest.approx(0.8, abs=0.041)
    assert sum(isinstance(i, AudioSegmentEnd) for i in reply) == 1
    long = [i for p, i in out if p == "long"]
    assert sum(a.duration for a in long if isinstance(a, rtc.AudioFrame)) > 0.4
    after = [i for p, i in out if p == "cleared"]
    assert not any(isinstance(i, (rtc.AudioFrame, AudioSegmentEnd)) for i in after) and len(after) > 15


@pytest.mark.parametrize("framework,module", [("livekit", "livekit"), ("pipecat", "pipecat")])
def test_a_missing_framework_names_the_extra_to_install(framework, module) -> None:
    code = (f"import sys; sys.modules[{module!r}] = None\n"  # as if not installed
            "try:\n"
            f"    import realtime_sda.integrations.{framework}\n"
            "except ImportError as exc:\n"
            "    print(exc)\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert f"pip install 'realtime-sda[{framework}]'" in res.stdout, res.stdout + res.stderr[-2000:]
