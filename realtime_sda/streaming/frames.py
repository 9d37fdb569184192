"""``VideoFrame``: one generated picture with its timing and its own slice of the audio."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np

__all__ = ["VideoFrame"]


@dataclass(frozen=True)
class VideoFrame:
    """Frame ``index`` of a session.

    ``pts`` is in ``time_base`` units (1 / model audio rate) and comes from the master clock,
    the count of model-rate samples fed into the session's stream: frame i covers samples
    ``[i*stride, (i+1)*stride)``, so ``pts = i * stride``. ``audio`` holds exactly those
    ``stride`` samples (float32 mono at ``audio_rate``; silence where none arrived), so a sink
    can play the sound in sync with the picture. ``latency_s``: wall time from the arrival of
    the last audio sample the frame needs to the frame being ready. ``audio_padded``: the same
    samples with ``audio_pad`` of their neighbours on either side (from the frame's window, so
    a resampler can treat each frame alone without waiting for the next); None when the
    session has no look-ahead to give.
    """

    index: int
    pts: int
    time_base: Fraction
    image: np.ndarray  # (H, W, 3) uint8 RGB
    audio: np.ndarray  # (stride,) float32
    audio_rate: int
    latency_s: float
    audio_padded: np.ndarray | None = None  # (audio_pad + stride + audio_pad,) float32
    audio_pad: int = 0

    @property
    def time(self) -> float:
        """Start of the frame in seconds of stream time."""
        return float(self.pts * self.time_base)
