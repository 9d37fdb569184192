"""The training-data format and its torch Dataset.

A dataset is a directory::

    meta.json              {"format": "realtime-sda-dataset", "version": 1, "img_size": [H, W],
                            "audio_rate": Hz, "fps": 25, "mean_face": 68 x [x, y]}
    index.jsonl            one clip a line: {"id", "frames", "samples", "rate", "fps",
                            "identity", "speaker", "split", "text"}
    clips/<id>/frames.npy  uint8 (T, H, W, 3) face frames aligned to the mean face
    clips/<id>/audio.npy   float32 (samples,) mono audio at audio_rate, samples = T * stride
    clips/<id>/landmarks.npy  float32 (T, 68, 2) landmarks in frame pixels (when known)

Frame i of a clip shows the instant of audio samples [i * stride, (i + 1) * stride).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import DatasetFormatError
from .blinks import blink_spans, blink_targets, closure_track

__all__ = [
    "DatasetFormatError",
    "ClipInfo",
    "DatasetWriter",
    "read_meta",
    "read_index",
    "load_clip",
    "clip_windows",
    "ClipDataset",
]

FORMAT = "realtime-sda-dataset"


@dataclass
class ClipInfo:
    """One line of ``index.jsonl``."""

    id: str
    frames: int
    samples: int
    rate: int
    fps: float
    identity: str
    speaker: str
    split: str
    text: str = ""

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "ClipInfo":
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


class DatasetWriter:
    """Writes clips and the index of a dataset directory (the index is rewritten per clip,
    so an interrupted run leaves a valid dataset)."""

    def __init__(self, root: str | os.PathLike[str], img_size: tuple[int, int], audio_rate: int,
                 fps: float, mean_face: np.ndarray) -> None:
        self.root = Path(root)
        (self.root / "clips").mkdir(parents=True, exist_ok=True)
        meta = {"format": FORMAT, "version": 1, "img_size": list(img_size), "audio_rate": int(audio_rate),
                "fps": fps, "mean_face": np.asarray(mean_face, dtype=float).round(4).tolist()}
        (self.root / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
        self.index = self.root / "index.jsonl"
        self.index.write_text("")
        self.stride = int(round(audio_rate / fps))

    def add(self, info: ClipInfo, frames: np.ndarray, audio: np.ndarray, landmarks: np.ndarray | None) -> None:
        if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
            raise DatasetFormatError(f"clip {info.id}: frames must be uint8 (T, H, W, 3), got {frames.dtype} {frames.shape}")
        if len(audio) != len(frames) * self.stride:
            raise DatasetFormatError(f"clip {info.id}: {len(audio)} samples for {len(frames)} frames (need T * {self.stride})")
        d = self.root / "clips" / info.id
        d.mkdir(parents=True, exist_ok=True)
        np.save(d / "frames.npy", frames)
        np.save(d / "audio.npy", audio.astype(np.float32))
        if landmarks is not None:
            np.save(d / "landmarks.npy", landmarks.astype(np.float32))
        with self.index.open("a") as f:
            f.write(json.dumps(info.__dict__) + "\n")


def read_meta(root: str | os.PathLike[str]) -> dict[str, Any]:
    path = Path(root) / "meta.json"
    if not path.is_file():
        raise DatasetFormatError(
            f"'{root}' is not a dataset (no meta.json); make one with 'realtime-sda synth' or 'realtime-sda prepare'."
        )
    meta = json.loads(path.read_text())
    if meta.get("format") != FORMAT:
        raise DatasetFormatError(f"'{path}' is not a realtime-sda dataset description")
    return meta


def read_index(root: str | os.PathLike[str], split: str | None = None) -> list[ClipInfo]:
    """The clips of a dataset, optionally only one split ("train", "test")."""
    read_meta(root)
    lines = (Path(root) / "index.jsonl").read_text().splitlines()
    clips = [ClipInfo.from_json(json.loads(line)) for line in lines if line.strip()]
    return [c for c in clips if split is None or c.split == split]


def load_clip(root: str | os.PathLike[str], clip_id: str, mmap: bool = True) -> dict[str, np.ndarray]:
    """frames (T, H, W, 3) uint8, audio (n,) float32 and landmarks (T, 68, 2) if present."""
    d = Path(root) / "clips" / clip_id
    mode = "r" if mmap else None
    out = {"frames": np.load(d / "frames.npy", mmap_mode=mode), "audio": np.load(d / "audio.npy", mmap_mode=mode)}
    if (d / "landmarks.npy").is_file():
        out["landmarks"] = np.load(d / "landmarks.npy")
    return out


def clip_windows(audio: np.ndarray, start: int, frames: int, stride: int, feat: int) -> np.ndarray:
    """The model's audio windows (frames, feat) for frames [start, start + frames) of a clip,
    padded with zeros as the original library pads the whole signal."""
    pad_left = (feat - stride) // 2
    lo = start * stride - pad_left
    hi = (start + frames - 1) * stride - pad_left + feat
    seg = np.zeros(hi - lo, dtype=np.float32)
    a, b = max(lo, 0), min(hi, len(audio))
    if b > a:
        seg[a - lo : b - lo] = audio[a:b]
    return np.lib.stride_tricks.sliding_window_view(seg, feat)[::stride].copy()


class ClipDataset(torch.utils.data.Dataset):
    """Random windows of ``length`` frames from the clips of one split.

    Each item: ``still`` (3, H, W) a random frame of the same clip, ``frames`` (T, 3, H, W)
    and ``windows`` (T, feat) audio windows; images in [-1, 1]. Also ``clip`` (index) and
    ``start`` so that a sync discriminator can draw shifted audio from the same clip, and the
    blinks in the window (:mod:`.blinks`): ``onsets`` (T,), ``explained`` (T,), eyelid
    ``closure`` (T,) and ``blinks_known`` (1.0 when the clip has landmarks). ``blink_crops`` is the fraction of
    windows placed so that they contain a blink onset (when the clip has one).
    """

    def __init__(self, root: str | os.PathLike[str], split: str | None, length: int, feat: int,
                 img_size: tuple[int, int] | None = None, seed: int = 0, blink_crops: float = 0.0) -> None:
        self.root = Path(root)
        self.meta = read_meta(root)
        if img_size is not None and tuple(self.meta["img_size"]) != tuple(img_size):
            raise DatasetFormatError(
                f"dataset frames are {tuple(self.meta['img_size'])} but the model wants {tuple(img_size)}; "
                "build the dataset at the model's img_size (synth/prepare --img-size) or change the model config"
            )
        self.clips = [c for c in read_index(root, split) if c.frames >= length]
        if not self.clips:
            raise DatasetFormatError(f"no clips of split {split!r} with at least {length} frames in '{root}'")
        self.length, self.feat = length, feat
        self.stride = int(round(self.meta["audio_rate"] / self.meta["fps"]))
        self.rng = np.random.default_rng(seed)
        self.blink_crops = blink_crops
        self._spans: dict[int, list[tuple[int, int]] | None] = {}
        self._closure: dict[int, np.ndarray | None] = {}

    def blink_spans(self, i: int, clip: dict[str, np.ndarray]) -> list[tuple[int, int]] | None:
        """The blinks of clip ``i`` (cached), None when it has no landmarks."""
        if i not in self._spans:
            spans = blink_spans(clip["landmarks"]) if "landmarks" in clip else None
            self._spans[i] = spans
            self._closure[i] = closure_track(clip["landmarks"], spans) if spans is not None else None
        return self._spans[i]

    def _start(self, frames: int, spans: list[tuple[int, int]] | None) -> int:
        """A random window start; with probability ``blink_crops`` one whose window holds an
        onset at least a blink's length before its end (the whole blink shows)."""
        if spans and self.rng.random() < self.blink_crops:
            onset = spans[int(self.rng.integers(0, len(spans)))][0]
            lo, hi = max(0, onset - self.length + 6), min(onset, frames - self.length)
            if hi >= lo:
                return int(self.rng.integers(lo, hi + 1))
        return int(self.rng.integers(0, frames - self.length + 1))

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        info = self.clips[i]
        clip = load_clip(self.root, info.id)
        spans = self.blink_spans(i, clip)
        start = self._start(info.frames, spans)
        still_i = int(self.rng.integers(0, info.frames))
        frames = np.asarray(clip["frames"][start : start + self.length])
        still = np.asarray(clip["frames"][still_i])
        windows = clip_windows(np.asarray(clip["audio"]), start, self.length, self.stride, self.feat)

        onsets, explained = blink_targets(spans or [], start, self.length)
        closure = self._closure[i]
        closure = np.zeros(self.length, np.float32) if closure is None else closure[start : start + self.length].copy()

        def img(x: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(np.array(x, copy=True)).float().div(127.5).sub(1.0)

        return {
            "still": img(still).permute(2, 0, 1),
            "frames": img(frames).permute(0, 3, 1, 2),
            "windows": torch.from_numpy(windows),
            "clip": torch.tensor(i),
            "start": torch.tensor(start),
            "onsets": torch.from_numpy(onsets),
            "explained": torch.from_numpy(explained),
            "closure": torch.from_numpy(closure),
            "blinks_known": torch.tensor(float(spans is not None)),
        }
