"""Photographic identities for the synthetic corpus: a face photo shipped in an installed
package (scikit-image's astronaut), aligned onto the canonical layout with the project's
face alignment, with colour and mirror variations; animated by the same landmark warps."""

from __future__ import annotations

import numpy as np

from ...errors import RealtimeSDAError
from .faces import Identity, canonical_landmarks

__all__ = ["bundled_photos", "photo_identity"]

_SIZE = (256, 192)  # the aligned photo is stored at this (H, W); frames are resampled from it


def bundled_photos() -> list[np.ndarray]:
    """Face photos available without a download (RGB uint8); [] when none is installed."""
    try:
        from skimage import data
    except ImportError:
        return []
    return [np.asarray(data.astronaut())]


def photo_identity(rgb: np.ndarray, index: int, rng: np.random.Generator) -> Identity:
    """An :class:`Identity` whose static layer is ``rgb`` aligned onto the mean face, with a
    random mirror, brightness and colour cast."""
    from ...media.face import ALIGN_POINTS, detect_landmarks, similarity_transform, warp_affine

    if rng.random() < 0.5:
        rgb = rgb[:, ::-1]
    rgb = np.ascontiguousarray(np.clip(rgb * rng.uniform(0.8, 1.15) * rng.uniform(0.9, 1.1, 3), 0, 255).astype(np.uint8))
    try:
        marks = detect_landmarks(rgb)
    except RealtimeSDAError as exc:
        raise RealtimeSDAError(f"photo identity {index}: {exc}") from None
    mean_face = canonical_landmarks(_SIZE)
    idx = list(ALIGN_POINTS)
    mat = similarity_transform(marks[idx], mean_face[idx])
    aligned = warp_affine(rgb, mat, _SIZE)
    lm = (marks @ mat[:2, :2].T + mat[:2, 2]) / np.array([_SIZE[1], _SIZE[0]])
    cheeks = aligned[int(lm[29, 1] * _SIZE[0]) - 4 : int(lm[29, 1] * _SIZE[0]) + 4,
                     int(lm[2, 0] * _SIZE[1]) + 8 : int(lm[2, 0] * _SIZE[1]) + 20]
    skin = cheeks.reshape(-1, 3).mean(axis=0) if cheeks.size else np.array([200.0, 160.0, 130.0])
    return Identity(
        index=index, landmarks=lm, skin=skin, hair=skin * 0.5, hair_style="bald", iris=np.array([70.0, 45, 25]),
        lips=skin * np.array([0.85, 0.55, 0.55]), background=(skin, skin), clothes=skin,
        brow_thickness=0.02, max_open=float(rng.uniform(0.05, 0.075)), texture_seed=int(rng.integers(2**31)),
        photo=aligned,
    )
