"""Inputs the tests and benchmarks make themselves: speech-like audio and the bundled face.

Nothing here reads files from outside the repository, so every test that uses these runs in
a fresh clone.
"""

from __future__ import annotations

import os
import wave
from pathlib import Path

import numpy as np

from realtime_sda.media.audio import to_int16
from realtime_sda.media.image import default_avatar_path

__all__ = ["speech_like", "write_speech_like_wav", "face_photo"]


def face_photo() -> Path:
    """The bundled avatar: a real face photo (192x256) that dlib finds, shipped with the package."""
    return Path(default_avatar_path())


def speech_like(seconds: float = 3.0, rate: int = 50000, seed: int = 0) -> np.ndarray:
    """Deterministic speech-like float32 audio in [-1, 1]: voiced syllables (a gliding pitch
    with harmonics shaped by two moving formants) at about 4 per second, with short noise
    bursts (fricatives) and pauses between them."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * rate))
    t = np.arange(n) / rate
    f0 = 120.0 + 25.0 * np.sin(2 * np.pi * 0.7 * t)  # pitch glide
    phase = 2 * np.pi * np.cumsum(f0) / rate
    f1 = 500.0 + 300.0 * np.sin(2 * np.pi * 3.1 * t)  # formants that move like vowels change
    f2 = 1500.0 + 600.0 * np.sin(2 * np.pi * 1.9 * t + 1.0)
    voiced = np.zeros(n)
    for k in range(1, 30):
        fk = k * f0
        gain = np.exp(-((fk - f1) / 250.0) ** 2) + 0.5 * np.exp(-((fk - f2) / 350.0) ** 2) + 0.02
        voiced += gain * np.sin(k * phase) / k**0.5
    syllable = np.clip(np.sin(2 * np.pi * 4.0 * t + 0.3 * np.sin(2 * np.pi * 0.5 * t)), 0, None) ** 0.7
    pause = (np.sin(2 * np.pi * 0.45 * t + 0.5) > -0.8).astype(float)  # a short silence now and then
    fricative = rng.standard_normal(n) * (np.sin(2 * np.pi * 4.0 * t + np.pi) > 0.9)
    out = (voiced / np.abs(voiced).max() * syllable + 0.15 * fricative) * pause
    out *= 0.6 / max(np.abs(out).max(), 1e-9)
    return out.astype(np.float32)


def write_speech_like_wav(
    path: str | os.PathLike[str], seconds: float = 3.0, rate: int = 50000, seed: int = 0
) -> Path:
    """:func:`speech_like` as a mono int16 wav file (the original example clip's format)."""
    pcm = to_int16(speech_like(seconds, rate, seed))[:, 0].astype("<i2")
    path = Path(path)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    return path
