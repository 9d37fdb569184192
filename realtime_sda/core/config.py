"""The model's configuration: the values stored in every checkpoint, and the layer sizes
derived from them (all sizes come from these values; none is hard-coded)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

__all__ = [
    "SDAConfig",
    "AudioEncoderLayout",
    "same_padding",
    "prime_factors",
    "NOISE_STD",
    "ORIGINAL_KEYS",
    "EXTENSION_KEYS",
]

#: Standard deviation of the per-frame noise fed to the noise GRU (the original's N(0, 0.33)).
NOISE_STD = 0.33

def same_padding(n: int, stride: int, kernel: int) -> int:
    """Total "same" padding ``P = (ceil(n/s) - 1) * s + k - n`` (never negative)."""
    return max((math.ceil(n / stride) - 1) * stride + kernel - n, 0)


def prime_factors(n: int) -> list[int]:
    """Prime factors of ``n`` in increasing order, with repetition."""
    out, p = [], 2
    while p * p <= n:
        while n % p == 0:
            out.append(p)
            n //= p
        p += 1
    if n > 1:
        out.append(n)
    return out


@dataclass(frozen=True)
class AudioEncoderLayout:
    """Kernels, strides, paddings and channels of the audio frame encoder's convolutions."""

    kernels: tuple[int, ...]
    strides: tuple[int, ...]
    paddings: tuple[int, ...]
    channels: tuple[int, ...]  # output channels of each conv, the last is aud_enc_dim


