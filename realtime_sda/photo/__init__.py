"""Photoreal output: the user's whole photo, at its own resolution, with the face moving as
the model's face moves (see :mod:`.render` for how)."""

from __future__ import annotations

from .._lazy import lazy_exports

_EXPORTS = {
    "PhotoRig": "rig",
    "prepare_photo": "rig",
    "output_size": "rig",
    "DEFAULT_MAX_SIDE": "rig",
    "PhotoRenderer": "render",
    "MouthPose": "render",
    "NeutralFace": "render",
    "neutral_face": "render",
    "CropLandmarker": "landmarks",
    "photo_renderer": "setup",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
