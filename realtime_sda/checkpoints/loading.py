"""``load_model``: name or path -> an eval-mode :class:`SDAModel` with the file's weights."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ..core.config import EXTENSION_KEYS, ORIGINAL_KEYS, SDAConfig
from ..core.model import SDAModel
from ..errors import CheckpointFormatError, DeviceError, StateDictMismatchError
from .format import STATE_DICT_KEYS, read_checkpoint
from .registry import KNOWN_MODELS, check_known_hash, resolve_model

__all__ = ["load_model", "resolve_device"]


def resolve_device(device: str | torch.device | None = None, gpu: int | None = None) -> torch.device:
    """``device`` wins; else ``gpu >= 0`` means that CUDA device; else CUDA if present, else CPU.

    Raises :class:`~realtime_sda.errors.DeviceError` (one line, naming the fix) for a device
    string torch does not know (e.g. ``gpu``) or CUDA asked for where none is seen."""
    if device is not None:
        try:
            dev = torch.device(device)
        except (RuntimeError, ValueError, TypeError):
            raise DeviceError(f"unknown device {str(device)!r}; use cpu, cuda or cuda:N") from None
    elif gpu is not None:
        dev = torch.device(f"cuda:{gpu}") if gpu >= 0 else torch.device("cpu")
    else:
        dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError(
            f"device {dev} was asked for, but this PyTorch build sees no CUDA GPU; use --device cpu"
        )
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise DeviceError(
            f"device {dev} was asked for, but only {torch.cuda.device_count()} CUDA GPU(s) are seen; "
            "use cuda:0 or --device cpu"
        )
    return dev


def _mismatches(module: torch.nn.Module, sd: dict[str, torch.Tensor], part: str) -> list[str]:
    own = module.state_dict()
    out = [f"{part}: missing '{k}' {tuple(v.shape)}" for k, v in own.items() if k not in sd]
    out += [f"{part}: unexpected '{k}' {tuple(v.shape)}" for k, v in sd.items() if k not in own]
    out += [
        f"{part}: '{k}' has shape {tuple(v.shape)}, the config needs {tuple(own[k].shape)}"
        for k, v in sd.items()
        if k in own and tuple(v.shape) != tuple(own[k].shape)
    ]
    return out


def load_model(
    name_or_path: str | os.PathLike[str] = "grid", device: str | torch.device | None = None
) -> SDAModel:
    """Load a checkpoint (original legacy pickle or zip, ours or the published ones) strictly.

    Names (``grid``, ``timit``, ``crema``, ``lrw``, ``default``) are looked up on the search
    path of :mod:`realtime_sda.checkpoints.registry`; anything else is a file path.
    """
    path = resolve_model(name_or_path)
    name = os.fspath(name_or_path)
    ckpt = read_checkpoint(path)  # first: a git-lfs pointer gets its own error, not a hash warning
    check_known_hash(path, name if name in KNOWN_MODELS else None)
    try:
        config = SDAConfig.from_checkpoint(ckpt)
    except KeyError as exc:
        raise CheckpointFormatError(f"{path} is not an SDA checkpoint: it lacks the value(s) {exc.args[0]}.") from None
    except (TypeError, ValueError) as exc:
        raise CheckpointFormatError(f"{path} has invalid configuration values: {exc}") from None
    model = SDAModel(config)
    problems: list[str] = []
    for part in STATE_DICT_KEYS:
        problems += _mismatches(getattr(model, part), ckpt[part], part)
    if problems:
        shown = "\n  ".join(problems[:6])
        more = f"\n  ... and {len(problems) - 6} more" if len(problems) > 6 else ""
        raise StateDictMismatchError(
            f"{path}: the tensors do not match the network its own values describe "
            f"({len(problems)} mismatches):\n  {shown}{more}\n"
            "The file may come from a different code version or be damaged."
        )
    for part in STATE_DICT_KEYS:
        getattr(model, part).load_state_dict(ckpt[part], strict=True)
    model.extra = {k: v for k, v in ckpt.items() if k not in STATE_DICT_KEYS and k not in ORIGINAL_KEYS and k not in EXTENSION_KEYS}
    model.source = Path(path)
    return model.to(resolve_device(device)).eval()
