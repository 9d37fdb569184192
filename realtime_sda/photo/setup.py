"""From a photo to a ready renderer and the model's still, in two steps so a live worker can
run each where it belongs (detection off the event loop, the model on its inference thread);
offline and live paths both go through them, so they make the same frames."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..media.image import ImageInput, to_model_input
from .landmarks import CropLandmarker, landmarks_at
from .render import PhotoRenderer, neutral_face
from .response import measure_response
from .rig import DEFAULT_MAX_SIDE, PhotoRig, prepare_photo

if TYPE_CHECKING:
    import torch

    from ..core.config import SDAConfig
    from ..core.model import SDAModel

__all__ = ["calibrate", "photo_renderer", "rig_and_still", "renderer_for"]


def rig_and_still(
    image: ImageInput, config: "SDAConfig", *, face: int = 0, size: int | None = None, max_side: int = DEFAULT_MAX_SIDE
) -> tuple[PhotoRig, "torch.Tensor"]:
    """Step 1 (no model): the photo prepared, and the model's (1, 3, H, W) still from it."""
    rig = prepare_photo(image, config, face=face, size=size, max_side=max_side)
    return rig, to_model_input(rig.still(config))


def renderer_for(model: "SDAModel", rig: PhotoRig, still: "torch.Tensor", gain: float = 1.0,
                 calibrated: bool = True) -> PhotoRenderer:
    """Step 2 (runs the model on silence for its rest pose): the renderer; ``calibrated``
    also runs step 3 (live paths run it on their photo thread instead of the model's)."""
    landmarker = CropLandmarker(model.config.mean_face, model.config.img_size)
    renderer = PhotoRenderer(rig, landmarker, neutral_face(model, still, landmarker), gain=gain)
    return calibrate(renderer) if calibrated else renderer


def calibrate(renderer: PhotoRenderer) -> PhotoRenderer:
    """Step 3 (no model; a few renders of the photo): the renderer with its photo's lip
    response measured (:mod:`.response`), so the lips look as open as the model's."""
    rig = renderer.rig
    response = measure_response(renderer.render_gap, lambda image: landmarks_at(image, rig.box), renderer.rest_gap)
    renderer.response = response
    return renderer


def photo_renderer(
    model: "SDAModel",
    image: ImageInput,
    *,
    face: int = 0,
    size: int | None = None,
    max_side: int = DEFAULT_MAX_SIDE,
    gain: float = 1.0,
) -> tuple[PhotoRenderer, "torch.Tensor"]:
    """(renderer, still): both steps at once, for offline use."""
    rig, still = rig_and_still(image, model.config, face=face, size=size, max_side=max_side)
    return renderer_for(model, rig, still, gain), still
