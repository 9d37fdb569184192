"""``PhotoRenderer``: the model's frame -> the user's photo with the face moving as the
model's face moves.

The model draws a small aligned crop; its motion is read off it as landmarks (dlib's
predictor on the crop): how far the inner lips part, how wide the mouth is and how open the
eyes are, each against the model's own face at rest (its frames for silence); the opening
is read off the mouth's pixels instead where those follow the model's speech better (on the
default model's small crop they do: dlib's lip points there are noisy). Those three
numbers move the photo's own landmarks (lower lip and jaw down, corners out, upper lids
down), a thin-plate spline warps the photo's pixels accordingly, and the opened mouth is
filled with a cavity and teeth in the photo's colours. So identity, texture and sharpness
come from the photo, and the motion from the model, for any checkpoint. Pixels outside the
face's region are the photo's, unchanged. Each frame depends only on its crop: streaming and
offline output are the same.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from ..training.blinks import eye_aspect_ratio
from .interior import draw_interior
from .landmarks import CropLandmarker, mouth_gap, mouth_width
from .mouthpixels import MouthPixels
from .response import LipResponse
from .rig import HELD, MOVING, PhotoRig
from .warp import tps_field

if TYPE_CHECKING:
    import torch

    from ..core.model import SDAModel

__all__ = ["MouthPose", "NeutralFace", "PhotoRenderer", "neutral_face"]

_JAW = dict(zip(range(4, 13), (0.12, 0.3, 0.5, 0.62, 0.68, 0.62, 0.5, 0.3, 0.12)))
_LOWER = {57: 0.78, 56: 0.74, 58: 0.74, 55: 0.55, 59: 0.55, 66: 0.78, 65: 0.72, 67: 0.72}
_UPPER = {51: -0.2, 50: -0.18, 52: -0.18, 49: -0.1, 53: -0.1, 62: -0.22, 61: -0.2, 63: -0.2}
_CORNERS = {48: 0.3, 54: 0.3, 60: 0.3, 64: 0.3}
_LIDS = ((37, 41), (38, 40), (43, 47), (44, 46))
#: the opening beyond rest (eye distances) approaches this as the model's opening passes its
#: usual (p90) width for the face, never more: wider reads as another person
_SPAN = 0.22
#: how hard the model's usual opening drives that span: at 0.75 its p90 opens the lips 0.14
#: eye distances and the wider openings still differ (at 1.0 they saturated: on 7 held-out
#: faces 0.75 kept identity 0.02-0.09 closer to the photo and lip-sync as good or better)
_DRIVE = 0.75
#: with the photo's lip response measured: how far beyond rest the lips *look* open (dlib's
#: 62-66 over the eye distance) as the model's opening passes its usual width: at the 0.75
#: drive its p90 shows 0.127, as a speaker's does (the aim for the opening's p90-p10 is 0.12)
_SEEN_SPAN = 0.2
#: the model's opening under this fraction of its usual width reads as closed lips: in speech
#: it seldom returns to its rest (p10 0.4-0.5 of the usual width on recorded sentences), so
#: without this the photo's mouth hardly closed between syllables
_CLOSED = 0.3
#: lips parted at rest at most this much of the eye distance (photos that smile keep a little)
_REST_GAP = 0.04
#: how far the warp moves an upper lid towards the lower one in a full blink; the rest of the
#: eye is painted over with lid skin (a warp that closes it fully folds the brow into it)
_LID_TRAVEL = 0.5
#: a p90 lip opening under this (eye distances) over the syllable signal: the lip points do
#: not see the model's mouth move (its crop too rough for them), so its pixels are read
_LANDMARKS_MOVE = 0.03


@dataclass(frozen=True)
class MouthPose:
    """The model's motion in one frame, in units of its eye-corner distance: ``opening``
    (inner-lip gap beyond rest), ``widening`` (mouth width beyond rest), ``blink`` (0 open,
    1 closed)."""

    opening: float
    widening: float
    blink: float


@dataclass(frozen=True)
class NeutralFace:
    """The model's face at rest for one still: its landmarks' gap, width, eye openness and
    eye-corner distance (the reference every frame's motion is measured against)."""

    gap: float
    width: float
    eyes: float
    eye_distance: float
    #: how far this face opens its mouth in speech (p90 of the opening over a fixed
    #: syllable signal, in eye distances): the model opens some faces twice as wide as
    #: others, so the photo's motion is scaled by it
    opening_scale: float = 0.1
    #: the opening read off the crop's pixels instead, where they follow the model's speech
    #: better than the lip points (or the lip points do not see it at all)
    pixels: MouthPixels | None = None

    @classmethod
    def from_landmarks(cls, marks: np.ndarray, opening_scale: float = 0.1) -> "NeutralFace":
        m = np.asarray(marks, dtype=np.float64)
        return cls(float(mouth_gap(m)), float(mouth_width(m)), float(eye_aspect_ratio(m[None])[0]),
                   float(np.linalg.norm(m[45] - m[36])), float(opening_scale))


def calibration_audio(rate: int, seconds: float = 3.0) -> np.ndarray:
    """A fixed speech-like signal: voiced syllables (a 120 Hz voice with harmonics) about
    four a second with short pauses, float32 mono at ``rate``; the same for every photo."""
    t = np.arange(int(rate * seconds)) / rate
    voice = sum(np.sin(2 * np.pi * 120.0 * k * t) / k for k in range(1, 12))
    envelope = np.clip(np.sin(np.pi * 4.0 * t), 0.0, None) ** 2 * (0.6 + 0.4 * np.sin(2 * np.pi * 0.7 * t))
    return (0.25 * envelope * voice).astype(np.float32)


def neutral_face(model: "SDAModel", still: "torch.Tensor", landmarker: CropLandmarker, frames: int = 12) -> NeutralFace:
    """The model's face at rest and how far it opens its mouth, for ``still`` (1, 3, H, W):
    its frames (seed 0) for ``frames`` of silence (median landmarks: the rest pose), then for
    :func:`calibration_audio` (the opening's p90: the scale of its motion)."""
    import torch

    from ..core.noise import NoiseSource
    from ..media.audio import window_segments
    from ..media.image import frames_to_uint8

    cfg = model.config
    speech = torch.cat(window_segments(calibration_audio(cfg.audio_rate), cfg))
    windows = torch.cat([torch.zeros(frames, cfg.audio_feat_samples), speech])[None].to(model.device)
    noise = NoiseSource(cfg.aux_latent, 0).next(windows.shape[1])[None].to(model.device)
    with torch.no_grad():
        video = model.generate(still.to(model.device), windows, noise)[0]
    crops = frames_to_uint8(video.permute(0, 2, 3, 1))
    marks = np.stack([landmarker(f) for f in crops])
    rest = NeutralFace.from_landmarks(np.median(marks[:frames], axis=0))
    opening = (mouth_gap(marks[frames:]) - rest.gap) / rest.eye_distance
    p90 = float(np.percentile(opening, 90))
    pixels = MouthPixels.calibrate(cfg.mean_face, cfg.img_size, crops[:frames], crops[frames:])
    if pixels is not None:
        # the measure of the model's mouth that follows the signal's loudness better: on a
        # small crop dlib's lip points are noisy (on recorded sentences the default model's
        # lip points followed the loudness with r 0.39-0.62, its mouth's pixels 0.74-0.81)
        loud = frame_loudness(calibration_audio(cfg.audio_rate), cfg.stride)[: len(opening)]
        by_pixels = np.array([pixels(c) for c in crops[frames:]])[: len(loud)]
        if p90 < _LANDMARKS_MOVE or _follows(by_pixels, loud) > _follows(opening[: len(loud)], loud):
            return replace(rest, pixels=pixels)  # its openings come in units of the default scale
    return replace(rest, opening_scale=max(p90, 0.02))


def frame_loudness(signal: np.ndarray, stride: int) -> np.ndarray:
    """RMS of each frame's period (``stride`` samples) of ``signal``."""
    n = len(signal) // stride
    return np.sqrt(np.mean(np.square(signal[: n * stride].reshape(n, stride), dtype=np.float64), axis=1))


def _follows(measure: np.ndarray, loud: np.ndarray) -> float:
    """Correlation of a mouth measure with loudness (0 for a measure that never moves)."""
    if len(measure) < 3 or np.std(measure) < 1e-9:
        return 0.0
    return float(np.corrcoef(measure, loud)[0, 1])


class PhotoRenderer:
    """Renders the model's aligned crops as full photos. ``gain`` scales the motion."""

    def __init__(self, rig: PhotoRig, landmarker: CropLandmarker, neutral: NeutralFace, gain: float = 1.0,
                 response: LipResponse | None = None) -> None:
        self.rig = rig
        self.landmarker = landmarker
        self.neutral = neutral
        self.gain = float(gain)
        #: how open the photo's lips look for each opening of the warp (None: taken as is)
        self.response = response
        p = rig.landmarks
        ux = (p[45] - p[36]) / np.linalg.norm(p[45] - p[36])
        uy = np.array([-ux[1], ux[0]])
        self._right, self._down = ux, (uy if uy @ (p[8] - p[27]) > 0 else -uy)
        self._photo_gap = float(mouth_gap(p)) / rig.eye_distance
        x0, y0, x1, y1 = rig.region
        self._pixels = np.stack(np.meshgrid(np.arange(x0, x1, dtype=np.float32), np.arange(y0, y1, dtype=np.float32)), -1)

    @property
    def size(self) -> tuple[int, int]:
        """(H, W) of the frames made."""
        return self.rig.size

    def pose(self, crop: np.ndarray) -> MouthPose:
        """The model's motion in ``crop`` (H, W, 3) uint8."""
        m = self.landmarker(crop)
        n = self.neutral
        ratio = float(eye_aspect_ratio(m[None])[0]) / max(n.eyes, 1e-6)
        if n.pixels is not None:  # the opening from the mouth's pixels (its p90 -> the opening scale)
            opening, widening = n.opening_scale * n.pixels(crop), 0.0
        else:
            opening = (float(mouth_gap(m)) - n.gap) / n.eye_distance
            widening = (float(mouth_width(m)) - n.width) / n.eye_distance
        return MouthPose(
            opening=opening,
            widening=widening,
            # the model closes its eyes below ~0.8 of their open size; half closed shows as a blink
            blink=float(np.clip((0.8 - ratio) / 0.2, 0.0, 1.0)),
        )

    def targets(self, pose: MouthPose) -> tuple[np.ndarray, float]:
        """The photo's landmarks moved by ``pose``, and the inner-lip gap they open (in eye
        distances). At rest the lips close (up to a small rest gap for smiling photos)."""
        rest = self.rest_gap
        usual = pose.opening / self.neutral.opening_scale  # 1 at the model's usual (p90) opening
        if usual > 0:  # between syllables the model's lips rarely close fully: those read closed
            usual = max(0.0, usual - _CLOSED) / (1.0 - _CLOSED)
        drive = float(np.tanh(_DRIVE * self.gain * usual))
        if self.response is not None and drive > 0:  # the opening that looks like the model's
            gap = self.response.gap_for(self.response.rest + _SEEN_SPAN * drive)
        else:
            gap = max(0.0, rest + _SPAN * drive)
        return self.points(gap, pose), gap

    @property
    def rest_gap(self) -> float:
        """The lips' opening at rest (eye distances): closed, up to a small gap for smiles."""
        return min(self._photo_gap, _REST_GAP)

    def points(self, gap: float, pose: MouthPose) -> np.ndarray:
        """The photo's landmarks with the lips ``gap`` apart and ``pose``'s width and blink."""
        p, d = self.rig.landmarks, self.rig.eye_distance
        extra = gap - self._photo_gap  # how much further the lips part than in the photo
        q = p.copy()
        for table in (_LOWER, _UPPER, _CORNERS, _JAW):
            for k, a in table.items():
                q[k] += a * extra * d * self._down
        for k, sign in ((48, -1.0), (60, -1.0), (54, 1.0), (64, 1.0)):
            q[k] += sign * 0.5 * self.gain * pose.widening * d * self._right
        for upper, lower in _LIDS:
            q[upper] += pose.blink * _LID_TRAVEL * (p[lower] - p[upper])
        return q

    def __call__(self, crop: np.ndarray) -> np.ndarray:
        """One frame: the photo (H, W, 3) uint8 with the face posed as in ``crop``."""
        return self.render(self.pose(crop))

    def render(self, pose: MouthPose) -> np.ndarray:
        """The photo posed by ``pose``."""
        q, gap = self.targets(pose)
        return self.draw(q, gap, pose.blink)

    def render_gap(self, gap: float) -> np.ndarray:
        """The photo with its lips ``gap`` eye distances apart, nothing else moved."""
        return self.draw(self.points(gap, MouthPose(0.0, 0.0, 0.0)), gap, 0.0)

    def draw(self, q: np.ndarray, gap: float, blink: float) -> np.ndarray:
        """The photo warped so its landmarks land on ``q``, the mouth filled as far as the lips
        part beyond the photo's (``gap``), the eyes closed by ``blink``."""
        import cv2

        rig = self.rig
        out = rig.photo.copy()
        moving = list(MOVING)
        if np.abs(q - rig.landmarks).max() < 0.05:
            return out
        targets = np.concatenate([rig.landmarks[list(HELD)], rig.anchors, q[moving]])
        values = np.concatenate([np.zeros((len(HELD) + len(rig.anchors), 2)), rig.landmarks[moving] - q[moving]])
        rows, cols = rig.grid_shape
        coarse = tps_field(targets, values, rig.grid).reshape(rows, cols, 2)
        x0, y0, x1, y1 = rig.region
        h, w = y1 - y0, x1 - x0
        step = rig.grid_step
        field = cv2.resize(coarse, (cols * step, rows * step), interpolation=cv2.INTER_LINEAR)[:h, :w]
        maps = self._pixels + field
        region = cv2.remap(rig.photo, maps[..., 0], maps[..., 1], cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
        still = np.abs(field).max(axis=2) < 0.02  # where nothing moves, the photo's own pixels
        region[still] = rig.photo[y0:y1, x0:x1][still]
        open_beyond = gap - self._photo_gap
        if open_beyond > 0.005:
            region = self._fill_mouth(region, q, open_beyond)
        if blink > 0.02:
            region = self._close_eyes(region, q, blink)
        out[y0:y1, x0:x1] = region
        return out

    def _close_eyes(self, region: np.ndarray, q: np.ndarray, amount: float) -> np.ndarray:
        """Paint the (warped) eye openings over with the skin of the lids above them and a
        lash line where the lids meet, ``amount`` 0 (open) to 1 (closed)."""
        import cv2

        x0, y0 = self.rig.region[:2]
        mask: np.ndarray = np.zeros(region.shape[:2], np.float32)
        lash = np.zeros(region.shape[:2], np.float32)
        width = max(1, int(round(self.rig.eye_distance * 0.012)))
        for eye in (range(36, 42), range(42, 48)):
            pts = q[list(eye)] - np.array([x0, y0])
            cv2.fillPoly(mask, [np.round(pts * 4).astype(np.int32)], 1.0, lineType=cv2.LINE_AA, shift=2)
            lower = pts[[0, 5, 4, 3]]  # corner, lower lid, corner: where a closed lid's lashes lie
            cv2.polylines(lash, [np.round(lower * 4).astype(np.int32)], False, 1.0, width, cv2.LINE_AA, shift=2)
        k = 2 * max(1, int(round(self.rig.eye_distance * 0.02))) + 1
        mask = np.maximum(cv2.GaussianBlur(mask, (k, k), 0), 0)[..., None] * amount
        lash = cv2.GaussianBlur(lash, (3, 3), 0)[..., None] * amount
        out = region.astype(np.float32)
        out += mask * (self.rig.colours.lid - out)
        out *= 1.0 - 0.55 * lash
        return np.clip(out + 0.5, 0, 255).astype(np.uint8)

    def _fill_mouth(self, region: np.ndarray, q: np.ndarray, open_beyond: float) -> np.ndarray:
        """Blend the drawn interior into the opened lips (feathered, fading in as they part)."""
        import cv2

        rig = self.rig
        x0, y0 = rig.region[:2]
        inner = q[60:68] - np.array([x0, y0])
        lo = np.floor(inner.min(0)).astype(int) - 3
        hi = np.ceil(inner.max(0)).astype(int) + 4
        lo = np.maximum(lo, 0)
        hi = np.minimum(hi, [region.shape[1], region.shape[0]])
        if np.any(hi - lo < 2):
            return region
        box = inner - lo
        shape = (int(hi[1] - lo[1]), int(hi[0] - lo[0]))
        mask = np.zeros(shape, np.float32)
        cv2.fillPoly(mask, [np.round(box * 4).astype(np.int32)], 1.0, lineType=cv2.LINE_AA, shift=2)
        k = 2 * max(1, int(round(rig.eye_distance * 0.015))) + 1
        # fades in over 0.05 eye distances for a closed mouth (whose stretched seam must be
        # covered), slowly where the photo shows its own teeth (they carry the person)
        alpha = min(1.0, open_beyond / (0.05 if self._photo_gap < 0.03 else 0.15))
        mask = cv2.GaussianBlur(mask, (k, k), 0)[..., None] * alpha
        fill = draw_interior(rig.colours, box, rig.eye_distance, shape)
        patch = region[lo[1] : hi[1], lo[0] : hi[0]].astype(np.float32)
        region[lo[1] : hi[1], lo[0] : hi[0]] = np.clip(patch + mask * (fill - patch) + 0.5, 0, 255).astype(np.uint8)
        return region
