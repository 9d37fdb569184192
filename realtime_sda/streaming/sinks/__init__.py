"""Frame sinks: each runs on its own thread fed by a bounded drop-oldest queue, so a slow
sink skips frames and never slows the others or the inference thread.

- :class:`MemorySink`: keeps the frames (programs, tests).
- :class:`RecorderSink`: MP4 file, H.264 + AAC, with PyAV.
- :class:`PreviewSink`: an OpenCV window with an fps/latency overlay, sound through sounddevice.
- :class:`VirtualCameraSink`: pyvirtualcam (v4l2loopback on Linux, OBS on Windows/macOS).
"""

from __future__ import annotations

from ..._lazy import lazy_exports

_EXPORTS = {
    "Sink": "base",
    "SinkRunner": "base",
    "MemorySink": "memory",
    "RecorderSink": "recorder",
    "PreviewSink": "preview",
    "VirtualCameraSink": "vcam",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
