"""Face alignment of the still image, as the model was trained: iBUG-68 landmarks from dlib,
a least-squares similarity transform of five points onto the checkpoint's mean face, and a
warp into the model's (H, W) frame.

The dlib models ship in the ``face_recognition_models`` wheel and are loaded by path (that
package's own ``__init__`` needs ``pkg_resources``, which new setuptools no longer has), once
per process. Nothing is downloaded at run time.
"""

from __future__ import annotations

import importlib.util
import threading
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..errors import FaceNotFoundError, MissingDependencyError
from .image import ImageInput, load_rgb, resize_rgb, to_model_input

if TYPE_CHECKING:
    from ..core.config import SDAConfig

__all__ = [
    "ALIGN_POINTS",
    "landmark_model_path",
    "dlib_models",
    "DLIB_LOCK",
    "detect_faces",
    "aligned_crop_doubt",
    "detect_landmarks",
    "landmarks_in_box",
    "similarity_transform",
    "warp_affine",
    "align_face",
    "prepare_still",
]

#: iBUG-68 indices used for alignment: nose base (33) and the four eye corners.
ALIGN_POINTS = (33, 36, 39, 42, 45)

#: detector score a face needs when a more certain one is in the photo (real faces score
#: about 0.5 to 2.5; dlib's own threshold is 0)
_MIN_FACE_SCORE = 0.3
#: dlib objects are not documented as thread-safe: every call into them holds this lock
DLIB_LOCK = threading.Lock()


def landmark_model_path() -> Path:
    """Path of ``shape_predictor_68_face_landmarks.dat`` inside ``face_recognition_models``."""
    spec = importlib.util.find_spec("face_recognition_models")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for loc in locations:
        path = Path(loc) / "models" / "shape_predictor_68_face_landmarks.dat"
        if path.is_file():
            return path
    raise MissingDependencyError(
        "face alignment needs dlib's 68-point landmark model from the Python package "
        "'face_recognition_models', which is not installed. Install it with: "
        "pip install face-recognition-models (or pass aligned=True / --aligned for an "
        "already aligned face crop)."
    )


@lru_cache(maxsize=1)
def dlib_models() -> tuple[Any, Any]:
    """dlib's (face detector, 68-point predictor), loaded once per process; call them
    holding :data:`DLIB_LOCK`."""
    try:
        import dlib
    except ImportError as exc:  # pragma: no cover - dlib-bin is a core dependency
        raise MissingDependencyError(
            f"face alignment needs dlib ({exc}); install it with: pip install dlib-bin "
            "(or pass aligned=True / --aligned for an already aligned face crop)."
        ) from exc
    return dlib.get_frontal_face_detector(), dlib.shape_predictor(str(landmark_model_path()))


def detect_faces(image: ImageInput) -> list[tuple[int, int, int, int]]:
    """Face boxes (left, top, right, bottom), largest first. Small images are searched
    again at 2x and 4x (dlib's detector misses faces under about 80 pixels). Detections far
    less certain than the best one are dropped (a badge or a pattern can pass dlib's
    threshold barely, and be larger than the real face: scores 0.07 against 1.63 seen)."""
    rgb = load_rgb(image)
    detector, _ = dlib_models()
    longest = max(rgb.shape[:2])
    tries = [0] + ([1] if longest < 2000 else []) + ([2] if longest < 600 else [])
    rects, scores = [], []
    with DLIB_LOCK:
        for upsample in tries:
            rects, scores, _ = detector.run(rgb, upsample, 0.0)
            if len(rects):
                break
    keep = min(_MIN_FACE_SCORE, 0.5 * max(scores)) if len(scores) else 0.0
    boxes = [(r.left(), r.top(), r.right(), r.bottom()) for r, sc in zip(rects, scores) if sc >= keep]
    return sorted(boxes, key=lambda b: -(b[2] - b[0]) * (b[3] - b[1]))


def landmarks_in_box(image: ImageInput, box: tuple[int, int, int, int]) -> np.ndarray:
    """The 68 iBUG landmarks (x, y) in pixels, float64 (68, 2), of the face in ``box``
    (left, top, right, bottom, as :func:`detect_faces` gives)."""
    import dlib

    rgb = load_rgb(image)
    _, predictor = dlib_models()
    with DLIB_LOCK:
        shape = predictor(rgb, dlib.rectangle(*[int(v) for v in box]))
    return np.array([(shape.part(i).x, shape.part(i).y) for i in range(shape.num_parts)], dtype=np.float64)


