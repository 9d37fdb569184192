"""What a server session shows: an :class:`Avatar`, the model's still plus, for the whole
photo, its renderer; and the server's default one (``--avatar`` or the bundled photo)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Avatar", "load_still", "default_photo"]


@dataclass(frozen=True)
class Avatar:
    """``still``: the model's (1, 3, H, W) input; ``renderer``: turns the model's crops into
    the whole photo (None: the crop itself is shown)."""

    still: Any
    renderer: Any = None

    def size(self, config: Any) -> tuple[int, int]:
        """(H, W) of the frames a session of this avatar makes."""
        return tuple(self.renderer.size) if self.renderer is not None else tuple(config.img_size)


def default_photo(path: str | Path | None) -> Path | None:
    """The photo ``path``, or the bundled avatar photo when None (None if not installed)."""
    from ..errors import RealtimeSDAError

    if path is not None:
        return Path(path)
    from ..media.image import default_avatar_path

    try:
        return Path(default_avatar_path())
    except RealtimeSDAError:
        return None


def load_still(path: str | Path | None, config: Any, aligned: bool = False) -> Any:
    """(1, 3, H, W) model input for ``path``; the bundled avatar (already aligned) when None,
    or None when the installation has no bundled avatar (the page must send a photo)."""
    from ..media.face import prepare_still

    photo = default_photo(path)
    if photo is None:
        return None
    return prepare_still(str(photo), config, aligned=aligned or path is None)
