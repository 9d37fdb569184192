"""The server's default avatar still: ``--avatar`` (face-aligned) or the bundled one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["load_still"]


def load_still(path: str | Path | None, config: Any, aligned: bool = False) -> Any:
    """(1, 3, H, W) model input for ``path``; the bundled avatar (already aligned) when None,
    or None when the installation has no bundled avatar (the page must send a photo)."""
    from ..errors import RealtimeSDAError
    from ..media.face import prepare_still

    if path is None:
        from ..media.image import default_avatar_path

        try:
            path, aligned = default_avatar_path(), True
        except RealtimeSDAError:
            return None
    return prepare_still(str(path), config, aligned=aligned)
