"""The avatar as a LiveKit Agents video generator (``pip install 'realtime-sda[livekit]'``).

:class:`SDAVideoGenerator` implements ``livekit.agents.voice.avatar.VideoGenerator``: the
agent's TTS audio goes in through :meth:`~SDAVideoGenerator.push_audio` (``rtc.AudioFrame``
or ``AudioSegmentEnd``) and out come ``rtc.VideoFrame`` pictures (RGBA, the options' size
and frame rate), each followed by the ``rtc.AudioFrame`` of its own 40 ms of speech (the
options' rate and channels) and, after a segment's last frame, ``AudioSegmentEnd``.
``AvatarRunner`` pushes them through its ``AVSynchronizer`` into a room, in-process.
Between segments the face idles (blinks, closed mouth) and only pictures come out;
:meth:`~SDAVideoGenerator.clear_buffer` (the runner's interruption) drops the queued speech:
no further sound of it, the mouth closed within the model's look-ahead.

Runs on the event loop of the agent; the session (``InferenceWorker.open_session(still,
max_backlog_ms=None)``) does the real-time pacing. :func:`avatar_options` gives the
``AvatarOptions`` to hand the runner.
"""

from __future__ import annotations

from typing import Any, AsyncIterator

import numpy as np

from ..errors import require
from ..streaming.queues import EndOfStream
from .common import FrameFormat, Segments

_avatar = require("livekit.agents.voice.avatar", "livekit", "The LiveKit Agents avatar")
rtc = require("livekit.rtc", "livekit", "The LiveKit Agents avatar")

AudioSegmentEnd = _avatar.AudioSegmentEnd
VideoGenerator = _avatar.VideoGenerator

__all__ = ["SDAVideoGenerator", "avatar_options", "start_in_process"]


class SDAVideoGenerator(VideoGenerator):  # type: ignore[misc, valid-type]
    """One avatar session as a LiveKit ``VideoGenerator`` (see the module doc).

    ``session``: a queued session (opened with ``max_backlog_ms=None``); ``width``/``height``
    (default the session's frame size), ``fps`` (default the model's, 25), ``sample_rate``
    and ``channels`` of the audio frames; ``queue_frames``: frames that may wait between the
    session and the runner (drop-oldest, as every frame queue of the package)."""

    def __init__(self, session: Any, *, width: int | None = None, height: int | None = None,
                 fps: float | None = None, sample_rate: int = 24000, channels: int = 1,
                 queue_frames: int = 4) -> None:
        if getattr(session, "queue_limit", 0) is None:
            session.use_queued_audio()  # agent TTS comes faster than real time: queue it
        self.session = session
        self.format = FrameFormat(session, width=width, height=height, fps=fps,
                                  sample_rate=sample_rate, channels=channels)
        self.queue_frames = int(queue_frames)
        self.segments = Segments()
        self.cleared = 0
        self._cut_index = -1  # frames before it were made before clear_buffer: not sent
        session.pause_audio()  # idle at once until the first speech

    async def push_audio(self, frame: Any) -> None:
        """Queue the agent's audio (``rtc.AudioFrame``), or end its segment (``AudioSegmentEnd``)."""
        session = self.session
        if isinstance(frame, AudioSegmentEnd):
            session.pause_audio()  # also writes what the resampler holds of the segment
            self.segments.end(session.audio_end)
            return
        if not isinstance(frame, rtc.AudioFrame):
            raise TypeError(f"push_audio takes rtc.AudioFrame or AudioSegmentEnd, got {type(frame).__name__}")
        channels = int(frame.num_channels)
        pcm = np.frombuffer(frame.data, dtype=np.int16).reshape(-1, channels)
        if not pcm.size:
            return
        self.segments.begin(session.audio_end)
        from ..streaming.session import AudioQueueFullError

        while True:
            try:
                session.push_audio(pcm, int(frame.sample_rate))
                return
            except AudioQueueFullError:  # a long reply pushed far ahead: wait for room, lose nothing
                await session.wait_writable(max(session.options.max_queued_s - 5.0, 1.0))

    def clear_buffer(self) -> None:
        """Stop speaking now: queued speech dropped, no more sound of it, no segment end."""
        self.segments.clear()
        self.session.interrupt()
        self._cut_index = self.session.next_index  # the first frame made after it
        self.cleared += 1

    async def _frames(self) -> AsyncIterator[Any]:
        fmt, stride = self.format, self.session.config.stride
        q = self.session.subscribe(maxsize=self.queue_frames)
        try:
            while True:
                try:
                    frame = await q.get()
                except EndOfStream:
                    return
                if frame.index < self._cut_index:
                    continue  # speech made before the clear, still in the queue
                audible, ended = self.segments.step(frame.pts, frame.pts + stride)
                n = fmt.repeats(frame.index)
                if n:
                    rgba = fmt.image(frame, alpha=True)
                    for _ in range(n):
                        yield rtc.VideoFrame(fmt.width, fmt.height, rtc.VideoBufferType.RGBA, rgba.tobytes())
                if audible:
                    pcm = fmt.audio(frame)
                    yield rtc.AudioFrame(pcm.tobytes(), fmt.sample_rate, fmt.channels, len(pcm) // fmt.channels)
                for _ in range(ended):
                    yield AudioSegmentEnd()
        finally:
            self.session.unsubscribe(q)

    def __aiter__(self) -> AsyncIterator[Any]:
        """Video frames, audio frames and segment ends, as the session makes them."""
        return self._frames()

    async def aclose(self) -> None:
        """Close the session (the iterator ends)."""
        await self.session.close()


def avatar_options(generator: SDAVideoGenerator) -> Any:
    """The ``AvatarOptions`` (size, fps, audio rate and channels) matching ``generator``."""
    fmt = generator.format
    return _avatar.AvatarOptions(video_width=fmt.width, video_height=fmt.height, video_fps=fmt.fps,
                                 audio_sample_rate=fmt.sample_rate, audio_channels=fmt.channels)


async def start_in_process(agent_session: Any, room: Any, avatar_session: Any, **format_args: Any) -> Any:
    """Publish the avatar into ``room`` from the agent's own process, as the bitHuman plugin
    does: the agent's speech goes to a ``QueueAudioOutput`` that an ``AvatarRunner`` reads
    into an :class:`SDAVideoGenerator` (``format_args``: its ``width``, ``height``, ``fps``,
    ``sample_rate``, ``channels``). Call before ``agent_session.start``; returns the runner
    (``await runner.aclose()`` at the end)."""
    gen = SDAVideoGenerator(avatar_session, **format_args)
    audio = _avatar.QueueAudioOutput(sample_rate=gen.format.sample_rate)
    runner = _avatar.AvatarRunner(room, audio_recv=audio, video_gen=gen, options=avatar_options(gen))
    await runner.start()
    agent_session.output.audio = audio
    return runner