@dataclass
class SDAConfig:
    """Hyper-parameters of one checkpoint (the original file's top-level values).

    ``width`` is this project's extension: a multiplier on the convolution channel counts
    (1.0 is the original layout). It is stored in our checkpoints only when it is not 1.
    """

    img_size: tuple[int, int] = (128, 96)
    audio_rate: int = 50000
    video_rate: float = 25
    audio_feat_len: float = 0.2
    audio_feat_samples: int = 10000
    id_enc_dim: int = 128
    rnn_gen_dim: int = 256
    aud_enc_dim: int = 256
    aux_latent: int = 10
    sequential_noise: bool = True
    mean_face: np.ndarray = field(default_factory=lambda: np.zeros((68, 2)), repr=False)
    width: float = 1.0

    def __post_init__(self) -> None:
        self.img_size = (int(self.img_size[0]), int(self.img_size[1]))
        self.audio_rate = int(self.audio_rate)
        self.audio_feat_samples = int(self.audio_feat_samples)
        for name in ("id_enc_dim", "rnn_gen_dim", "aud_enc_dim", "aux_latent"):
            setattr(self, name, int(getattr(self, name)))
        self.sequential_noise = bool(self.sequential_noise)
        self.mean_face = np.asarray(self.mean_face, dtype=np.float64)
        stride = self.audio_rate / float(self.video_rate)
        if abs(stride - round(stride)) > 1e-6:
            raise ValueError(
                f"audio_rate / video_rate = {stride} is not a whole number of samples"
            )

    # ---- audio windows -------------------------------------------------------------------
    @property
    def stride(self) -> int:
        """Audio samples between consecutive video frames (GRID: 2000)."""
        return int(round(self.audio_rate / float(self.video_rate)))

    @property
    def pad_left(self) -> int:
        """Zeros before the first sample so that frame i's window is centred on frame i."""
        return (self.audio_feat_samples - self.stride) // 2

    @property
    def pad_right(self) -> int:
        return self.audio_feat_samples - self.stride - self.pad_left

    @property
    def lookahead_samples(self) -> int:
        """Audio a frame needs past its own end: the model's minimum latency (GRID 4000)."""
        return self.pad_right

    def num_frames(self, num_samples: int) -> int:
        """Frames made from ``num_samples`` of audio: ``(n + pad - feat) // stride + 1``."""
        pad = self.audio_feat_samples - self.stride
        if num_samples + pad < self.audio_feat_samples:
            return 0
        return (num_samples + pad - self.audio_feat_samples) // self.stride + 1

    # ---- layer sizes ---------------------------------------------------------------------
    def channels(self, base: int) -> int:
        return max(1, int(round(base * self.width)))

    def audio_layout(self) -> AudioEncoderLayout:
        """The audio frame encoder's conv layout, derived from the rates as the original does: a
        first layer of 5 ms kernels at 1 ms strides, then one layer per prime factor of the length."""
        k0 = int(round(0.005 * self.audio_rate))
        s0 = int(round(0.001 * self.audio_rate))
        n = self.audio_feat_samples
        kernels, strides, paddings = [k0], [s0], [math.ceil(same_padding(n, s0, k0) / 2)]
        length = math.ceil(n / s0)
        factors = prime_factors(length)
        if len(factors) < 2:
            raise ValueError(f"audio window of {length} steps cannot be encoded (prime length)")
        for s in factors[:-1]:
            k = 2 * s
            kernels.append(k)
            strides.append(s)
            paddings.append(math.ceil(same_padding(length, s, k) / 2))
            length = math.ceil(length / s)
        kernels.append(length)
        strides.append(1)
        paddings.append(0)
        chans = [self.channels(16 * 2**i) for i in range(len(factors))] + [self.aud_enc_dim]
        return AudioEncoderLayout(tuple(kernels), tuple(strides), tuple(paddings), tuple(chans))

    def image_sizes(self) -> list[tuple[int, int]]:
        """Spatial sizes after each identity-encoder block (GRID: 64x48 ... 4x3)."""
        h, w = self.img_size
        sizes = []
        for _ in range(5):
            h, w = (h + 2 - 4) // 2 + 1, (w + 2 - 4) // 2 + 1
            sizes.append((h, w))
        return sizes

    def image_channels(self) -> list[int]:
        """Channels of the identity-encoder blocks (GRID: 64, 128, 256, 512, 1024)."""
        return [self.channels(64 * 2**i) for i in range(5)]

    @property
    def latent_dim(self) -> int:
        return self.rnn_gen_dim + self.aux_latent + self.id_enc_dim

    # ---- (de)serialisation ---------------------------------------------------------------
    def to_checkpoint(self) -> dict[str, Any]:
        """The top-level values as the original files hold them (``width`` only when not 1)."""
        out: dict[str, Any] = {name: getattr(self, name) for name in ORIGINAL_KEYS}
        out["mean_face"] = np.asarray(self.mean_face, dtype=np.float64)
        out["img_size"] = tuple(self.img_size)
        if self.width != 1.0:
            out["width"] = float(self.width)
        return out

    @classmethod
    def from_checkpoint(cls, ckpt: dict[str, Any]) -> "SDAConfig":
        """Read the config from a checkpoint dict; raises ``KeyError`` naming missing keys."""
        missing = [k for k in ORIGINAL_KEYS if k not in ckpt]
        if missing:
            raise KeyError(", ".join(missing))
        stored = {name: ckpt[name] for name in ORIGINAL_KEYS}
        stored.update({name: ckpt[name] for name in EXTENSION_KEYS if name in ckpt})
        return cls(**{name: _from_stored(name, value) for name, value in stored.items()})


#: SDAConfig fields that are this project's extensions (absent from the original files).
EXTENSION_KEYS = ("width",)

#: Top-level scalar keys every original checkpoint holds (besides the three state dicts):
#: every SDAConfig field but the extensions.
ORIGINAL_KEYS = tuple(f.name for f in fields(SDAConfig) if f.name not in EXTENSION_KEYS)


def _from_stored(name: str, value: Any) -> Any:
    """A checkpoint's value (numpy/torch scalars, lists) as the SDAConfig field takes it."""
    if name == "mean_face":
        return np.asarray(value, dtype=np.float64)
    if name == "img_size":
        return tuple(int(_scalar(v)) for v in value)
    value = _scalar(value)
    return float(value) if name in ("audio_feat_len", "width") else value


def _scalar(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value
