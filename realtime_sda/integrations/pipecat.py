"""The avatar as a pipecat frame processor (``pip install 'realtime-sda[pipecat]'``).

:class:`SDAAvatarProcessor` sits after the TTS service, as pipecat's own avatar services
do: it takes the TTS audio (``OutputAudioRawFrame``s, e.g. ``TTSAudioRawFrame``) out of the
pipeline, feeds it to a local avatar session and emits, for every 40 ms, the talking face as
an ``OutputImageRawFrame`` (``sync_with_audio=True``: the output transport shows it once the
audio before it has been sent) followed by the same 40 ms of speech as a ``TTSAudioRawFrame``
at the pipeline's output rate, so picture and sound leave together. The ``TTSStoppedFrame``
of an utterance is held back until its last frame went out. Between utterances the face
idles (blinks, small head motion, closed mouth) and only pictures go out. On an
``InterruptionFrame`` the queued speech, windows and frames are dropped (no more sound of it;
the mouth closes within the model's look-ahead) and the frame goes on, so the transport
clears its own queues too.

:class:`EspeakTTSService` is a pipecat TTS service on the local espeak-ng, so a pipeline
speaks with nothing in the cloud (``examples/pipecat_avatar.py``).

Output transports: set ``video_out_width``/``video_out_height`` to the processor's
``size`` and ``video_out_framerate`` to its ``fps`` (25), e.g. for ``SmallWebRTCTransport``
(aiortc) or the local Tk video output.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any, AsyncGenerator

import numpy as np

from ..errors import require
from ..streaming.queues import EndOfStream
from ..streaming.tasks import cancel_and_wait
from .common import FrameFormat, Segments

_frames = require("pipecat.frames.frames", "pipecat", "The pipecat avatar processor")
_processor = require("pipecat.processors.frame_processor", "pipecat", "The pipecat avatar processor")
_tts = require("pipecat.services.tts_service", "pipecat", "The pipecat avatar processor")
_settings = require("pipecat.services.settings", "pipecat", "The pipecat avatar processor")

FrameProcessor = _processor.FrameProcessor
FrameDirection = _processor.FrameDirection

__all__ = ["SDAAvatarProcessor", "EspeakTTSService"]


class SDAAvatarProcessor(FrameProcessor):  # type: ignore[misc, valid-type]
    """A local talking face for a pipecat pipeline (see the module doc).

    ``session``: a queued avatar session (``InferenceWorker.open_session(still,
    max_backlog_ms=None)``, made on the pipeline's event loop); ``size``: (width, height) of
    the images (default the session's frames); ``sample_rate``: of the audio frames (default
    the pipeline's output rate); ``sync_with_audio``: route each image through the output
    transport's audio queue (False: images go straight to its video, e.g. for
    ``video_out_is_live``); ``queue_frames``: frames that may wait between the session and the
    pipeline (drop-oldest)."""

    def __init__(self, session: Any, *, size: tuple[int, int] | None = None, sample_rate: int | None = None,
                 sync_with_audio: bool = True, queue_frames: int = 4, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if getattr(session, "queue_limit", 0) is None:
            session.use_queued_audio()  # TTS audio comes faster than real time: queue it
        self.session = session
        self._size = size
        self._sample_rate = sample_rate
        self.sync_with_audio = bool(sync_with_audio)
        self.queue_frames = int(queue_frames)
        self.format: FrameFormat | None = None
        self.segments = Segments()
        self._stopped: deque[tuple[int, Any]] = deque(maxlen=64)  # (segment number, held TTSStoppedFrame)
        self._segment_no = 0  # segments begun so far
        self._ended_no = 0  # segments whose last frame went out
        self._reader: asyncio.Task[None] | None = None
        self.interruptions = 0
        self._cut_index = -1  # frames before it were made before an interrupt: not sent
        self.images_out = 0
        self.audio_out = 0
        session.pause_audio()  # idle at once until the first speech

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the images (what ``video_out_width``/``height`` should be)."""
        if self._size is not None:
            return self._size
        h, w = self.session.frame_size
        return int(w), int(h)

    @property
    def fps(self) -> float:
        """The frame rate of the images (what ``video_out_framerate`` should be)."""
        return float(self.session.config.video_rate)

    async def setup(self, setup: Any) -> None:
        await super().setup(setup)
        rate = self._sample_rate or int(getattr(setup, "audio_out_sample_rate", 24000))
        w, h = self.size
        self.format = FrameFormat(self.session, width=w, height=h, sample_rate=rate, channels=1)

    async def cleanup(self) -> None:
        await self._stop_reader()
        await super().cleanup()

    async def process_frame(self, frame: Any, direction: Any) -> None:
        await super().process_frame(frame, direction)
        f = _frames
        if isinstance(frame, f.StartFrame):
            await self.push_frame(frame, direction)
            if self._reader is None:
                self._reader = self.create_task(self._read_frames(), name=f"sda-avatar-{self.session.id}")
        elif isinstance(frame, (f.EndFrame, f.CancelFrame)):
            await self._stop_reader()
            await self.push_frame(frame, direction)
        elif isinstance(frame, f.InterruptionFrame):
            self.interrupt()
            await self.push_frame(frame, direction)
        elif isinstance(frame, f.OutputAudioRawFrame) and direction == FrameDirection.DOWNSTREAM:
            await self._take_audio(frame)
        elif isinstance(frame, f.TTSStoppedFrame) and direction == FrameDirection.DOWNSTREAM and self.segments.open:
            self.session.pause_audio()  # also writes what the resampler holds of the utterance
            self.segments.end(self.session.audio_end)
            self._stopped.append((self._segment_no, frame))  # goes out after the utterance's last frame
        else:
            await self.push_frame(frame, direction)

    def interrupt(self) -> None:
        """Drop the queued speech now (pipecat's interruption; also callable directly)."""
        self.segments.clear()
        self._stopped.clear()
        self._ended_no = self._segment_no
        self.session.interrupt()
        self._cut_index = self.session.next_index  # the first frame made after it
        self.interruptions += 1

    async def _take_audio(self, frame: Any) -> None:
        pcm = np.frombuffer(frame.audio, dtype=np.int16).reshape(-1, max(int(frame.num_channels), 1))
        if not pcm.size:
            return
        session = self.session
        if not self.segments.open:
            self._segment_no += 1
        self.segments.begin(session.audio_end)
        from ..streaming.session import AudioQueueFullError

        while True:
            try:
                session.push_audio(pcm, int(frame.sample_rate))
                return
            except AudioQueueFullError:  # a long reply far ahead: wait for room, lose nothing
                await session.wait_writable(max(session.options.max_queued_s - 5.0, 1.0))

    async def _read_frames(self) -> None:
        """The session's frames, as images and (while speaking) their audio, downstream."""
        f, fmt = _frames, self.format
        assert fmt is not None
        stride = self.session.config.stride
        q = self.session.subscribe(maxsize=self.queue_frames)
        try:
            while True:
                try:
                    frame = await q.get()
                except EndOfStream:
                    return
                if frame.index < self._cut_index:
                    continue  # speech made before an interrupt, still in the queue
                audible, ended = self.segments.step(frame.pts, frame.pts + stride)
                image = f.OutputImageRawFrame(image=fmt.image(frame).tobytes(), size=(fmt.width, fmt.height), format="RGB")
                image.sync_with_audio = self.sync_with_audio
                await self.push_frame(image)
                self.images_out += 1
                if audible:
                    pcm = fmt.audio(frame)
                    await self.push_frame(f.TTSAudioRawFrame(audio=pcm.tobytes(), sample_rate=fmt.sample_rate, num_channels=1))
                    self.audio_out += 1
                for _ in range(ended):
                    self._ended_no += 1
                    while self._stopped and self._stopped[0][0] <= self._ended_no:
                        await self.push_frame(self._stopped.popleft()[1])
        finally:
            self.session.unsubscribe(q)

    async def _stop_reader(self) -> None:
        task, self._reader = self._reader, None
        if task is not None:
            await cancel_and_wait(task)


class EspeakTTSService(_tts.TTSService):  # type: ignore[name-defined]
    """Text to speech with the local espeak-ng, as a pipecat TTS service (one sentence at a
    time, as pipecat's text aggregation hands them over). ``voice``: an espeak-ng voice
    (``en-us``, ``en+f3``, ``de``); ``speed`` in words per minute."""

    def __init__(self, *, voice: str = "en-us", speed: int = 165, **kwargs: Any) -> None:
        from ..streaming.say import EspeakTTS

        settings = _settings.TTSSettings(model=None, voice=voice, language=None)
        super().__init__(push_start_frame=True, push_stop_frames=True, settings=settings, **kwargs)
        self._engine = EspeakTTS(voice=voice, speed=speed)

    def can_generate_metrics(self) -> bool:
        return True

    async def run_tts(self, text: str, context_id: str) -> AsyncGenerator[Any, None]:
        """The sentence's speech as 40 ms ``TTSAudioRawFrame``s at the service's rate."""
        from ..media.audio import resample, to_int16

        try:
            pcm, rate = await asyncio.to_thread(self._engine, text, None)
        except Exception as exc:  # espeak-ng missing or failing: say so in the pipeline
            yield _frames.ErrorFrame(error=f"espeak-ng could not speak: {exc}")
            return
        out_rate = int(self.sample_rate)
        if rate != out_rate and pcm.size:
            pcm = resample(pcm, rate, out_rate)
        await self.stop_ttfb_metrics()
        data = to_int16(np.asarray(pcm, np.float32)).reshape(-1)
        step = out_rate // 25
        for k in range(0, len(data), step):
            yield _frames.TTSAudioRawFrame(audio=data[k : k + step].tobytes(), sample_rate=out_rate,
                                           num_channels=1, context_id=context_id)
