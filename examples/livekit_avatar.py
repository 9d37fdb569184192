"""The local avatar in a LiveKit Agents voice agent, published in-process (as the bitHuman
plugin does).

    pip install 'realtime-sda[livekit]'
    python examples/livekit_avatar.py offline -o livekit_avatar.mp4   # no server needed
    python examples/livekit_avatar.py dev                               # a real agent (see below)

``offline`` drives the avatar's ``VideoGenerator`` with the framework's own frame types
(espeak-ng speech as 20 ms ``rtc.AudioFrame``s, then ``AudioSegmentEnd``) and writes what it
yields (``rtc.VideoFrame``, ``rtc.AudioFrame``) to an MP4: what ``AvatarRunner`` would
publish. ``dev``/``start`` run a LiveKit agent worker (LIVEKIT_URL, LIVEKIT_API_KEY and
LIVEKIT_API_SECRET set, and the STT/LLM/TTS plugins of your choice installed, e.g.
``livekit-plugins-openai``): the agent's speech goes to the avatar, which joins the room's
media as the agent's camera and microphone. No LiveKit server was available to this
project, so that path is not tested here (the generator is, against the interface).
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import numpy as np


async def open_avatar(size: int = 256) -> tuple[Any, Any]:
    """(worker, session): the bundled avatar's whole photo, a queued session."""
    from realtime_sda import load_model
    from realtime_sda.media.image import default_avatar_path
    from realtime_sda.streaming import InferenceWorker

    worker = InferenceWorker(load_model("default"))
    await worker.start()
    renderer, still = await worker.prepare_photo(default_avatar_path(), size=size)
    return worker, await worker.open_session(still, max_backlog_ms=None, renderer=renderer)


async def offline(output: Path) -> None:
    from livekit import rtc

    from realtime_sda import save_video
    from realtime_sda.integrations.livekit import AudioSegmentEnd, SDAVideoGenerator
    from realtime_sda.media.audio import resample, to_int16
    from realtime_sda.streaming.say import EspeakTTS

    worker, session = await open_avatar()
    gen = SDAVideoGenerator(session, sample_rate=24000)
    pcm, rate = EspeakTTS()("Hello from LiveKit Agents. The avatar runs on this machine.")
    speech = to_int16(resample(pcm, rate, 24000))[:, 0]
    video: list[np.ndarray] = []
    audio: list[np.ndarray] = []
    silence = np.zeros(960, np.int16)

    async def consume() -> None:
        async for item in gen:
            if isinstance(item, rtc.VideoFrame):
                video.append(np.frombuffer(item.data, np.uint8).reshape(item.height, item.width, 4)[:, :, :3].copy())
                if len(audio) < len(video):  # idle: no sound comes with the picture
                    audio.append(silence)
            elif isinstance(item, rtc.AudioFrame):
                audio[-1] = np.frombuffer(item.data, np.int16).copy()
            elif isinstance(item, AudioSegmentEnd):
                print(f"segment ended after {len(video)} frames")

    reader = asyncio.create_task(consume(), name="livekit-example-reader")
    await asyncio.sleep(1.0)
    for k in range(0, len(speech), 480):  # 20 ms frames, as a TTS plugin hands them over
        chunk = speech[k : k + 480]
        await gen.push_audio(rtc.AudioFrame(chunk.tobytes(), 24000, 1, len(chunk)))
    await gen.push_audio(AudioSegmentEnd())
    await asyncio.sleep(len(speech) / 24000 + 1.5)
    reader.cancel()
    await asyncio.gather(reader, return_exceptions=True)
    await worker.stop()
    out = save_video(np.stack(video).transpose(0, 3, 1, 2), np.concatenate(audio)[:, None], output, audio_rate=24000)
    print(f"{len(video)} frames written to {out}")


def agent_worker() -> None:
    """A LiveKit agent whose speech drives the avatar (needs a server and your plugins)."""
    from livekit.agents import Agent, AgentSession, JobContext, WorkerOptions, cli

    from realtime_sda.integrations.livekit import start_in_process

    async def entrypoint(ctx: JobContext) -> None:
        await ctx.connect()
        worker, session = await open_avatar()
        # choose your own plugins here, e.g. stt=openai.STT(), llm=openai.LLM(), tts=openai.TTS()
        agent_session: AgentSession = AgentSession()
        runner = await start_in_process(agent_session, ctx.room, session, sample_rate=24000)
        await agent_session.start(agent=Agent(instructions="You are a friendly talking face."), room=ctx.room)
        ctx.add_shutdown_callback(runner.aclose)
        ctx.add_shutdown_callback(worker.stop)

    cli.run_app(WorkerOptions(entrypoint_fnc=entrypoint))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "offline":
        out = Path(sys.argv[sys.argv.index("-o") + 1]) if "-o" in sys.argv else Path("livekit_avatar.mp4")
        asyncio.run(offline(out))
    else:
        agent_worker()
