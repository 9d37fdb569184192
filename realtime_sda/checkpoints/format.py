"""Reading and writing checkpoint files in the original dict layout, safely.

The published files are legacy (pre-zip) ``torch.save`` pickles holding a numpy array, which
torch >= 2.6 refuses in its safe mode. We load them with ``weights_only=True`` and an
allow-list of the few numpy reconstruction globals: a checkpoint is untrusted input, and a
full unpickle could run arbitrary code.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from ..errors import CheckpointFormatError, LFSPointerError

__all__ = ["read_checkpoint", "write_checkpoint", "STATE_DICT_KEYS", "LFS_MAGIC"]

STATE_DICT_KEYS = ("encoder", "encoder_id", "generator")
LFS_MAGIC = b"version https://git-lfs.github.com/spec/"


def _numpy_safe_globals() -> list[Any]:
    """The numpy objects a pickled ``ndarray`` (any numpy version) refers to, by the names
    old and new numpy pickle them under."""
    try:
        from numpy._core import multiarray as ma  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core import multiarray as ma  # type: ignore[no-redef]
    items: list[Any] = [
        (ma._reconstruct, "numpy.core.multiarray._reconstruct"),
        (ma._reconstruct, "numpy._core.multiarray._reconstruct"),
        (ma.scalar, "numpy.core.multiarray.scalar"),
        (ma.scalar, "numpy._core.multiarray.scalar"),
        np.ndarray,
        np.dtype,
    ]
    for name in ("Float64DType", "Float32DType", "Int64DType", "Int32DType", "BoolDType"):
        cls = getattr(np.dtypes, name, None)
        if cls is not None:
            items.append(cls)
    return items


def _describe(path: Path) -> str:
    try:
        size = path.stat().st_size
    except OSError:
        return str(path)
    return f"{path} ({size:,} bytes)"


def read_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load a checkpoint dict (legacy or zip format) without running arbitrary pickle code.

    Raises :class:`LFSPointerError` for a git-lfs pointer file and
    :class:`CheckpointFormatError` for a truncated, corrupt or foreign file.
    """
    path = Path(path)
    with open(path, "rb") as fh:
        head = fh.read(len(LFS_MAGIC))
    if head.startswith(LFS_MAGIC):
        raise LFSPointerError(
            f"{_describe(path)} is a git-lfs pointer, not the checkpoint itself: the repository "
            "was cloned without git-lfs. Install git-lfs and run 'git lfs pull' in that "
            "repository (or download the real file) and put it in place of the pointer."
        )
    if not head:
        raise CheckpointFormatError(f"{_describe(path)} is empty: download the checkpoint again.")
    try:
        with torch.serialization.safe_globals(_numpy_safe_globals()):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        text = str(exc)
        if "Weights only load failed" in text or "Unsupported global" in text:
            raise CheckpointFormatError(
                f"{_describe(path)} holds Python objects that a safe load does not allow, so it "
                "is not an SDA checkpoint (or was saved with custom classes). Refusing to unpickle "
                f"it fully. Detail: {text.splitlines()[0][:300]}"
            ) from None
        raise CheckpointFormatError(
            f"{_describe(path)} is not a readable checkpoint (truncated or corrupt?): {text[:300]}. "
            "Download it again and compare its size and sha256 with models/README.md."
        ) from None
    except (EOFError, RuntimeError, ValueError, OSError, zipfile.BadZipFile, KeyError, IndexError) as exc:
        raise CheckpointFormatError(
            f"{_describe(path)} could not be read as a checkpoint ({type(exc).__name__}: "
            f"{str(exc)[:300]}). It is probably truncated or corrupt: download it again and "
            "compare its size and sha256 with models/README.md."
        ) from None
    if not isinstance(obj, dict):
        raise CheckpointFormatError(
            f"{_describe(path)} holds a {type(obj).__name__}, not the dict of an SDA checkpoint."
        )
    missing = [k for k in STATE_DICT_KEYS if not isinstance(obj.get(k), Mapping)]
    if missing:
        raise CheckpointFormatError(
            f"{_describe(path)} is not an SDA checkpoint: it lacks the state dict(s) "
            f"{', '.join(missing)} (keys found: {', '.join(map(str, list(obj)[:12]))})."
        )
    return obj


def write_checkpoint(
    path: str | os.PathLike[str],
    top_level: Mapping[str, Any],
    state_dicts: Mapping[str, Mapping[str, torch.Tensor]],
    *,
    legacy: bool = False,
    half: bool = False,
) -> Path:
    """Write ``top_level`` values and the three state dicts in the original dict layout.

    ``legacy=True`` writes the old non-zip format of the published files; ``half=True``
    stores floating tensors as float16 (loaders cast back), halving the file size.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    out: dict[str, Any] = dict(top_level)
    for key in STATE_DICT_KEYS:
        sd = {}
        for name, t in state_dicts[key].items():
            t = t.detach().cpu()
            if half and t.is_floating_point():
                t = t.half()
            sd[name] = t.clone()
        out[key] = sd
    tmp = path.with_name(path.name + ".tmp")
    torch.save(out, tmp, _use_new_zipfile_serialization=not legacy)
    os.replace(tmp, path)
    return path
