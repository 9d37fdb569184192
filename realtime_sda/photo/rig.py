"""``PhotoRig``: a user's photo made ready to animate: the photo at the output size, the
chosen face's landmarks, the alignment onto the model's mean face (which gives the model its
still), and the fixed parts of the warp (control points, region, colours)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..errors import FaceNotFoundError, RealtimeSDAError
from ..media.image import ImageInput, load_rgb
from .interior import MouthColours, mouth_colours

if TYPE_CHECKING:
    from ..core.config import SDAConfig

__all__ = ["PhotoRig", "prepare_photo", "output_size", "DEFAULT_MAX_SIDE", "MOVING", "HELD"]

#: The long side of the output when none is asked for: larger photos are scaled down to it.
DEFAULT_MAX_SIDE = 1280
#: Landmarks that move with the mouth and jaw (and the upper eyelids, for blinks).
MOVING = tuple(range(3, 14)) + tuple(range(48, 68)) + (37, 38, 43, 44)
#: Landmarks held still: the rest of the jaw line, brows, nose, eye corners and lower lids.
HELD = (0, 1, 2, 14, 15, 16) + tuple(range(17, 37)) + (39, 40, 41, 42, 45, 46, 47)
MAX_GRID = 4096  # samples of the warp field at most (resized to pixels in between)


def output_size(height: int, width: int, size: int | None = None, max_side: int = DEFAULT_MAX_SIDE) -> tuple[int, int]:
    """(H, W) of the output: the long side ``size`` (or the photo's, capped at ``max_side``),
    the aspect kept, both even (H.264 and VP8 need that: the odd last row or column is cut,
    never stretched)."""
    if size is not None and int(size) < 16:
        raise RealtimeSDAError(f"the output size must be at least 16 pixels on the long side, got {size}")
    long_side = max(height, width)
    target = int(size) if size is not None else min(long_side, int(max_side))
    scale = target / long_side
    h, w = max(2, int(round(height * scale))), max(2, int(round(width * scale)))
    return h - h % 2, w - w % 2


@dataclass(frozen=True)
class PhotoRig:
    """A photo ready for animation (immutable, shared by every frame of a video or session).

    ``photo``: RGB uint8 (H, W, 3) at the output size; ``landmarks``: the face's 68 points in
    it; ``to_crop``: 3x3 matrix, photo pixels -> the model's aligned crop; ``region``: (x0,
    y0, x1, y1), the only pixels a frame can change.
    """

    photo: np.ndarray
    landmarks: np.ndarray
    to_crop: np.ndarray
    region: tuple[int, int, int, int]
    eye_distance: float
    colours: MouthColours
    grid: np.ndarray
    grid_shape: tuple[int, int]
    grid_step: int
    anchors: np.ndarray
    #: the face's detection box (left, top, right, bottom) in the photo
    box: tuple[int, int, int, int] = (0, 0, 0, 0)

    @property
    def size(self) -> tuple[int, int]:
        """(H, W) of the output frames."""
        return int(self.photo.shape[0]), int(self.photo.shape[1])

    def still(self, config: "SDAConfig") -> np.ndarray:
        """The model's aligned crop of this face, RGB uint8 (H, W, 3) of ``config.img_size``."""
        from ..media.face import warp_affine

        h, w = config.img_size
        return warp_affine(self.photo, self.to_crop, (int(h), int(w)))


def _face_area(marks: np.ndarray) -> tuple[int, int, int, int]:
    """The face's box grown to hold the jaw's travel (it may reach past the photo's edges)."""
    lo, hi = marks.min(0), marks.max(0)
    centre, half = (lo + hi) / 2.0, (hi - lo) * 0.75
    x0, y0 = np.floor(centre - half).astype(int)
    x1, y1 = np.ceil(centre + half + np.array([0.0, 0.25 * (hi - lo)[1]])).astype(int)
    return int(x0), int(y0), int(x1), int(y1)


def _clip(area: tuple[int, int, int, int], height: int, width: int) -> tuple[int, int, int, int]:
    x0, y0, x1, y1 = area
    return max(0, x0), max(0, y0), min(width, x1), min(height, y1)


