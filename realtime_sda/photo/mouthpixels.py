"""The model's mouth motion read off its crop's pixels, for faces whose crop dlib's lip points
do not follow.

On photos far from what a model saw in training (a grey, tightly cropped face for the default
model) the model still opens the mouth with the speech (a dark gap, teeth), but draws the
face too roughly for the landmark predictor's inner-lip points to part. The crop is aligned
to the mean face, so where the mouth is is known without landmarks: how far the pixels there
differ from the model's own face at rest is the opening, calibrated on the same fixed
syllable signal as the landmark measure.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["MouthPixels"]

#: a pixel measure whose p90 over the syllable signal is under this many grey levels above
#: rest is the model not moving the mouth at all
MIN_SCALE = 2.0
#: the part of the scale taken for the face's shimmer at rest
DEADBAND = 0.2


def _grey(crop: np.ndarray) -> np.ndarray:
    return np.asarray(crop, dtype=np.float32).mean(axis=-1)


@dataclass(frozen=True)
class MouthPixels:
    """``box`` (x0, y0, x1, y1) around the mean face's mouth in crop pixels; ``rest`` its grey
    pixels at rest; ``base`` and ``scale``: the measure at rest (median) and its p90 rise
    over speech. Calling it on a crop gives the opening, 0 at rest and about 1 at p90."""

    box: tuple[int, int, int, int]
    rest: np.ndarray = field(repr=False)
    base: float
    scale: float

    @staticmethod
    def mouth_box(mean_face: np.ndarray, img_size: tuple[int, int]) -> tuple[int, int, int, int]:
        """The mean face's lips (points 48-67) with room for the jaw's travel below them."""
        lips = np.asarray(mean_face, dtype=np.float64)[48:68]
        lo, hi = lips.min(0), lips.max(0)
        width = hi[0] - lo[0]
        h, w = img_size
        x0, x1 = int(np.floor(lo[0] - 0.1 * width)), int(np.ceil(hi[0] + 0.1 * width))
        y0, y1 = int(np.floor(lo[1] - 0.1 * width)), int(np.ceil(hi[1] + 0.25 * width))
        return max(0, x0), max(0, y0), min(int(w), x1), min(int(h), y1)

    @classmethod
    def calibrate(cls, mean_face: np.ndarray, img_size: tuple[int, int], rest: np.ndarray,
                  speech: np.ndarray) -> "MouthPixels | None":
        """From the model's crops for silence (``rest``, (N, H, W, 3) uint8) and for the
        syllable signal (``speech``); None when the mouth's pixels do not move either."""
        x0, y0, x1, y1 = box = cls.mouth_box(mean_face, img_size)
        still = np.median(_grey(rest[:, y0:y1, x0:x1]), axis=0)

        def measure(frames: np.ndarray) -> np.ndarray:
            return np.abs(_grey(frames[:, y0:y1, x0:x1]) - still).mean(axis=(1, 2))

        base = float(np.median(measure(rest)))
        scale = float(np.percentile(measure(speech), 90)) - base
        if scale < MIN_SCALE:
            return None
        return cls(box, still, base, scale)

    def __call__(self, crop: np.ndarray) -> float:
        x0, y0, x1, y1 = self.box
        diff = float(np.abs(_grey(crop[y0:y1, x0:x1]) - self.rest).mean())
        # the lowest fifth is the model's face shimmering at rest, not an opening: the lips
        # stay closed there, so pauses close the mouth as a speaker's do
        return max(0.0, (diff - self.base) / self.scale - DEADBAND) / (1.0 - DEADBAND)
