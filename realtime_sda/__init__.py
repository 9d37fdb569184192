"""realtime-sda: speech-driven facial animation (SDA), offline and in real time.

Names are imported lazily, so ``import realtime_sda`` is cheap and has no side effects.
"""

from __future__ import annotations

from ._lazy import lazy_exports

__version__ = "0.1.0"

_EXPORTS = {
    "SDAConfig": "core.config",
    "SDAModel": "core.model",
    "FoldedModel": "core.engine",
    "InferenceEngine": "core.engine",  # the former name of FoldedModel
    "IdentityContext": "core.state",
    "StreamState": "core.state",
    "NoiseSource": "core.noise",
    "load_model": "checkpoints.loading",
    "resolve_model": "checkpoints.registry",
    "VideoAnimator": "animator",
    "get_audio_feature_extractor": "animator",
    "cut_audio_sequence": "media.audio",
    "save_video": "media.video",
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

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
