"""Image input and output conversions: any still-image input -> RGB uint8, the model's [-1, 1]
tensors, and generated frames -> uint8.

Output mapping (documented choice): a frame value x in [-1, 1] becomes
``round(127.5 * (x + 1))`` clipped to [0, 255] -- the exact inverse of the input scaling
``(p / 255 - 0.5) / 0.5``, so an unchanged pixel comes back unchanged. The original library
returned the float ``125 * x + 125`` (range [0, 250], slightly darker); ``original_scale``
reproduces that when comparing with its outputs.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Union

import numpy as np
import torch

from ..errors import ImageDecodeError, RealtimeSDAError

__all__ = [
    "ASSETS_DIR",
    "default_avatar_path",
    "ImageInput",
    "load_rgb",
    "resize_rgb",
    "to_model_input",
    "frames_to_uint8",
    "original_scale",
]

ImageInput = Union[str, "os.PathLike[str]", np.ndarray, Any]  # Any: a PIL image


def _from_array(arr: np.ndarray) -> np.ndarray:
    if arr.ndim == 3 and arr.shape[0] in (1, 3, 4) and arr.shape[2] not in (1, 3, 4):
        raise ImageDecodeError(
            f"image array of shape {arr.shape} looks channels-first; pass (height, width, "
            "channels), e.g. np.transpose(img, (1, 2, 0))"
        )
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise ImageDecodeError(
            f"image array must be (H, W), (H, W, 3) or (H, W, 4) (grayscale, RGB, RGBA), got {arr.shape}"
        )
    arr = arr[:, :, :3]  # alpha is ignored
    if arr.dtype == np.uint8:
        return np.ascontiguousarray(arr)
    if arr.dtype == np.uint16:
        return np.round(arr / 257.0).astype(np.uint8)
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8) * 255
    if np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all():
            raise ImageDecodeError("image holds NaN or infinite values")
        lo, hi = float(arr.min()), float(arr.max())
        if lo < -1e-3 or hi > 1.0 + 1e-3:
            raise ImageDecodeError(
                f"float images must hold values in [0, 1]; this one spans [{lo:.3g}, {hi:.3g}]. "
                "Divide 0-255 images by 255 (or pass them as uint8)."
            )
        return np.round(np.clip(arr, 0.0, 1.0) * 255.0).astype(np.uint8)
    raise ImageDecodeError(f"image arrays of dtype {arr.dtype} are not supported; use uint8 or float in [0, 1]")


def load_rgb(img: ImageInput) -> np.ndarray:
    """A path, PIL image or numpy array (grayscale/RGB/RGBA, uint8 or float in [0, 1])
    -> RGB uint8 array (H, W, 3). Alpha is ignored."""
    from PIL import Image, UnidentifiedImageError

    if isinstance(img, (str, os.PathLike)):
        path = Path(img)
        if not path.is_file():
            raise ImageDecodeError(f"image file '{path}' does not exist.")
        try:
            with Image.open(path) as im:
                return np.asarray(im.convert("RGB"))
        except (UnidentifiedImageError, OSError, ValueError) as exc:
            raise ImageDecodeError(
                f"could not read an image from '{path}' ({exc}); give a png, jpg or bmp file."
            ) from None
    if isinstance(img, Image.Image):
        return np.asarray(img.convert("RGB"))
    if isinstance(img, torch.Tensor):
        img = img.detach().cpu().numpy()
    if isinstance(img, np.ndarray):
        if img.size == 0:
            raise ImageDecodeError(f"the image is empty (shape {img.shape})")
        return _from_array(img)
    raise ImageDecodeError(f"the image must be a file path, a PIL image or a numpy array, not {type(img).__name__}")


def resize_rgb(rgb: np.ndarray, size: tuple[int, int], sharp: bool = False) -> np.ndarray:
    """Resize an RGB uint8 image to ``size`` = (H, W): antialiased bilinear, or bicubic with
    ``sharp`` (a photo shown to people: bilinear's wider filter took a 2204 px portrait's face
    down to 0.6 of the detail bicubic keeps at 1280 px)."""
    from PIL import Image

    h, w = size
    if rgb.shape[:2] == (h, w):
        return rgb
    kind = Image.Resampling.BICUBIC if sharp else Image.Resampling.BILINEAR
    return np.asarray(Image.fromarray(rgb).resize((w, h), kind))


def to_model_input(rgb: np.ndarray) -> torch.Tensor:
    """RGB uint8 (H, W, 3) -> (1, 3, H, W) float32 in [-1, 1] as ``(p / 255 - 0.5) / 0.5``."""
    x = torch.from_numpy(np.array(rgb, dtype=np.uint8, copy=True)).permute(2, 0, 1).to(torch.float32)
    return ((x / 255.0 - 0.5) / 0.5).unsqueeze(0)


def frames_to_uint8(frames: torch.Tensor) -> np.ndarray:
    """Frames in [-1, 1] (any shape) -> uint8 ``round(127.5 * (x + 1))`` clipped, as numpy."""
    x = frames.detach().to(torch.float32)  # converted where it is (a GPU sends 4x fewer bytes)
    return x.add(1.0).mul_(127.5).round_().clamp_(0.0, 255.0).to(torch.uint8).cpu().numpy()


def original_scale(frames: torch.Tensor | np.ndarray) -> np.ndarray:
    """Frames in [-1, 1] -> the original library's float ``125 * x + 125``."""
    x = frames.detach().cpu().numpy() if isinstance(frames, torch.Tensor) else np.asarray(frames)
    return 125.0 * x.astype(np.float32) + 125.0


ASSETS_DIR = Path(__file__).resolve().parent.parent / "assets"  #: files shipped inside the package


def default_avatar_path() -> Path:
    """The bundled avatar (a face the project rendered, aligned to the default model)."""
    path = ASSETS_DIR / "avatar.png"
    if not path.is_file():
        raise RealtimeSDAError(
            f"The default avatar image {path} is missing from this installation; pass an image "
            "of your own (--avatar IMAGE), or reinstall the package."
        )
    return path
