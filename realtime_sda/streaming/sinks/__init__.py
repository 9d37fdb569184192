"""Frame sinks: each runs on its own thread fed by a bounded drop-oldest queue, so a slow
sink skips frames and never slows the others or the inference thread.

- :class:`MemorySink`: keeps the frames (programs, tests).
- :class:`RecorderSink`: MP4 file, H.264 + AAC, with PyAV.
- :class:`PreviewSink`: an OpenCV window with an fps/latency overlay, sound through sounddevice.
- :class:`VirtualCameraSink`: pyvirtualcam (v4l2loopback on Linux, OBS on Windows/macOS).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Sink": "base",
    "SinkRunner": "base",
    "MemorySink": "memory",
    "RecorderSink": "recorder",
    "PreviewSink": "preview",
    "VirtualCameraSink": "vcam",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'realtime_sda.streaming.sinks' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{module}", __name__), name)


def __dir__() -> list[str]:
    return __all__
