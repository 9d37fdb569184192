"""Writing talking-face videos: MP4 with H.264 video (libx264, yuv420p) and AAC audio, through
PyAV (no ffmpeg command line).

Frames may be written chunk by chunk (:class:`VideoWriter`), so a long clip never has to be
held in memory; :func:`save_video` writes a whole (T, 3, H, W) array at once. Both, and the
live recorder (``streaming.sinks.RecorderSink``), encode through one :class:`Mp4Muxer`.
"""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import RealtimeSDAError
from .audio import audio_rate_of, resample, to_float_mono

__all__ = ["AAC_RATE", "DEFAULT_CRF", "Mp4Muxer", "VideoWriter", "save_video", "even_size"]

#: Sample rate of the AAC track (the model rate, e.g. 50 kHz, is not one AAC supports).
AAC_RATE = 48000
_AUDIO_BLOCK = 4800
#: x264 quality (lower is better): 15 keeps a photo's face detail in frames where the mouth
#: moves (its Laplacian sharpness 0.57 of the photo's at 18, 0.62 at 15, on one portrait)
DEFAULT_CRF = 15


def even_size(height: int, width: int, scale: float | None = None) -> tuple[int, int]:
    """The encoded (H, W): scaled by ``scale`` and rounded up to even numbers (yuv420p)."""
    if scale is not None:
        if not scale > 0:
            raise RealtimeSDAError(f"scale must be a positive number, got {scale}")
        height, width = int(round(height * scale)), int(round(width * scale))
    return max(2, height + height % 2), max(2, width + width % 2)


def _as_hwc_uint8(frames: Any) -> np.ndarray:
    """(T, 3, H, W) or (T, H, W, 3) frames, uint8 or float 0-255 -> (T, H, W, 3) uint8."""
    if isinstance(frames, torch.Tensor):
        frames = frames.detach().cpu().numpy()
    arr = np.asarray(frames)
    if arr.ndim != 4 or (arr.shape[1] != 3 and arr.shape[3] != 3):
        raise RealtimeSDAError(f"video must be (T, 3, H, W) or (T, H, W, 3), got shape {arr.shape}")
    if arr.shape[1] == 3 and arr.shape[3] != 3:
        arr = arr.transpose(0, 2, 3, 1)
    if arr.dtype != np.uint8:
        if not np.issubdtype(arr.dtype, np.floating) and not np.issubdtype(arr.dtype, np.integer):
            raise RealtimeSDAError(f"video frames of dtype {arr.dtype} are not supported; use uint8")
        arr = np.clip(np.round(arr), 0, 255).astype(np.uint8)  # e.g. the original's 125x+125
    return arr


class Mp4Muxer:
    """An open MP4 file with an H.264 track (yuv420p, ``size`` (H, W), even) and optionally a
    mono AAC track at :data:`AAC_RATE`. Video frames carry their frame index as pts; audio
    blocks are laid end to end. The one place that knows PyAV's encoding calls."""

    def __init__(self, path: str | os.PathLike[str], video_rate: float, size: tuple[int, int], audio: bool,
                 crf: int = DEFAULT_CRF) -> None:
        import av

        self.path = Path(path)
        if self.path.suffix.lower() not in (".mp4", ".m4v", ".mov"):
            raise RealtimeSDAError(f"'{self.path}': give an output file ending in .mp4")
        self.rate = Fraction(video_rate).limit_denominator(1001)
        self.size = (int(size[0]), int(size[1]))
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._container = av.open(str(self.path), mode="w")
        except (OSError, av.FFmpegError) as exc:
            raise RealtimeSDAError(f"cannot write '{self.path}': {exc}") from None
        try:
            self._video = self._container.add_stream("libx264", rate=self.rate)
            self._video.height, self._video.width = self.size
            self._video.pix_fmt = "yuv420p"
            self._video.options = {"crf": str(crf), "preset": "veryfast"}
            self._audio = self._container.add_stream("aac", rate=AAC_RATE, layout="mono") if audio else None
        except Exception:
            self._container.close()
            raise
        self.audio_samples = 0  # AAC-rate samples encoded so far
        self._closed = False

    @property
    def has_audio(self) -> bool:
        return self._audio is not None

    @property
    def closed(self) -> bool:
        return self._closed

    def video(self, frame: np.ndarray, index: int) -> None:
        """Encode one (H, W, 3) uint8 frame of ``size`` shown at ``index / video_rate``."""
        import av

        vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
        vf.pts = int(index)
        vf.time_base = 1 / self.rate
        for packet in self._video.encode(vf):
            self._container.mux(packet)

    def audio(self, samples: np.ndarray) -> None:
        """Encode float mono samples at :data:`AAC_RATE`, following those already written."""
        import av

        if self._audio is None or samples.size == 0:
            return
        for lo in range(0, samples.size, _AUDIO_BLOCK):
            block = np.ascontiguousarray(samples[lo : lo + _AUDIO_BLOCK], np.float32)
            frame = av.AudioFrame.from_ndarray(block[None, :], format="flt", layout="mono")
            frame.sample_rate = AAC_RATE
            frame.pts = self.audio_samples
            frame.time_base = Fraction(1, AAC_RATE)
            for packet in self._audio.encode(frame):
                self._container.mux(packet)
            self.audio_samples += block.size

    def close(self) -> Path:
        """Flush both encoders and finish the file (idempotent)."""
        if self._closed:
            return self.path
        self._closed = True
        try:
            for stream in (self._audio, self._video):
                if stream is not None:
                    for packet in stream.encode(None):
                        self._container.mux(packet)
        finally:
            self._container.close()
        return self.path


