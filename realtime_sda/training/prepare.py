"""Building a training dataset from talking-face videos.

Layouts: GRID (video files with their audio embedded, speakers in sub-folders) and CREMA-D
(video files without audio, and a wav file with the same stem somewhere under the source).
Each video is decoded with PyAV, the 68 landmarks are found per frame (dlib: the face box is
detected every few frames and the shape predictor runs on every frame), smoothed over a few
frames, and every frame is warped onto the mean face by the similarity of the five alignment
points. Unreadable clips and clips without a face are skipped and listed, never silently:
the list is printed and written to ``DST/skipped.txt``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import RealtimeSDAError
from .dataset import ClipInfo, DatasetWriter

__all__ = [
    "VIDEO_EXTENSIONS", "ClipSkipped", "PrepareSpec", "PrepareReport", "find_videos", "decode_video", "speaker_of",
    "prepare_dataset",
]

VIDEO_EXTENSIONS = (".mpg", ".mpeg", ".mp4", ".avi", ".flv", ".mov", ".mkv", ".webm")


class ClipSkipped(RealtimeSDAError):
    """One source clip cannot be used (the reason is listed in skipped.txt)."""


@dataclass
class PrepareSpec:
    img_size: tuple[int, int] = (64, 48)
    audio_rate: int = 16000
    fps: float = 25.0
    mean_face: np.ndarray | None = None  # default: the synthetic corpus' canonical layout
    smooth: int = 5  # frames in the landmark moving average
    detect_every: int = 8  # frames between face detections (the predictor runs every frame)
    test_fraction: float = 0.2  # share of speakers (sorted by name, last ones) for "test"
    max_face_misses: float = 0.5  # skip a clip when more frames than this share have no face


@dataclass
class PrepareReport:
    written: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)


def find_videos(src: Path) -> list[Path]:
    return sorted(p for p in src.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS)


def decode_video(path: Path) -> tuple[list[np.ndarray], np.ndarray, np.ndarray | None, int]:
    """-> (RGB frames, their times in seconds, embedded audio (n,) float32 or None, its rate)."""
    import av

    from ..media.audio import to_float_mono

    frames, times, chunks, rate = [], [], [], 0
    try:
        with av.open(str(path)) as box:
            if not box.streams.video:
                raise ClipSkipped("no video stream")
            vs = box.streams.video[0]
            streams = [vs] + ([box.streams.audio[0]] if box.streams.audio else [])
            for packet in box.demux(*streams):
                for frame in packet.decode():
                    if isinstance(frame, av.VideoFrame):
                        frames.append(frame.to_ndarray(format="rgb24"))
                        t = frame.time if frame.time is not None else len(times) / float(vs.average_rate or 25)
                        times.append(t)
                    else:
                        rate = frame.sample_rate
                        arr = frame.to_ndarray()  # planar: (channels, n); packed: (1, n * channels)
                        channels = len(frame.layout.channels)
                        arr = arr.T if frame.format.is_planar else arr.reshape(-1, channels)
                        chunks.append(to_float_mono(arr))
    except ClipSkipped:
        raise
    except (av.error.FFmpegError, ValueError, OSError, IndexError) as exc:
        raise ClipSkipped(f"unreadable ({type(exc).__name__}: {str(exc)[:120]})") from None
    if not frames:
        raise ClipSkipped("no video frames could be decoded")
    audio = np.concatenate(chunks) if chunks else None
    t = np.asarray(times, dtype=np.float64)
    return frames, t - t[0], audio, rate


def _landmarks(frames: list[np.ndarray], spec: PrepareSpec) -> tuple[np.ndarray, np.ndarray]:
    """(T, 68, 2) landmarks and a (T,) found-mask; frames without a box reuse the last box."""
    import dlib

    from ..media.face import detect_faces, landmark_model_path

    predictor = dlib.shape_predictor(str(landmark_model_path()))
    marks = np.zeros((len(frames), 68, 2))
    found = np.zeros(len(frames), dtype=bool)
    box = None
    for i, rgb in enumerate(frames):
        if box is None or i % spec.detect_every == 0:
            boxes = detect_faces(rgb)
            box = boxes[0] if boxes else None
        if box is None:
            continue
        shape = predictor(np.ascontiguousarray(rgb), dlib.rectangle(*box))
        marks[i] = [(p.x, p.y) for p in shape.parts()]
        found[i] = True
    return marks, found


def _smooth(marks: np.ndarray, found: np.ndarray, n: int) -> np.ndarray:
    """Fill frames without a face from the nearest found one, then a centred moving average."""
    idx = np.flatnonzero(found)
    nearest = idx[np.abs(np.arange(len(marks))[:, None] - idx[None]).argmin(axis=1)]
    filled = marks[nearest]
    if n <= 1:
        return filled
    pad = np.concatenate([filled[:1].repeat(n // 2, 0), filled, filled[-1:].repeat(n - 1 - n // 2, 0)])
    c = np.cumsum(np.concatenate([np.zeros((1, 68, 2)), pad]), axis=0)
    return (c[n:] - c[:-n]) / n


def speaker_of(path: Path, src: Path) -> str:
    """CREMA-D names start with the actor number ("1001_DFA_ANG_XX"); otherwise (GRID) the
    speaker is the folder the video is in, relative to the source."""
    head = path.stem.split("_")[0]
    if head.isdigit() and "_" in path.stem:
        return head
    return path.parent.relative_to(src).as_posix()


def _audio_for(path: Path, wavs: dict[str, Path], embedded: np.ndarray | None, rate: int, out_rate: int) -> np.ndarray:
    from ..media.audio import load_audio, resample

    if embedded is not None and len(embedded):
        return resample(embedded, rate, out_rate)
    wav = path.with_suffix(".wav") if path.with_suffix(".wav").is_file() else wavs.get(path.stem)
    if wav is None:
        raise ClipSkipped(f"no audio: the video has no sound and no '{path.stem}.wav' was found beside it or under the source")
    return load_audio(str(wav), None, out_rate)


def _prepare_clip(path: Path, wavs: dict[str, Path], spec: PrepareSpec, mean_face: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from ..errors import AudioDecodeError
    from ..media.face import ALIGN_POINTS, similarity_transform, warp_affine

    frames, times, embedded, rate = decode_video(path)
    try:
        audio = _audio_for(path, wavs, embedded, rate, spec.audio_rate)
    except AudioDecodeError as exc:
        raise ClipSkipped(f"unreadable audio ({exc})") from None
    stride = int(round(spec.audio_rate / spec.fps))
    duration = min(len(audio) / spec.audio_rate, times[-1] + 1.0 / spec.fps)
    t = int(duration * spec.fps)
    if t < 2:
        raise ClipSkipped(f"too short ({duration:.2f} s)")
    # the source frame shown at each target frame time
    pick = np.clip(np.searchsorted(times, np.arange(t) / spec.fps + 1e-6, side="right") - 1, 0, len(frames) - 1)
    used = [frames[i] for i in pick]
    marks, found = _landmarks(used, spec)
    if not found.any():
        raise ClipSkipped("no face found in any frame")
    if 1.0 - found.mean() > spec.max_face_misses:
        raise ClipSkipped(f"no face in {100 * (1 - found.mean()):.0f}% of the frames")
    marks = _smooth(marks, found, spec.smooth)
    idx = list(ALIGN_POINTS)
    out = np.empty((t, *spec.img_size, 3), np.uint8)
    aligned = np.empty((t, 68, 2), np.float32)
    for i, (rgb, m) in enumerate(zip(used, marks)):
        mat = similarity_transform(m[idx], mean_face[idx])
        out[i] = warp_affine(rgb, mat, spec.img_size)
        aligned[i] = (m @ mat[:2, :2].T + mat[:2, 2]).astype(np.float32)
    audio = np.pad(audio[: t * stride], (0, max(0, t * stride - len(audio))))
    return out, audio.astype(np.float32), aligned


def prepare_dataset(src: str | os.PathLike[str], dst: str | os.PathLike[str], spec: PrepareSpec,
                    progress: Callable[[str], None] | None = print) -> PrepareReport:
    """Convert every video under ``src``; returns what was written and what was skipped."""
    from .synth.faces import canonical_landmarks

    src, dst = Path(src), Path(dst)
    if not src.is_dir():
        raise RealtimeSDAError(f"source folder '{src}' does not exist")
    videos = find_videos(src)
    if not videos:
        raise RealtimeSDAError(f"no videos ({', '.join(VIDEO_EXTENSIONS)}) under '{src}'")
    mean_face = np.asarray(spec.mean_face if spec.mean_face is not None else canonical_landmarks(spec.img_size))
    writer = DatasetWriter(dst, spec.img_size, spec.audio_rate, spec.fps, mean_face)
    wavs = {p.stem: p for p in sorted(src.rglob("*.wav"))}
    speakers = sorted({speaker_of(v, src) for v in videos})
    n_test = int(round(len(speakers) * spec.test_fraction)) if len(speakers) > 1 else 0
    test_speakers = set(speakers[len(speakers) - n_test :])
    report = PrepareReport()
    for k, path in enumerate(videos):
        rel = str(path.relative_to(src))
        try:
            frames, audio, marks = _prepare_clip(path, wavs, spec, mean_face)
        except ClipSkipped as exc:
            report.skipped.append((rel, str(exc)))
            if progress:
                progress(f"skipped {rel}: {exc}")
            continue
        speaker = speaker_of(path, src)
        info = ClipInfo(id=f"v{k:05d}_{path.stem}"[:80], frames=len(frames), samples=len(audio), rate=spec.audio_rate,
                        fps=spec.fps, identity=speaker, speaker=speaker,
                        split="test" if speaker in test_speakers else "train", text="")
        writer.add(info, frames, audio, marks)
        report.written.append(rel)
        if progress:
            progress(f"ok {rel}: {len(frames)} frames")
    lines = [f"{name}\t{why}" for name, why in report.skipped]
    (dst / "skipped.txt").write_text("".join(line + "\n" for line in lines))
    return report
