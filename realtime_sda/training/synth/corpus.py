"""A synthetic talking-face corpus: espeak-ng speech, procedural faces whose mouths follow
the speech and whose eyes blink, written in the training-data format. Deterministic for a
seed: every random draw comes from a generator seeded by (seed, identity or clip number)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ...errors import RealtimeSDAError
from ..dataset import ClipInfo, DatasetWriter
from .animate import FaceAnimator, blink_track, head_motion, mouth_tracks
from .faces import Identity, canonical_landmarks, random_identity
from .photo import bundled_photos, photo_identity
from .speech import Voice, frame_features, random_sentence, random_voice, speak

__all__ = ["CorpusSpec", "build_corpus", "make_clip"]


@dataclass
class CorpusSpec:
    """What to synthesize. Identities ``test_fraction`` of the last ones are held out (their
    clips form the "test" split and use sentences never spoken in training). The first
    ``photos`` identities are photographs (variants of the installed sample photos)."""

    clips: int = 200
    seed: int = 0
    identities: int | None = None  # default: about one identity per 6 clips, 2 to 40
    test_fraction: float = 0.2
    img_size: tuple[int, int] = (64, 48)
    audio_rate: int = 16000
    fps: float = 25.0
    photos: int = 0  # how many of the (training) identities are photographs (see .photo)

    def num_identities(self) -> int:
        if self.identities is not None:
            return max(1, self.identities)
        return int(min(40, max(2, round(self.clips / 6))))


def make_clip(
    ident: Identity, voice: Voice, animator: FaceAnimator, text: str, rng: np.random.Generator,
    audio_rate: int, fps: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Speak ``text`` and animate the face to it: (frames uint8 (T,H,W,3), audio float32
    (T * stride,), landmarks (T, 68, 2))."""
    stride = int(round(audio_rate / fps))
    speech = speak(text, voice, audio_rate)
    peak = float(np.abs(speech).max()) or 1.0
    speech = speech / peak * rng.uniform(0.3, 0.9)
    lead, tail = (int(rng.uniform(0.15, 0.45) * audio_rate) for _ in range(2))
    audio = np.concatenate([np.zeros(lead, np.float32), speech, np.zeros(tail, np.float32)])
    frames = int(np.ceil(len(audio) / stride))
    audio = np.pad(audio, (0, frames * stride - len(audio)))
    audio = audio + rng.normal(0, 1e-3, len(audio)).astype(np.float32)
    feats = frame_features(audio, audio_rate, fps, frames)
    opening, rounding = mouth_tracks(feats)
    blinks = blink_track(frames, fps, rng)
    motion = head_motion(frames, fps, rng, feats["level"])
    out = np.empty((frames, animator.h, animator.w, 3), np.uint8)
    marks = np.empty((frames, 68, 2), np.float32)
    for i in range(frames):
        out[i], marks[i] = animator.frame(opening[i], rounding[i], blinks[i], motion[i])
    return out, audio.astype(np.float32), marks


def build_corpus(dst: str | os.PathLike[str], spec: CorpusSpec,
                 progress: Callable[[int, int], None] | None = None) -> Path:
    """Write ``spec.clips`` clips to ``dst`` in the dataset format; returns ``dst``."""
    if spec.clips < 1:
        raise RealtimeSDAError(f"--clips must be at least 1, got {spec.clips}")
    if min(spec.img_size) < 24:
        raise RealtimeSDAError(f"frames of {spec.img_size} are too small; use at least 32x24 (height x width)")
    if not 0.0 <= spec.test_fraction < 1.0:
        raise RealtimeSDAError(f"test fraction must be in [0, 1), got {spec.test_fraction}")
    n_id = spec.num_identities()
    n_test = int(round(n_id * spec.test_fraction)) if n_id > 1 else 0
    if spec.test_fraction > 0 and n_id > 1:
        n_test = max(1, n_test)
    photos = bundled_photos() if spec.photos > 0 else []
    if spec.photos > 0 and not photos:
        raise RealtimeSDAError("photographic identities need scikit-image's sample photos: pip install scikit-image")
    writer = DatasetWriter(dst, spec.img_size, spec.audio_rate, spec.fps, canonical_landmarks(spec.img_size))
    people: dict[int, tuple[Identity, Voice, FaceAnimator]] = {}
    for c in range(spec.clips):
        who = c % n_id
        if who not in people:
            irng = np.random.default_rng([spec.seed, 1, who])
            if who < spec.photos:
                ident = photo_identity(photos[who % len(photos)], who, irng)
            else:
                ident = random_identity(irng, who)
            people[who] = (ident, random_voice(irng), FaceAnimator(ident, spec.img_size))
        ident, voice, animator = people[who]
        split = "test" if who >= n_id - n_test else "train"
        crng = np.random.default_rng([spec.seed, 2, c])
        text = random_sentence(crng, held_out=(split == "test"))
        frames, audio, marks = make_clip(ident, voice, animator, text, crng, spec.audio_rate, spec.fps)
        info = ClipInfo(id=f"s{spec.seed}_c{c:05d}", frames=len(frames), samples=len(audio), rate=spec.audio_rate,
                        fps=spec.fps, identity=f"id{who:03d}", speaker=voice.name, split=split, text=text)
        writer.add(info, frames, audio, marks)
        if progress is not None:
            progress(c + 1, spec.clips)
    return Path(dst)
