"""The offline API of the original library, same names and meanings: ``VideoAnimator`` turns
a still face and a speech clip into a video, and ``get_audio_feature_extractor`` gives the
audio encoder.

Better behaviour than the original: frames are generated in time chunks carrying the GRU
states and converted to uint8 as they come, so memory stays flat for long clips; any common
audio format, dtype and channel count is accepted; noise is seeded per frame
(:class:`~realtime_sda.core.noise.NoiseSource`), so the same seed gives the same video here and in
a live stream.
"""

from __future__ import annotations

import os
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np
import torch

from .checkpoints.loading import load_model, resolve_device
from .checkpoints.registry import default_model_name
from .core.engine import default_inference_dtype
from .core.noise import NoiseSource
from .errors import RealtimeSDAError
from .media.audio import RatedAudio, audio_rate_of, load_audio, to_int16, window_segments
from .media.face import prepare_still
from .media.heap import release_memory
from .media.image import frames_to_uint8
from .media.video import save_video

if TYPE_CHECKING:
    from .photo.render import PhotoRenderer

__all__ = ["VideoAnimator", "Animation", "get_audio_feature_extractor"]


@dataclass
class Animation:
    """A prepared animation: iterate it for uint8 frame chunks (t, 3, H, W), in order.

    ``audio`` is the model-rate signal as int16 (n, 1), as the original returned it (a
    :class:`~realtime_sda.media.audio.RatedAudio`: ``audio.rate`` is the model's rate);
    ``size`` the frames' (H, W): the model's crop, or the photo's with ``full_frame``.
    """

    num_frames: int
    audio: np.ndarray
    _chunks: Iterator[torch.Tensor] = field(repr=False)
    size: tuple[int, int] = (0, 0)
    renderer: "PhotoRenderer | None" = field(default=None, repr=False)

    def __iter__(self) -> Iterator[np.ndarray]:
        for frames in self._chunks:
            crops = frames_to_uint8(frames[0])
            if self.renderer is None:
                yield crops
            else:
                full = [self.renderer(np.ascontiguousarray(c.transpose(1, 2, 0))) for c in crops]
                yield np.stack(full).transpose(0, 3, 1, 2)

    def __len__(self) -> int:
        return self.num_frames


