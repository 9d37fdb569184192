"""One call from a photo to a ready renderer and the model's still (what offline and live
paths both use, so they make the same frames)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..media.image import ImageInput, to_model_input
from .landmarks import CropLandmarker
from .render import PhotoRenderer, neutral_face
from .rig import DEFAULT_MAX_SIDE, prepare_photo

if TYPE_CHECKING:
    import torch

    from ..core.model import SDAModel

__all__ = ["photo_renderer"]


def photo_renderer(
    model: "SDAModel",
    image: ImageInput,
    *,
    face: int = 0,
    size: int | None = None,
    max_side: int = DEFAULT_MAX_SIDE,
    gain: float = 1.0,
) -> tuple[PhotoRenderer, "torch.Tensor"]:
    """(renderer, still): the photo prepared for ``model`` and the model's (1, 3, H, W) input."""
    cfg = model.config
    rig = prepare_photo(image, cfg, face=face, size=size, max_side=max_side)
    still = to_model_input(rig.still(cfg))
    landmarker = CropLandmarker(cfg.mean_face, cfg.img_size)
    return PhotoRenderer(rig, landmarker, neutral_face(model, still, landmarker), gain=gain), still