class VideoWriter:
    """An MP4 file being written: H.264 frames at ``video_rate``, optional AAC audio track.

    ``audio`` (the whole track, int16/float, (n,) or (n, 1), at ``audio_rate``) is given up
    front and interleaved with the frames as they arrive. Use as a context manager.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        video_rate: float,
        frame_size: tuple[int, int],
        audio: Any = None,
        audio_rate: int | None = None,
        scale: float | None = None,
        crf: int = DEFAULT_CRF,
    ) -> None:
        self.path = Path(path)
        self.src_size = (int(frame_size[0]), int(frame_size[1]))
        self.size = even_size(*self.src_size, scale)
        self._audio: np.ndarray | None = None
        if audio is not None:
            if audio_rate is None:
                raise RealtimeSDAError("audio_rate is needed to write an audio track")
            self._audio = resample(to_float_mono(audio), int(audio_rate), AAC_RATE)
        self._mux = Mp4Muxer(self.path, video_rate, self.size, audio=self._audio is not None, crf=crf)
        self.rate = self._mux.rate
        self.frames_written = 0

    def _fit(self, frame: np.ndarray) -> np.ndarray:
        if frame.shape[:2] == self.size:
            return frame
        from PIL import Image

        h, w = self.size
        sh, sw = self.src_size
        if (h, w) == (sh + sh % 2, sw + sw % 2):  # odd size: repeat the last row/column
            return np.pad(frame, ((0, h - sh), (0, w - sw), (0, 0)), mode="edge")
        return np.asarray(Image.fromarray(frame).resize((w, h), Image.Resampling.BICUBIC))

    def _write_audio_until(self, stop: int) -> None:
        assert self._audio is not None
        stop = min(stop, len(self._audio))
        if stop > self._mux.audio_samples:
            self._mux.audio(self._audio[self._mux.audio_samples : stop])

    def write(self, frames: Any) -> None:
        """Append frames: (t, 3, H, W) or (t, H, W, 3), uint8 (float taken as 0-255)."""
        chunk = _as_hwc_uint8(frames)
        if chunk.shape[1:3] != self.src_size:
            raise RealtimeSDAError(f"frames are {chunk.shape[1:3]}, this writer was opened for {self.src_size}")
        for frame in chunk:
            self._mux.video(self._fit(frame), self.frames_written)
            self.frames_written += 1
            if self._audio is not None:
                self._write_audio_until(int(round(self.frames_written / self.rate * AAC_RATE)))

    def close(self) -> Path:
        """Write the rest of the audio, flush the encoders and finish the file."""
        try:
            if self._audio is not None and not self._mux.closed:
                self._write_audio_until(len(self._audio))
        finally:
            self._mux.close()
        return self.path

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def save_video(
    video: Any,
    audio: Any,
    path: str | os.PathLike[str],
    scale: float | None = None,
    *,
    video_rate: float = 25.0,
    audio_rate: int | None = None,
) -> Path:
    """Write ``video`` (T, 3, H, W) uint8 and ``audio`` (n, 1) int16 to an MP4 file.

    ``audio_rate`` is the audio's sample rate in Hz. It may be left out for the audio
    ``VideoAnimator`` returns, which carries its rate (:class:`~realtime_sda.media.audio.RatedAudio`);
    for any other array it is required (an error says so; the rate is never guessed).
    ``video_rate`` defaults to the published models' 25 fps (``VideoAnimator.save_video``
    passes its model's rates). ``audio`` may be ``None`` for a silent video; ``scale``
    enlarges the frames (bicubic). Returns the path written.
    """
    frames = _as_hwc_uint8(video)
    if len(frames) == 0:
        raise RealtimeSDAError("the video has no frames to write")
    if audio is not None:
        carried = audio_rate_of(audio)
        if audio_rate is None:
            if carried is None:
                raise RealtimeSDAError(
                    "save_video needs the audio's sample rate: pass audio_rate=... (e.g. "
                    "audio_rate=animator.audio_rate), or use VideoAnimator.save_video"
                )
            audio_rate = carried
        elif carried is not None and int(audio_rate) != carried:
            raise RealtimeSDAError(
                f"audio_rate={audio_rate} disagrees with the {carried} Hz the audio carries; leave audio_rate out"
            )
    with VideoWriter(path, video_rate, frames.shape[1:3], audio, audio_rate, scale) as writer:
        writer.write(frames)
    return writer.path
