"""realtime-sda: speech-driven facial animation (SDA), offline and in real time.

Names are imported lazily, so ``import realtime_sda`` is cheap and has no side effects.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "SDAConfig": "config",
    "SDAModel": "model",
    "InferenceEngine": "engine",
    "IdentityContext": "state",
    "StreamState": "state",
    "NoiseSource": "noise",
    "load_model": "loading",
    "resolve_model": "registry",
    "VideoAnimator": "animator",
    "get_audio_feature_extractor": "animator",
    "cut_audio_sequence": "audio",
    "save_video": "video_io",
    "RealtimeSDAError": "errors",
    "ModelNotFoundError": "errors",
    "LFSPointerError": "errors",
    "CheckpointFormatError": "errors",
    "StateDictMismatchError": "errors",
    "FaceNotFoundError": "errors",
    "AudioDecodeError": "errors",
    "ImageDecodeError": "errors",
    "MissingDependencyError": "errors",
    "DeviceError": "errors",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'realtime_sda' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{module}", __name__), name)


def __dir__() -> list[str]:
    return __all__
