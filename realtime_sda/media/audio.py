"""Audio input: decoding (PyAV), sample-format conversion, downmix, resampling (soxr), and
cutting the signal into the model's per-frame windows.

Conventions (documented choices):

- Integer samples are divided by the dtype's maximum (``np.iinfo(dtype).max``), as the
  original library did; unsigned 8-bit audio (the WAV convention) is centred on 128 first.
  Float samples are used as they are (the original crashed on them).
- Multi-channel audio is **averaged** to mono. The original took the first channel, which
  loses a voice panned to the right or recorded on the second microphone; averaging keeps
  every channel's speech (pass ``audio[:, 0]`` to reproduce the original exactly).
- Windows are a strided view of the zero-padded signal, so cutting a 10-minute clip costs
  one padded copy of the signal, not one copy per frame.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Union

import numpy as np
import torch

from ..errors import AudioDecodeError

if TYPE_CHECKING:
    from ..core.config import SDAConfig

__all__ = [
    "AudioInput",
    "iter_decoded_audio",
    "decode_audio",
    "to_float_mono",
    "resample",
    "load_audio",
    "pad_signal",
    "audio_windows",
    "window_segments",
    "SEGMENT_BYTES",
    "cut_audio_sequence",
    "to_int16",
    "RatedAudio",
    "audio_rate_of",
]

#: A file path, or an array of samples (n,) or (n, channels).
AudioInput = Union[str, "os.PathLike[str]", np.ndarray, torch.Tensor]


def iter_decoded_audio(path: str | os.PathLike[str]) -> Iterator[tuple[np.ndarray, int]]:
    """Decode the first audio stream of any file FFmpeg reads (wav, flac, mp3, ogg, m4a...),
    incrementally -> (float32 samples (n, channels), sample rate) blocks as FFmpeg hands them
    out. Every way of reading audio files goes through here (one set of checks and errors)."""
    import av  # a core dependency; imported here to keep ``import realtime_sda`` light

    path = Path(path)
    if not path.is_file():
        raise AudioDecodeError(f"audio file '{path}' does not exist.")
    if path.stat().st_size == 0:
        raise AudioDecodeError(f"audio file '{path}' is empty (0 bytes); give a file with sound in it.")
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise AudioDecodeError(f"'{path}' has no audio stream; give a file with sound in it.")
            resampler = None
            for frame in container.decode(container.streams.audio[0]):
                if resampler is None:  # planar float in the file's own layout and rate
                    rate = int(frame.sample_rate)
                    resampler = av.AudioResampler(format="fltp", layout=frame.layout.name, rate=rate)
                for out in resampler.resample(frame):
                    yield out.to_ndarray().T.astype(np.float32, copy=False), rate
            if resampler is not None:
                for out in resampler.resample(None):
                    yield out.to_ndarray().T.astype(np.float32, copy=False), rate
    except AudioDecodeError:
        raise
    except (av.FFmpegError, ValueError, OSError) as exc:
        raise AudioDecodeError(
            f"could not decode audio from '{path}' ({type(exc).__name__}: {_reason(exc)}). Give a "
            "wav, flac, mp3, ogg or m4a file, or pass the samples as an array with fs=..."
        ) from None


def decode_audio(path: str | os.PathLike[str]) -> tuple[np.ndarray, int]:
    """The whole first audio stream of a file (:func:`iter_decoded_audio`) -> (float32
    samples (n, channels), sample rate)."""
    chunks: list[np.ndarray] = []
    rate = 0
    for block, block_rate in iter_decoded_audio(path):
        chunks.append(block)
        rate = block_rate
    if not chunks or rate <= 0:
        raise AudioDecodeError(f"'{path}' holds no audio samples; give a file with sound in it.")
    return np.concatenate(chunks, axis=0), int(rate)


def _reason(exc: Exception) -> str:
    """FFmpeg's own words for a decoding error, without PyAV's errno and path decoration."""
    return str(getattr(exc, "strerror", None) or exc)


def to_float_mono(samples: np.ndarray | torch.Tensor) -> np.ndarray:
    """Samples (n,) or (n, channels) of any int/float dtype -> float32 mono (n,).

    Integers are divided by the dtype's maximum; channels are averaged (see module notes).
    """
    if isinstance(samples, torch.Tensor):
        samples = samples.detach().cpu().numpy()
    arr = np.asarray(samples)
    if arr.ndim == 2 and arr.shape[0] <= 8 and arr.shape[1] > 64:
        raise AudioDecodeError(
            f"audio array of shape {arr.shape} looks channels-first; pass it as (samples, "
            "channels), e.g. audio.T"
        )
    if arr.ndim not in (1, 2):
        raise AudioDecodeError(f"audio must be (samples,) or (samples, channels), got shape {arr.shape}")
    if arr.dtype == np.uint8:
        out = (arr.astype(np.float32) - 128.0) / 127.0
    elif np.issubdtype(arr.dtype, np.signedinteger):
        out = arr.astype(np.float32) / np.float32(np.iinfo(arr.dtype).max)
    elif np.issubdtype(arr.dtype, np.floating):
        out = arr.astype(np.float32, copy=False)
    else:
        raise AudioDecodeError(
            f"audio samples of dtype {arr.dtype} are not supported; use int16, int32, float32 or float64"
        )
    if out.ndim == 2:
        out = out[:, 0] if out.shape[1] == 1 else out.mean(axis=1, dtype=np.float32)
    if not np.isfinite(out).all():
        raise AudioDecodeError("audio holds NaN or infinite samples; clean the signal first")
    return np.ascontiguousarray(out, dtype=np.float32)


def resample(signal: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """Resample float32 mono audio with soxr (high quality); a no-op when the rates match."""
    if int(rate_in) == int(rate_out):
        return signal
    import soxr

    return soxr.resample(signal, int(rate_in), int(rate_out), quality="HQ").astype(np.float32, copy=False)


def load_audio(audio: Any, fs: int | None, rate: int) -> np.ndarray:
    """A path or an array (with ``fs``) -> float32 mono samples at ``rate``.

    Raises :class:`AudioDecodeError` for unreadable input, a missing ``fs`` for an array,
    or empty audio.
    """
    samples: np.ndarray | torch.Tensor
    if isinstance(audio, (str, os.PathLike)):
        samples, fs_file = decode_audio(audio)
        if fs is not None and int(fs) != fs_file:
            raise AudioDecodeError(
                f"fs={fs} was given for the file '{audio}', which is at {fs_file} Hz; leave fs "
                "out for files (their rate is read from the file)."
            )
        fs = fs_file
    elif isinstance(audio, (np.ndarray, torch.Tensor, list, tuple)):
        if fs is None:
            raise AudioDecodeError(
                "audio was given as an array without its sample rate: pass fs=<rate in Hz>, "
                "e.g. va(img, samples, fs=16000)."
            )
        samples = audio if isinstance(audio, (np.ndarray, torch.Tensor)) else np.asarray(audio)
    else:
        raise AudioDecodeError(
            f"audio must be a file path or an array of samples, not {type(audio).__name__}"
        )
    if int(fs) <= 0:
        raise AudioDecodeError(f"sample rate fs must be positive, got {fs}")
    mono = to_float_mono(samples)
    if mono.size == 0:
        raise AudioDecodeError("the audio is empty: give at least one video frame's worth of sound")
    return resample(mono, int(fs), rate)


def pad_signal(signal: np.ndarray | torch.Tensor, pad_left: int, pad_right: int) -> torch.Tensor:
    """Zero-pad a 1-D float signal on both sides (one linear-time copy)."""
    sig = torch.as_tensor(np.asarray(signal, dtype=np.float32) if not isinstance(signal, torch.Tensor) else signal)
    sig = sig.reshape(-1).to(torch.float32)
    out = torch.zeros(pad_left + sig.numel() + pad_right, dtype=torch.float32)
    out[pad_left : pad_left + sig.numel()] = sig
    return out


def _frame_count(signal: np.ndarray | torch.Tensor, config: "SDAConfig") -> int:
    """Video frames the signal makes; :class:`AudioDecodeError` if it makes none."""
    n = int(signal.shape[0]) if signal.ndim else 0
    t = config.num_frames(n)
    if t <= 0:
        raise AudioDecodeError(
            f"the audio is too short: {n} samples at {config.audio_rate} Hz make no video frame; "
            f"give at least {config.stride} samples ({1000 / float(config.video_rate):.0f} ms)."
        )
    return t


def audio_windows(signal: np.ndarray | torch.Tensor, config: "SDAConfig") -> torch.Tensor:
    """Mono signal at ``config.audio_rate`` -> (T, audio_feat_samples) windows, a strided view.

    Frame i sees samples ``i*stride - pad_left`` to ``i*stride - pad_left + feat``.
    Raises :class:`AudioDecodeError` if the audio is shorter than one video frame.
    """
    t = _frame_count(signal, config)
    padded = pad_signal(signal, config.pad_left, config.pad_right)
    return padded.unfold(0, config.audio_feat_samples, config.stride)[:t]


#: Bytes of padded audio per window segment: above glibc's largest mmap threshold (32 MiB),
#: so each segment buffer is its own mapping and goes back to the OS as soon as it is freed.
SEGMENT_BYTES = 48 << 20


def window_segments(
    signal: np.ndarray | torch.Tensor, config: "SDAConfig", frames_per_segment: int | None = None
) -> list[torch.Tensor]:
    """The windows of :func:`audio_windows`, as consecutive (t_j, feat) strided views over
    separate padded buffers of ``frames_per_segment`` frames each (default: 48 MiB of audio,
    GRID 6291 frames = 4.2 min).

    A consumer that drops each segment after use frees the audio as the video grows, so a
    long clip never holds the whole padded signal and the whole video at once.
    """
    if frames_per_segment is None:
        frames_per_segment = max(1, SEGMENT_BYTES // (4 * config.stride))
    total = _frame_count(signal, config)
    n = int(signal.shape[0])
    sig = torch.as_tensor(signal).reshape(-1)
    stride, feat, left = config.stride, config.audio_feat_samples, config.pad_left
    out = []
    for start in range(0, total, frames_per_segment):
        stop = min(start + frames_per_segment, total)
        lo = start * stride - left
        hi = (stop - 1) * stride - left + feat
        buf = torch.zeros(hi - lo, dtype=torch.float32)
        a, b = max(lo, 0), min(hi, n)
        buf[a - lo : b - lo] = sig[a:b]
        out.append(buf.unfold(0, feat, stride))
    return out


def cut_audio_sequence(
    seq: np.ndarray | torch.Tensor, feature_length: float, overlap: float, rate: float
) -> torch.Tensor:
    """The original library's window cutter, in linear time: (T, feat, 1) overlapping windows.

    ``feat = round(feature_length * rate)``, ``stride = round((feature_length - overlap) *
    rate)`` (``round``, not the original's ``int``, which truncates products such as
    0.04 * 50000 = 1999.9999... to 1999); the signal gets ``(feat - stride) // 2`` zeros on the
    left and the rest on the right, and a window starts at every stride. The result is a
    strided view of the padded signal: no per-window copy is made.
    """
    sig = seq if isinstance(seq, torch.Tensor) else torch.from_numpy(np.asarray(seq, dtype=np.float32))
    sig = sig.reshape(-1).to(torch.float32)
    feat = int(round(feature_length * rate))
    stride = int(round((feature_length - overlap) * rate))
    if feat <= 0 or stride <= 0:
        raise ValueError(f"feature_length {feature_length} and overlap {overlap} give feat={feat}, stride={stride}")
    pad = feat - stride
    padded = pad_signal(sig, pad // 2, pad - pad // 2)
    if padded.numel() < feat:
        return padded.new_zeros((0, feat, 1))
    return padded.unfold(0, feat, stride).unsqueeze(-1)


class RatedAudio(np.ndarray):
    """A numpy array of samples that knows its sample rate (``.rate``, Hz): what
    ``VideoAnimator`` returns as its audio, so that ``save_video`` needs no rate argument.
    Otherwise a plain array (views and slices keep the rate; arithmetic results too)."""

    rate: int | None

    def __new__(cls, samples: Any, rate: int) -> "RatedAudio":
        obj = np.asarray(samples).view(cls)
        obj.rate = int(rate)
        return obj

    def __array_finalize__(self, obj: Any) -> None:
        self.rate = getattr(obj, "rate", None)

    def __reduce__(self) -> Any:  # pickles as a plain array (the rate is metadata)
        return np.asarray(self).__reduce__()


def audio_rate_of(audio: Any) -> int | None:
    """The sample rate an audio array carries (:class:`RatedAudio`), else ``None``."""
    rate = getattr(audio, "rate", None)
    return int(rate) if isinstance(rate, (int, np.integer)) and rate > 0 else None


def to_int16(signal: np.ndarray) -> np.ndarray:
    """float mono in [-1, 1] -> int16 (n, 1), clipped, scaled by 32767 and rounded to the
    nearest, as the original returned its audio. The one float-to-int16 conversion of the
    package (``to_int16(x)[:, 0]`` for a flat array)."""
    signal = np.asarray(signal, dtype=np.float32).reshape(-1)
    out = np.empty((len(signal), 1), dtype=np.int16)
    block = 1 << 20  # in blocks: no full-length float temporaries for long clips
    for start in range(0, len(signal), block):
        part = np.clip(signal[start : start + block], -1.0, 1.0) * np.float32(32767.0)
        out[start : start + block, 0] = np.round(part)
    return out
