"""Finding checkpoint files by name: the search path and the index of known checkpoints."""

from __future__ import annotations

import hashlib
import os
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

from ..errors import ModelNotFoundError

__all__ = [
    "KnownModel",
    "KNOWN_MODELS",
    "MODEL_NAMES",
    "search_dirs",
    "candidates",
    "resolve_model",
    "default_model_name",
    "check_known_hash",
    "sha256_file",
    "repo_models_dir",
    "user_cache_dir",
]

ORIGINAL_SOURCE = (
    "the original SDA library's repository (DinoMan/speech-driven-animation on GitHub, "
    "folder sda/data, fetched with git-lfs: 'git lfs pull')"
)


@dataclass(frozen=True)
class KnownModel:
    name: str
    size: int | None
    sha256: str | None
    source: str


KNOWN_MODELS: dict[str, KnownModel] = {
    "grid": KnownModel(
        "grid", 221_179_358, "cfd703ecb1bbbb2a81ea62a0df948627a6e4e6481e9c444fccb4a41701867ca7", ORIGINAL_SOURCE
    ),
    "timit": KnownModel(
        "timit", 221_181_916, "e725836f8da8ea1951bbeff885839b273f503a39f0d4bf75f4686f16844ad94b", ORIGINAL_SOURCE
    ),
    "crema": KnownModel(
        "crema", 221_171_678, "bd81f9c671f510c683c610c211522de1c5c675e77ffca659a7abc8d5535156a7", ORIGINAL_SOURCE
    ),
    "lrw": KnownModel(
        "lrw", None, None, "nowhere yet: the LRW model was never released; train one with 'realtime-sda train'"
    ),
    "default": KnownModel(
        "default", None, None, "this project's models/ folder (trained by the project: see models/README.md)"
    ),
}
MODEL_NAMES = tuple(KNOWN_MODELS)
EXTENSIONS = (".dat", ".pt", ".pth")


def repo_models_dir() -> Path:
    """The ``models/`` folder beside the package (the repository checkout)."""
    return Path(__file__).resolve().parents[2] / "models"


def installed_models_dir() -> Path:
    """Where a wheel install puts the embedded default model."""
    return Path(sys.prefix) / "share" / "realtime-sda" / "models"


def user_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "realtime-sda" / "models"


def search_dirs() -> list[Path]:
    """Folders searched for a model name, in order."""
    dirs = [Path(p).expanduser() for p in os.environ.get("REALTIME_SDA_MODELS", "").split(os.pathsep) if p]
    dirs.append(repo_models_dir())
    if installed_models_dir().is_dir() and installed_models_dir() != repo_models_dir():
        dirs.append(installed_models_dir())
    dirs.append(user_cache_dir())
    return dirs


def candidates(name: str) -> list[Path]:
    """Every file path a model name may live at, in search order."""
    return [d / (name + ext) for d in search_dirs() for ext in EXTENSIONS]


def resolve_model(name_or_path: str | os.PathLike[str]) -> Path:
    """An explicit path, or a registry name looked up on the search path.

    Raises :class:`ModelNotFoundError` listing every place looked and where to get the file.
    """
    text = os.fspath(name_or_path)
    if text in KNOWN_MODELS:
        for path in candidates(text):
            if path.is_file():
                return path
        known = KNOWN_MODELS[text]
        places = "\n  ".join(str(p) for p in candidates(text))
        raise ModelNotFoundError(
            f"Model '{text}' was not found. Looked in:\n  {places}\n"
            f"Get the file from {known.source}, and put it at {repo_models_dir() / (text + '.dat')} "
            f"or {user_cache_dir() / (text + '.dat')}, or in a folder named by $REALTIME_SDA_MODELS, "
            "or pass its path directly."
        )
    path = Path(text).expanduser()
    if path.is_file():
        return path
    if path.is_dir():
        raise ModelNotFoundError(f"'{path}' is a folder; give the checkpoint file inside it.")
    raise ModelNotFoundError(
        f"Checkpoint file '{path}' does not exist, and '{text}' is not a model name. Pass an "
        f"existing file or one of the names {', '.join(MODEL_NAMES)}; 'realtime-sda models' "
        "lists what is installed and where it looks."
    )


def default_model_name() -> str:
    """The model used when none is named in Python (``VideoAnimator()``,
    ``get_audio_feature_extractor()``): ``"grid"`` when ``grid.dat`` is installed, as in the
    original library, else ``"default"``, the model this project ships."""
    try:
        resolve_model("grid")
        return "grid"
    except ModelNotFoundError:
        return "default"


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def check_known_hash(path: Path, name: str | None = None) -> bool | None:
    """Warn when a file named like a published checkpoint differs from it.

    Returns True (matches), False (differs, warned) or None (nothing known to compare).
    Only a file of the published size is hashed, so the check costs nothing otherwise.
    """
    stem = name or path.stem
    known = KNOWN_MODELS.get(stem)
    if known is None or known.sha256 is None:
        return None
    size = path.stat().st_size
    if size == known.size and sha256_file(path) == known.sha256:
        return True
    warnings.warn(
        f"{path} is named like the published '{stem}' checkpoint but differs from it "
        f"({size:,} bytes; the published file has {known.size:,} bytes and sha256 "
        f"{known.sha256}). It may be corrupt or a different model; frames may not match the "
        "original's.",
        stacklevel=3,
    )
    return False