def _ring(region: tuple[int, int, int, int], per_side: int = 6) -> np.ndarray:
    """Points around the region's border, where the warp must be zero."""
    x0, y0, x1, y1 = region
    t = np.linspace(0.0, 1.0, per_side, endpoint=False)
    xs, ys = x0 + t * (x1 - 1 - x0), y0 + t * (y1 - 1 - y0)
    return np.concatenate([
        np.stack([xs, np.full_like(xs, y0)], 1),
        np.stack([np.full_like(ys, x1 - 1), ys], 1),
        np.stack([x1 - 1 - t * (x1 - 1 - x0), np.full_like(xs, y1 - 1)], 1),
        np.stack([np.full_like(ys, x0), y1 - 1 - t * (y1 - 1 - y0)], 1),
    ])


def prepare_photo(
    image: ImageInput,
    config: "SDAConfig",
    *,
    face: int = 0,
    size: int | None = None,
    max_side: int = DEFAULT_MAX_SIDE,
) -> PhotoRig:
    """Load ``image``, scale it to the output size, find face number ``face`` (0 = the
    largest; ``realtime-sda faces PHOTO`` lists them) and prepare its warp."""
    from ..media.face import ALIGN_POINTS, detect_faces, landmarks_in_box, similarity_transform
    from ..media.image import resize_rgb

    rgb = load_rgb(image)
    h, w = output_size(rgb.shape[0], rgb.shape[1], size, max_side)
    scale = max(h, w) / max(rgb.shape[:2])
    sh, sw = int(round(rgb.shape[0] * scale)), int(round(rgb.shape[1] * scale))
    photo = np.ascontiguousarray(resize_rgb(rgb, (max(sh, h), max(sw, w)), sharp=True)[:h, :w])
    boxes = detect_faces(photo)
    if not boxes:
        raise FaceNotFoundError(
            f"no face was found in the {w}x{h} photo. Use a photo with a frontal, well-lit face "
            "of at least about 40 pixels; for an already aligned face crop use --crop --aligned."
        )
    if not 0 <= int(face) < len(boxes):
        raise RealtimeSDAError(
            f"face {face} was asked for, but the photo has {len(boxes)} face(s) (numbered 0 to "
            f"{len(boxes) - 1}, largest first; 'realtime-sda faces PHOTO' lists them)"
        )
    chosen = boxes[int(face)]
    marks = landmarks_in_box(photo, chosen)
    mean_face = np.asarray(config.mean_face, dtype=np.float64)
    idx = list(ALIGN_POINTS)
    to_crop = similarity_transform(marks[idx], mean_face[idx])
    area = _face_area(marks)
    region = _clip(area, h, w)
    # the warp is held at zero around the whole area, even where it lies past the photo's
    # edge: a tight crop (chin at the bottom edge) would otherwise pin the lower lip in place
    anchors = _ring(area)
    x0, y0, x1, y1 = region
    # samples at the centres of GRID_STEP-pixel cells, so a bilinear resize by GRID_STEP
    # lands every sample on its cell (cv2's half-pixel convention)
    step = max(2, int(np.ceil(np.sqrt((x1 - x0) * (y1 - y0) / MAX_GRID))))
    rows, cols = -(-(y1 - y0) // step), -(-(x1 - x0) // step)
    off = (step - 1) / 2.0
    gy, gx = np.meshgrid(y0 + off + step * np.arange(rows), x0 + off + step * np.arange(cols), indexing="ij")
    return PhotoRig(
        photo=photo,
        landmarks=marks,
        to_crop=to_crop,
        region=region,
        eye_distance=float(np.linalg.norm(marks[45] - marks[36])),
        colours=mouth_colours(photo, marks),
        grid=np.stack([gx.ravel(), gy.ravel()], 1),
        grid_shape=(int(rows), int(cols)),
        grid_step=step,
        anchors=anchors,
        box=(int(chosen[0]), int(chosen[1]), int(chosen[2]), int(chosen[3])),
    )
