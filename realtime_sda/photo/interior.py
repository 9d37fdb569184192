"""The inside of an opened mouth, drawn in the colours of the photo: a dark cavity (the
lips' own colour, darkened) under a band of upper teeth, lower teeth showing when the mouth
opens wide. Drawn in a small canonical patch (corners left and right, upper lip at the top,
lower lip at the bottom) and mapped onto the opened lips by an affine transform, so its cost
does not grow with the photo.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["MouthColours", "mouth_colours", "draw_interior"]

_PATCH = 48  # canonical patch side, pixels


@dataclass(frozen=True)
class MouthColours:
    """RGB float32 colours of the mouth interior and the eyelids, taken from the photo."""

    cavity: np.ndarray
    teeth: np.ndarray
    lid: np.ndarray  # the skin between the eyes and the brows: a closed eyelid's colour


def mouth_colours(photo: np.ndarray, marks: np.ndarray) -> MouthColours:
    """Cavity and teeth colours from the photo's lips and skin."""
    import cv2

    lips = np.zeros(photo.shape[:2], np.uint8)
    cv2.fillPoly(lips, [np.round(marks[48:60]).astype(np.int32)], 1)
    cv2.fillPoly(lips, [np.round(marks[60:68]).astype(np.int32)], 0)
    lip = photo[lips > 0].astype(np.float32)
    lip_rgb = np.median(lip, 0) if len(lip) > 8 else np.array([150.0, 80.0, 80.0], np.float32)
    x0, x1 = sorted((int(marks[31, 0]), int(marks[35, 0])))
    y0, y1 = sorted((int(marks[29, 1]), int(marks[33, 1])))
    nose = photo[max(y0, 0) : max(y1, y0 + 1), max(x0, 0) : max(x1, x0 + 1)].reshape(-1, 3).astype(np.float32)
    skin = float(np.median(nose.mean(1))) if len(nose) > 8 else 170.0
    cavity = (lip_rgb * 0.25).astype(np.float32)
    teeth = np.clip(np.array([0.95, 0.92, 0.86], np.float32) * min(skin * 1.2, 235.0), 0, 255)
    # the upper lids' skin: a band between each eye's top and its brow
    band = []
    for top, brow in ((marks[37:39], marks[18:21]), (marks[43:45], marks[23:26])):
        ya, yb = int(brow[:, 1].mean()), int(top[:, 1].min())
        xa, xb = int(top[:, 0].min()), int(top[:, 0].max()) + 1
        ya, yb = ya + (yb - ya) // 2, max(yb - 1, ya + (yb - ya) // 2 + 1)
        band.append(photo[max(ya, 0) : max(yb, 0), max(xa, 0) : max(xb, 0)].reshape(-1, 3))
    skin_band = np.concatenate(band).astype(np.float32)
    lid = np.median(skin_band, 0) if len(skin_band) > 4 else nose.mean(0) if len(nose) else np.full(3, 170.0)
    return MouthColours(cavity=cavity, teeth=teeth, lid=np.asarray(lid, np.float32))


def _patch(colours: MouthColours, teeth_frac: float, lower_frac: float) -> np.ndarray:
    """The canonical (P, P, 3) float32 interior: teeth bands, cavity shaded darker inside."""
    n = _PATCH
    y = (np.arange(n, dtype=np.float32) + 0.5) / n
    x = (np.arange(n, dtype=np.float32) + 0.5) / n
    side = 1.0 - 0.55 * (2.0 * x - 1.0) ** 2  # darker towards the corners
    upper = np.clip((teeth_frac - y) / 0.06 + 0.5, 0.0, 1.0)
    lower = np.clip((y - (1.0 - lower_frac)) / 0.06 + 0.5, 0.0, 1.0)
    teeth = np.maximum(upper, 0.8 * lower)[:, None] * side[None, :] ** 0.5
    depth = 0.6 + 0.4 * np.abs(2.0 * y - 1.0)[:, None] * np.ones((1, n), np.float32)
    cav = colours.cavity[None, None, :] * depth[..., None] * side[None, :, None]
    t = teeth[..., None]
    return (cav * (1.0 - t) + colours.teeth[None, None, :] * side[None, :, None] * t).astype(np.float32)


def draw_interior(
    colours: MouthColours, inner: np.ndarray, iod: float, shape: tuple[int, int]
) -> np.ndarray:
    """The interior for the inner-lip polygon ``inner`` (8, 2; points 60-67, in the target
    region's pixels) as an (H, W, 3) float32 image of ``shape``; ``iod`` sets the teeth's size."""
    import cv2

    left, right = inner[0], inner[4]
    top, bottom = inner[1:4].mean(0), inner[5:8].mean(0)
    gap = float(np.linalg.norm(bottom - top))
    # upper teeth show under the lip, lower teeth only when the mouth opens wide (fractions
    # of the opening); the dark cavity is most of it, as in speech
    teeth_frac = min(0.3, 0.035 * iod / max(gap, 1e-6))
    lower_frac = float(np.clip((gap - 0.2 * iod) / max(gap, 1e-6), 0.0, 0.15))
    patch = _patch(colours, teeth_frac, lower_frac)
    n = float(_PATCH)
    a = (right - left) / n  # patch x runs from corner to corner
    b = (bottom - top) / n  # patch y from the upper lip to the lower
    o = top - (n / 2.0) * a
    matrix = np.array([[a[0], b[0], o[0]], [a[1], b[1], o[1]]], dtype=np.float64)
    h, w = shape
    return cv2.warpAffine(patch, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
