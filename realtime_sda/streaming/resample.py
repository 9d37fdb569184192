"""Streaming conversion of pushed PCM to the model's rate: any dtype and channel layout in,
float32 mono at ``config.audio_rate`` out, through python-soxr's ``ResampleStream``.

The resampler keeps its filter state between chunks, so a stream pushed in pieces of any
size gives exactly the output of the offline path (``audio.to_float_mono`` then one-shot
``soxr.resample``) once flushed (tested). When the input rate already is the model rate the
samples pass through unchanged.
"""

from __future__ import annotations

import numpy as np

from ..audio import to_float_mono
from ..errors import AudioDecodeError

__all__ = ["StreamResampler"]


class StreamResampler:
    """PCM chunks at any rate -> float32 mono at ``out_rate``; the input rate may change
    between chunks (the old stream is flushed and a new one started)."""

    def __init__(self, out_rate: int, quality: str = "HQ") -> None:
        self.out_rate = int(out_rate)
        self.quality = quality
        self.in_rate: int | None = None
        self._stream = None

    def _open(self, rate: int) -> list[np.ndarray]:
        tail = self.flush()
        self.in_rate = rate
        if rate != self.out_rate:
            import soxr

            self._stream = soxr.ResampleStream(rate, self.out_rate, 1, dtype="float32", quality=self.quality)
        return tail

    def process(self, pcm: np.ndarray, rate: int) -> np.ndarray:
        """Convert one chunk; returns the model-rate samples available so far (maybe none)."""
        if not isinstance(rate, (int, np.integer)) or isinstance(rate, bool) or rate <= 0:
            raise AudioDecodeError(f"the sample rate must be a positive integer in Hz, got {rate!r}")
        mono = to_float_mono(pcm)
        parts: list[np.ndarray] = []
        if rate != self.in_rate:
            parts += self._open(int(rate))
        if self._stream is None:
            parts.append(mono)
        elif mono.size:
            parts.append(self._stream.resample_chunk(mono, last=False))
        if not parts:
            return np.zeros(0, np.float32)
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def flush(self) -> list[np.ndarray]:
        """The samples still inside the resampler's filter (end of stream)."""
        out: list[np.ndarray] = []
        if self._stream is not None:
            out.append(self._stream.resample_chunk(np.zeros(0, np.float32), last=True))
        self._stream = None
        self.in_rate = None
        return out
