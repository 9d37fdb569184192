"""Synthetic speech: GRID-like six-word sentences spoken by espeak-ng voices, and the
per-frame speech features (loudness, spectral centroid, noisiness) that drive the mouth."""

from __future__ import annotations

import tempfile
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...media.speech import synthesize_speech

__all__ = [
    "GRID_WORDS",
    "Voice",
    "random_voice",
    "random_sentence",
    "sentence_split",
    "speak",
    "frame_features",
]

#: GRID's grammar: command, colour, preposition, letter, digit, adverb.
GRID_WORDS: tuple[tuple[str, ...], ...] = (
    ("bin", "lay", "place", "set"),
    ("blue", "green", "red", "white"),
    ("at", "by", "in", "with"),
    tuple("abcdefghijklmnopqrstuvxyz"),  # GRID has no 'w'
    ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"),
    ("again", "now", "please", "soon"),
)

#: Letters whose sentences are held out for the test split (never spoken in training).
HELD_OUT_LETTERS = frozenset("kquxyz")

_BASES = ("en", "en-us", "en-gb-x-rp", "en-gb-scotland", "en-029", "en-gb-x-gbclan")
_VARIANTS = tuple(f"m{i}" for i in range(1, 8)) + tuple(f"f{i}" for i in range(1, 5)) + ("klatt", "croak")


@dataclass(frozen=True)
class Voice:
    """An espeak-ng voice: language/accent + variant, speed (words/min) and pitch (0-99)."""

    name: str
    speed: int
    pitch: int


def random_voice(rng: np.random.Generator) -> Voice:
    base = _BASES[rng.integers(len(_BASES))]
    variant = _VARIANTS[rng.integers(len(_VARIANTS))]
    return Voice(f"{base}+{variant}", int(rng.integers(125, 185)), int(rng.integers(25, 75)))


def random_sentence(rng: np.random.Generator, held_out: bool) -> str:
    """A GRID sentence; ``held_out`` picks its letter from the test-only letters."""
    words = [w[rng.integers(len(w))] for w in GRID_WORDS]
    letters = sorted(HELD_OUT_LETTERS) if held_out else sorted(set(GRID_WORDS[3]) - HELD_OUT_LETTERS)
    words[3] = letters[rng.integers(len(letters))]
    return " ".join(words)


def sentence_split(sentence: str) -> str:
    """"test" if the sentence uses a held-out letter, else "train"."""
    return "test" if sentence.split()[3] in HELD_OUT_LETTERS else "train"


def speak(text: str, voice: Voice, rate: int) -> np.ndarray:
    """Synthesize ``text`` with espeak-ng and resample to ``rate``: float32 mono in [-1, 1]."""
    with tempfile.TemporaryDirectory() as tmp:
        out = synthesize_speech(text, Path(tmp) / "speech.wav", voice.name, voice.speed, voice.pitch)
        with wave.open(str(out)) as wf:
            src_rate, n = wf.getframerate(), wf.getnframes()
            data = np.frombuffer(wf.readframes(n), dtype=np.int16).astype(np.float32) / 32768.0
    import soxr

    return soxr.resample(data, src_rate, rate).astype(np.float32)


def frame_features(audio: np.ndarray, rate: int, fps: float, frames: int) -> dict[str, np.ndarray]:
    """Per video frame: ``level`` (loudness 0-1 relative to the clip's peak), ``centroid``
    (spectral centroid, Hz) and ``noisy`` (share of energy above 3 kHz), from a 40 ms window
    centred on each frame."""
    stride = rate / fps
    win = int(0.04 * rate)
    pad = np.pad(audio.astype(np.float64), (win, win))
    hann = np.hanning(win)
    freqs = np.fft.rfftfreq(win, 1.0 / rate)
    db, cen, noisy = np.empty(frames), np.empty(frames), np.empty(frames)
    for i in range(frames):
        c = int((i + 0.5) * stride) + win
        seg = pad[c - win // 2 : c - win // 2 + win] * hann
        spec = np.abs(np.fft.rfft(seg)) ** 2
        e = spec.sum() + 1e-12
        db[i] = 10 * np.log10(np.mean(seg**2) + 1e-10)
        cen[i] = float((freqs * spec).sum() / e)
        noisy[i] = float(spec[freqs > 3000].sum() / e)
    peak = np.percentile(db, 95)
    level = np.clip((db - (peak - 30.0)) / 30.0, 0.0, 1.0)
    return {"level": level, "centroid": cen, "noisy": noisy}
