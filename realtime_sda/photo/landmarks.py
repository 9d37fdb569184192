"""Landmarks of the model's own frames: dlib's 68-point predictor on an aligned crop, with
the face rectangle fixed by the mean face (no detection: the crop is aligned by
construction), after upscaling small crops. The lip and eyelid points are how the model's
motion reaches the photo; the metrics in :mod:`realtime_sda.training.evaluate` use the same.
"""

from __future__ import annotations

import threading
from functools import lru_cache
from typing import Any

import numpy as np

__all__ = ["CropLandmarker", "landmarks_at", "mouth_gap", "mouth_width"]

# relation of the detector's face box to the mean face's landmark box (measured on an
# aligned GRID face): left, top, right, bottom in units of the box size
_BOX = (-0.2325, -0.275, 1.2325, 0.925)


@lru_cache(maxsize=1)
def _predictor() -> tuple[Any, threading.Lock]:
    """One predictor for model frames, apart from the one photo detection uses (so a photo
    being detected never holds up a live session's frames)."""
    from ..errors import require
    from ..media.face import landmark_model_path

    dlib = require("dlib", "all", "landmarks of the model's frames")
    return dlib.shape_predictor(str(landmark_model_path())), threading.Lock()


class CropLandmarker:
    """``(H, W, 3)`` uint8 aligned frame -> ``(68, 2)`` landmarks in frame pixels."""

    def __init__(self, mean_face: np.ndarray, img_size: tuple[int, int], min_width: int = 192) -> None:
        import dlib

        _predictor()  # loaded (or its missing extra named) now, not on the first frame
        self.scale = max(1, int(np.ceil(min_width / img_size[1])))
        mean_face = np.asarray(mean_face, dtype=np.float64)
        lo, hi = mean_face.min(0), mean_face.max(0)
        size = hi - lo
        box = (lo[0] + _BOX[0] * size[0], lo[1] + _BOX[1] * size[1], lo[0] + _BOX[2] * size[0], lo[1] + _BOX[3] * size[1])
        self.rect = dlib.rectangle(*[int(round(v * self.scale)) for v in box])

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        import cv2

        h, w = frame.shape[:2]
        big = frame if self.scale == 1 else cv2.resize(frame, (w * self.scale, h * self.scale), interpolation=cv2.INTER_CUBIC)
        return _predict(big, self.rect) / self.scale


def landmarks_at(image: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """``(68, 2)`` landmarks of the face in ``box`` (left, top, right, bottom) of ``image``
    (H, W, 3) uint8, with the model frames' predictor (not the one photo detection holds)."""
    import dlib

    return _predict(image, dlib.rectangle(*[int(v) for v in box]))


def _predict(image: np.ndarray, rect: Any) -> np.ndarray:
    """The predictor's 68 points in ``rect`` (a dlib rectangle) of ``image``, float64 (68, 2)."""
    predictor, lock = _predictor()
    with lock:
        shape = predictor(np.ascontiguousarray(image), rect)
    return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)


def mouth_gap(marks: np.ndarray) -> np.ndarray:
    """Inner-lip gap (mean of 61-67, 62-66, 63-65) in pixels; (..., 68, 2) -> (...)."""
    return np.linalg.norm(marks[..., [61, 62, 63], :] - marks[..., [67, 66, 65], :], axis=-1).mean(axis=-1)


def mouth_width(marks: np.ndarray) -> np.ndarray:
    """Distance of the mouth corners 48-54 in pixels."""
    return np.linalg.norm(marks[..., 54, :] - marks[..., 48, :], axis=-1)
