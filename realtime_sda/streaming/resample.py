"""Streaming conversion of pushed PCM to the model's rate: any dtype and channel layout in,
float32 mono at ``config.audio_rate`` out, through python-soxr's ``ResampleStream``.

The resampler keeps its filter state between chunks, so a stream pushed in pieces of any
size gives exactly the output of the offline path (``audio.to_float_mono`` then one-shot
``soxr.resample``) once flushed (tested). When the input rate already is the model rate the
samples pass through unchanged.

``quality="causal"`` (live sources) uses :class:`~.causal_resample.CausalResampler`
instead: soxr's block filtering holds back 13-34 ms at 48 -> 16 kHz, the causal FIR a fixed
~3 ms, so a live window is complete as soon as its last packet arrives. Rate pairs it does
not support fall back to soxr HQ.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import AudioDecodeError
from ..media.audio import to_float_mono
from .causal_resample import CausalResampler, supports

__all__ = ["StreamResampler", "QUALITIES"]

QUALITIES = ("QQ", "LQ", "MQ", "HQ", "VHQ", "causal")


class StreamResampler:
    """PCM chunks at any rate -> float32 mono at ``out_rate``; the input rate may change
    between chunks (the old stream is flushed and a new one started)."""

    def __init__(self, out_rate: int, quality: str = "HQ") -> None:
        """``quality``: a soxr quality ("QQ" .. "VHQ") or "causal" (low latency, live)."""
        if quality not in QUALITIES:
            raise ValueError(f"resample quality must be one of {', '.join(QUALITIES)}, got {quality!r}")
        self.out_rate = int(out_rate)
        self.quality = quality
        self.in_rate: int | None = None
        self._stream: Any = None  # a causal resampler or a soxr.ResampleStream

    def _open(self, rate: int) -> list[np.ndarray]:
        tail = self.flush()
        self.in_rate = rate
        if rate != self.out_rate:
            if self.quality == "causal" and supports(rate, self.out_rate):
                self._stream = _Causal(rate, self.out_rate)
            else:
                import soxr

                quality = "HQ" if self.quality == "causal" else self.quality
                self._stream = soxr.ResampleStream(rate, self.out_rate, 1, dtype="float32", quality=quality)
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


class _Causal(CausalResampler):
    """:class:`CausalResampler` behind soxr's ``resample_chunk(chunk, last)``."""

    def resample_chunk(self, chunk: np.ndarray, last: bool = False) -> np.ndarray:
        out = self.process(chunk)
        return np.concatenate([out, self.flush()]) if last else out
