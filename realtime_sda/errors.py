"""Exception types. Every error a user can trigger derives from :class:`RealtimeSDAError`
and says what is wrong and how to fix it."""

from __future__ import annotations

__all__ = [
    "RealtimeSDAError",
    "ModelNotFoundError",
    "LFSPointerError",
    "CheckpointFormatError",
    "StateDictMismatchError",
    "FaceNotFoundError",
    "AudioDecodeError",
    "ImageDecodeError",
    "MissingDependencyError",
    "DeviceError",
    "DatasetFormatError",
    "TrainConfigError",
]


class RealtimeSDAError(Exception):
    """Base class of every error this package raises on purpose."""


class ModelNotFoundError(RealtimeSDAError, FileNotFoundError):
    """No checkpoint file was found for a model name or path."""


class LFSPointerError(RealtimeSDAError):
    """The file is a git-lfs pointer text, not the checkpoint itself."""


class CheckpointFormatError(RealtimeSDAError):
    """The file is truncated, corrupt, or not an SDA checkpoint."""


class StateDictMismatchError(CheckpointFormatError):
    """The checkpoint's tensors do not match the network layout its config describes."""


class FaceNotFoundError(RealtimeSDAError):
    """No face was detected in the still image."""


class AudioDecodeError(RealtimeSDAError):
    """Audio input could not be read or has an unsupported layout."""


class ImageDecodeError(RealtimeSDAError):
    """Image input could not be read or has an unsupported layout."""


class MissingDependencyError(RealtimeSDAError, ImportError):
    """An optional dependency is not installed; the message names the pip extra."""


class DeviceError(RealtimeSDAError):
    """An audio or video device (microphone, speaker, virtual camera, display) is missing or
    cannot be opened; the message names what to install or which device to choose."""


class DatasetFormatError(RealtimeSDAError):
    """A training dataset folder is missing files or does not match the model's config."""


class TrainConfigError(RealtimeSDAError):
    """A training config is unreadable or has unknown or invalid values."""


def require(module: str, extra: str, purpose: str):
    """Import ``module`` or raise :class:`MissingDependencyError` naming the extra to install."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise MissingDependencyError(
            f"{purpose} needs the Python package '{module}', which is not installed "
            f"({exc}). Install it with: pip install 'realtime-sda[{extra}]'"
        ) from exc