class VideoAnimator:
    """Speech-driven animation of one still face, offline.

    ``model_path``: a model name (``grid``, ``timit``, ``crema``, ``default``) or a checkpoint
    path; when left out, ``"grid"`` if ``grid.dat`` is installed (the original library's
    default), else ``"default"`` (the model this project ships), as for
    :func:`get_audio_feature_extractor`. ``gpu``: CUDA device index, -1 for CPU (the original's meaning), ``None`` for CUDA
    when present; ``device`` (e.g. ``"cuda:1"``) wins when given. ``chunk_frames``: frames
    generated per step. ``precision``: ``"float32"`` (default), ``"bfloat16"`` or
    ``"auto"`` (bfloat16 where the CPU computes it natively: about 2x faster there, frames
    within about one uint8 level of float32's).
    """

    def __init__(
        self,
        model_path: str | os.PathLike[str] | None = None,
        gpu: int | None = -1,
        device: str | torch.device | None = None,
        chunk_frames: int = 16,
        precision: str | None = None,
    ) -> None:
        if int(chunk_frames) < 1:
            raise ValueError(f"chunk_frames must be at least 1, got {chunk_frames}")
        self.device = resolve_device(device, gpu)
        dtype = default_inference_dtype(self.device, precision)  # a bad precision fails before loading
        self.model = load_model(default_model_name() if model_path is None else model_path, device=self.device)
        self.model.set_inference_dtype(dtype)
        #: the generator's dtype (``precision``: float32, bfloat16 or auto; see
        #: :func:`~realtime_sda.core.engine.default_inference_dtype`)
        self.dtype = dtype
        cfg = self.model.config
        self.config = cfg
        self.img_size = cfg.img_size
        self.audio_rate = cfg.audio_rate
        self.video_rate = cfg.video_rate
        self.chunk_frames = int(chunk_frames)

    def animate(
        self,
        img: Any,
        audio: Any,
        fs: int | None = None,
        aligned: bool = False,
        seed: int | None = None,
        full_frame: bool = False,
        face: int = 0,
        size: int | None = None,
    ) -> Animation:
        """Prepare the still and the audio, and return the frames as a lazy chunk iterator.

        ``full_frame=True``: frames are the whole photo (long side ``size``, default the
        photo's, at most 1280), the face ``face`` (0 = largest) moving as the model's does;
        otherwise the model's aligned crop, as the original library returned.

        Raises :class:`~realtime_sda.errors.FaceNotFoundError`,
        :class:`~realtime_sda.errors.AudioDecodeError` or
        :class:`~realtime_sda.errors.ImageDecodeError` on bad input, before any frame is made.
        """
        cfg = self.config
        signal = load_audio(audio, fs, cfg.audio_rate)
        segments = deque(window_segments(signal, cfg))  # strided views: no per-frame copy
        renderer = None
        if full_frame:
            if aligned:
                raise RealtimeSDAError("full_frame animates a whole photo; aligned=True is for the model's crop only (drop one)")
            from .photo import photo_renderer

            renderer, still = photo_renderer(self.model, img, face=face, size=size)
            out_size = renderer.size
        else:
            still = prepare_still(img, cfg, aligned=aligned)
            out_size = tuple(cfg.img_size)
        total = sum(len(seg) for seg in segments)
        job = Animation(total, RatedAudio(to_int16(signal), cfg.audio_rate), self._generate(still, segments, seed), out_size, renderer)
        del signal
        release_memory()  # an offline clip's audio temporaries, before the video grows
        return job

    def _generate(
        self, still: torch.Tensor, segments: "deque[torch.Tensor]", seed: int | None
    ) -> Iterator[torch.Tensor]:
        """Frames (1, t, 3, H, W) chunk by chunk through the step protocol, carrying the state;
        each audio segment is dropped once its frames are made, so memory stays flat."""
        model = self.model
        state = model.init_state(still.to(model.device))
        noise = NoiseSource(self.config.aux_latent, seed)  # same values however it is chunked
        while segments:
            windows = segments.popleft()
            for start in range(0, len(windows), self.chunk_frames):
                block = windows[start : start + self.chunk_frames]
                frames, state = model.forward_chunk(state, block[None], noise.next(len(block))[None])
                yield frames

    def __call__(
        self,
        img: Any,
        audio: Any,
        fs: int | None = None,
        aligned: bool = False,
        seed: int | None = None,
        progress: bool = False,
        full_frame: bool = False,
        face: int = 0,
        size: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """-> (video uint8 (T, 3, H, W), audio int16 (n, 1) at the model's rate).

        (H, W) is the model's aligned crop, as in the original; ``full_frame=True`` gives the
        whole photo instead (see :meth:`animate`).

        Frames map [-1, 1] to ``round(127.5 * (x + 1))`` (the original returned the float
        ``125 * x + 125``; see :mod:`realtime_sda.media.image`). ``fs`` is required for arrays.
        """
        job = self.animate(img, audio, fs=fs, aligned=aligned, seed=seed, full_frame=full_frame, face=face, size=size)
        h, w = job.size
        video = np.empty((job.num_frames, 3, h, w), dtype=np.uint8)
        bar = _progress(job.num_frames) if progress else None
        pos = 0
        try:
            for chunk in job:
                video[pos : pos + len(chunk)] = chunk
                pos += len(chunk)
                if bar is not None:
                    bar.update(len(chunk))
        finally:
            if bar is not None:
                bar.close()
        return video, job.audio

    def save_video(
        self, video: Any, audio: Any, path: str | os.PathLike[str], scale: float | None = None
    ) -> Path:
        """Write an MP4 (H.264 + AAC) at this model's frame rate; the audio at the rate it
        carries (see :class:`Animation`), else this model's."""
        rate = audio_rate_of(audio) or self.audio_rate
        return save_video(video, audio, path, scale, video_rate=self.video_rate, audio_rate=rate)


def _progress(total: int) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, unit="frame", desc="animating", dynamic_ncols=True)


def get_audio_feature_extractor(
    model_path: str | os.PathLike[str] | None = None, gpu: int = -1, device: str | torch.device | None = None
) -> tuple[torch.nn.Module, dict[str, float]]:
    """The model's audio encoder (eval mode) and its windowing parameters.

    ``model_path`` left out: the same default as :class:`VideoAnimator` (``"grid"`` if
    installed, else ``"default"``).

    Returns ``(encoder, info)``; ``encoder(windows (B, T, feat))`` gives per-frame content codes
    and the GRU state. ``info``: ``"rate"`` (Hz), ``"feature length"`` (seconds) and
    ``"overlap"`` (seconds, feature length - 1 / video rate), the arguments of
    :func:`~realtime_sda.media.audio.cut_audio_sequence`.
    """
    model = load_model(default_model_name() if model_path is None else model_path, device=resolve_device(device, gpu))
    cfg = model.config
    info = {
        "rate": cfg.audio_rate,
        "feature length": cfg.audio_feat_len,
        "overlap": cfg.audio_feat_len - 1.0 / float(cfg.video_rate),
    }
    return model.encoder.eval(), info
