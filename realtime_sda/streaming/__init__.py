"""Live streaming: audio in, talking-face frames out, many sessions on one model.

- :class:`InferenceWorker`: the one inference thread; batches every due session per step.
- :class:`AvatarSession`: one live face (``push_audio``, ``frames()``/``subscribe()``, ``close``).
- :class:`VideoFrame`: a frame with pts from the audio master clock and its own audio slice.
- :class:`AudioRingBuffer`: the numba ring buffer cutting windows equal to the offline cut.
- :class:`Speaker` (``session.say(text)``): text spoken by a local TTS into a session,
  sentence by sentence; ``session.interrupt()`` stops it mid-sentence.
- sources (:mod:`.sources`), sinks (:mod:`.sinks`), :class:`StreamPipeline` to wire them.

The least latency is the model's own look-ahead (``config.lookahead_samples``: 80 ms for GRID)
plus one step; ``lookahead_ms`` trades quality for less (see :mod:`.session`).
Names are imported lazily (no numba/torch import for ``import realtime_sda.streaming``).
"""

from __future__ import annotations

from .._lazy import lazy_exports

_EXPORTS = {
    "InferenceWorker": "worker",
    "WorkerNotRunningError": "worker",
    "AvatarSession": "session",
    "SessionClosedError": "session",
    "StreamOptionError": "options",
    "AudioQueueFullError": "session",
    "SessionOptions": "options",
    "VideoFrame": "frames",
    "AudioRingBuffer": "ringbuffer",
    "StreamResampler": "resample",
    "FrameQueue": "queues",
    "EndOfStream": "queues",
    "Clock": "clock",
    "SystemClock": "clock",
    "ManualClock": "clock",
    "StreamStats": "stats",
    "StatsSnapshot": "stats",
    "StreamPipeline": "pipeline",
    "FileSource": "sources",
    "Speaker": "say",
    "Utterance": "say",
    "SayError": "say",
    "EspeakTTS": "say",
    "MicrophoneSource": "sources",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