def detect_landmarks(image: ImageInput) -> np.ndarray:
    """The 68 iBUG landmarks (x, y) in pixels, float64 (68, 2), of the largest face.

    Raises :class:`FaceNotFoundError` when no face is found.
    """
    rgb = load_rgb(image)
    boxes = detect_faces(rgb)
    if not boxes:
        raise FaceNotFoundError(
            f"no face was found in the {rgb.shape[1]}x{rgb.shape[0]} still image. Use a frontal, "
            "well-lit photo with the whole face visible; if the image is already an aligned face "
            "crop, pass aligned=True (CLI: --aligned) to skip detection."
        )
    return landmarks_in_box(rgb, boxes[0])


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation) mapping ``src`` points
    onto ``dst`` points (Umeyama, 1991), as a 3x3 homogeneous matrix."""
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2 or len(src) < 2:
        raise ValueError(f"need matching (N >= 2, 2) point arrays, got {src.shape} and {dst.shape}")
    mu_s, mu_d = src.mean(0), dst.mean(0)
    sc, dc = src - mu_s, dst - mu_d
    var_s = (sc**2).sum() / len(src)
    if var_s <= 0:
        raise ValueError("source points are all identical")
    u, s, vt = np.linalg.svd(dc.T @ sc / len(src))
    d = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[-1] = -1.0  # keep a proper rotation, never a reflection
    rot = u @ np.diag(d) @ vt
    scale = float((s * d).sum() / var_s)
    out = np.eye(3)
    out[:2, :2] = scale * rot
    out[:2, 2] = mu_d - scale * rot @ mu_s
    return out


def warp_affine(rgb: np.ndarray, matrix: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Warp an RGB uint8 image by the 3x3 ``matrix`` (input pixel -> output pixel, pixel
    centres at integer coordinates) into an (H, W) = ``size`` image, bilinear, black outside."""
    from PIL import Image

    inv = np.linalg.inv(matrix)[:2]
    a, c = inv[:, :2], inv[:, 2]
    # PIL samples at pixel centres (x + 0.5): shift into and out of its convention.
    c = c + 0.5 - a @ np.array([0.5, 0.5])
    coeffs = (a[0, 0], a[0, 1], c[0], a[1, 0], a[1, 1], c[1])
    h, w = size
    out = Image.fromarray(np.ascontiguousarray(rgb)).transform(
        (w, h), Image.Transform.AFFINE, coeffs, resample=Image.Resampling.BILINEAR, fillcolor=(0, 0, 0)
    )
    return np.asarray(out)


def _mean_face(config_or_mean_face: "SDAConfig | np.ndarray") -> np.ndarray:
    mean_face = getattr(config_or_mean_face, "mean_face", config_or_mean_face)
    mean_face = np.asarray(mean_face, dtype=np.float64)
    if mean_face.shape != (68, 2):
        raise ValueError(f"mean face must be (68, 2), got {mean_face.shape}")
    return mean_face


def align_face(
    image: ImageInput,
    config_or_mean_face: "SDAConfig | np.ndarray",
    size: tuple[int, int] | None = None,
    landmarks: np.ndarray | None = None,
) -> np.ndarray:
    """Align the largest face onto the mean face -> RGB uint8 (H, W, 3).

    ``size`` (H, W) defaults to the config's ``img_size``; ``landmarks`` (68, 2) may be
    given to skip detection (e.g. when preparing a dataset with landmarks already computed).
    """
    if size is None:
        size = getattr(config_or_mean_face, "img_size", None)
        if size is None:
            raise ValueError("give size=(H, W) when passing a bare mean-face array")
    mean_face = _mean_face(config_or_mean_face)
    rgb = load_rgb(image)
    pts = detect_landmarks(rgb) if landmarks is None else np.asarray(landmarks, dtype=np.float64)
    idx = list(ALIGN_POINTS)
    matrix = similarity_transform(pts[idx], mean_face[idx])
    return warp_affine(rgb, matrix, (int(size[0]), int(size[1])))


def aligned_crop_doubt(image: ImageInput, config: "SDAConfig") -> str | None:
    """Why ``image`` does not look like an aligned crop for ``config``'s model, or ``None``.

    An aligned crop has the model's aspect and a face spanning most of its width (the mean
    face's jaw spans about 80% of it). Flags an aspect (H/W) more than 20% from the model's,
    or a detected face narrower than 45% of the image (a whole photo). A crop in which no
    face is detected is not flagged (dlib misses faces in small crops)."""
    rgb = load_rgb(image)
    h, w = rgb.shape[:2]
    mh, mw = (int(v) for v in config.img_size)
    aspect, model_aspect = h / w, mh / mw
    if not 1 / 1.2 <= aspect / model_aspect <= 1.2:
        return (f"the image is {w}x{h}, far from the model's {mw}x{mh} aspect, so it is not an aligned "
                "crop and will be stretched; leave out --aligned to detect and align the face")
    boxes = detect_faces(rgb)
    if boxes:
        left, _, right, _ = boxes[0]
        if (right - left) < 0.45 * w:
            return (f"the face found is {right - left} px wide in a {w} px wide image, so this is not an "
                    "aligned crop and the output will be a smear; leave out --aligned to detect and align the face")
    return None


def prepare_still(image: ImageInput, config: "SDAConfig", aligned: bool = False) -> torch.Tensor:
    """Any still-image input -> the model's (1, 3, H, W) input in [-1, 1].

    ``aligned=True`` only resizes (for crops already aligned like the training data).
    """
    rgb = load_rgb(image)
    out = resize_rgb(rgb, config.img_size) if aligned else align_face(rgb, config)
    return to_model_input(out)
