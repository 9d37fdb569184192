"""``LipResponse``: how far the lips of a photo *look* open for each opening the warp makes.

A warp that parts the lips by some fraction of the eye distance does not read as that much
opening on every photo: on a small or soft face the first few hundredths hardly show (a thin
dark slit between unchanged lips), and a photo that already shows its teeth stops reading as
more open well before the warp stops. A landmark detector sees the same thing a viewer does
here, so once per photo the renderer poses the photo at a ladder of openings and reads the
inner lips' middle opening (dlib points 62-66 over the eye-corner distance) off each result.
The renderer then asks for the opening that *looks* like the model's, not the one it computes
(the curve inverted), and stops at the point past which opening further shows no more.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

__all__ = ["LipResponse", "measure_response", "seen_opening"]

#: the warp's openings tried beyond rest (eye distances); wider reads as another person
LADDER = (0.0, 0.03, 0.06, 0.09, 0.12, 0.16, 0.2, 0.25, 0.3)
#: a step of the ladder counts only if it shows at least this much more opening
MIN_GAIN = 0.004


def seen_opening(marks: np.ndarray) -> float:
    """The inner lips' middle opening (points 62-66) over the eye-corner distance (36-45)."""
    eyes = max(float(np.linalg.norm(marks[45] - marks[36])), 1e-6)
    return float(np.linalg.norm(marks[66] - marks[62])) / eyes


@dataclass(frozen=True)
class LipResponse:
    """``gaps``: the warp's lip openings (ascending); ``seen``: how open each looked (strictly
    ascending: steps that showed no more are left out)."""

    gaps: np.ndarray
    seen: np.ndarray

    @property
    def rest(self) -> float:
        """How open the lips look at rest."""
        return float(self.seen[0])

    def gap_for(self, seen: float) -> float:
        """The warp's opening that looks ``seen`` open (the widest useful one beyond the curve)."""
        return float(np.interp(seen, self.seen, self.gaps))


def measure_response(render_gap: Callable[[float], np.ndarray], landmarks: Callable[[np.ndarray], np.ndarray],
                     rest: float) -> LipResponse | None:
    """Pose the photo at ``rest`` plus each :data:`LADDER` step (``render_gap(gap) -> image``),
    read the opening off each (``landmarks(image) -> (68, 2)``). None when the lips never look
    more open than at rest (the renderer then keeps its own scale)."""
    gaps: list[float] = []
    seen: list[float] = []
    for step in LADDER:
        gap = rest + step
        value = seen_opening(landmarks(render_gap(gap)))
        if not seen or value >= seen[-1] + MIN_GAIN:
            gaps.append(gap)
            seen.append(value)
    if len(seen) < 3:
        return None
    return LipResponse(np.array(gaps), np.array(seen))
