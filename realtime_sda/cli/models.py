"""``realtime-sda models``: every known model name, whether and where it is installed, its size
and hash check, the search path, and where to get what is missing."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass
from pathlib import Path

__all__ = ["register", "ModelStatus", "model_statuses", "other_checkpoints"]


@dataclass
class ModelStatus:
    """What ``realtime-sda models`` reports about one known name."""

    name: str
    path: str | None
    size: int | None
    #: "ok" (published hash matches), "differs", "lfs-pointer", "unverified" (nothing
    #: published to compare), or None when not found.
    check: str | None
    source: str


def _check(path: Path, size: int, known_size: int | None, known_sha: str | None) -> str:
    from ..checkpoints.format import LFS_MAGIC
    from ..checkpoints.registry import sha256_file

    with open(path, "rb") as fh:
        if fh.read(len(LFS_MAGIC)) == LFS_MAGIC:
            return "lfs-pointer"
    if known_sha is None:
        return "unverified"
    if size != known_size:
        return "differs"
    return "ok" if sha256_file(path) == known_sha else "differs"


def model_statuses() -> list[ModelStatus]:
    """The status of every name in :data:`realtime_sda.checkpoints.registry.KNOWN_MODELS`."""
    from ..checkpoints.registry import KNOWN_MODELS, candidates

    out = []
    for name, known in KNOWN_MODELS.items():
        found = next((p for p in candidates(name) if p.is_file()), None)
        if found is None:
            out.append(ModelStatus(name, None, None, None, known.source))
            continue
        size = found.stat().st_size
        out.append(ModelStatus(name, str(found), size, _check(found, size, known.size, known.sha256), known.source))
    return out


def other_checkpoints() -> list[Path]:
    """Checkpoint files in the search folders under names that are not known names."""
    from ..checkpoints.registry import EXTENSIONS, KNOWN_MODELS, search_dirs

    seen: list[Path] = []
    for folder in search_dirs():
        if folder.is_dir():
            for p in sorted(folder.iterdir()):
                if p.suffix in EXTENSIONS and p.stem not in KNOWN_MODELS and p.is_file():
                    seen.append(p)
    return seen


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list known models, where they are found, and what is missing")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=run)


_CHECK_TEXT = {
    "ok": "sha256 matches the published file",
    "differs": "DIFFERS from the published file (size or sha256): corrupt, or another model",
    "lfs-pointer": "a git-lfs POINTER, not the model: run 'git lfs pull' where it came from",
    "unverified": "no published hash to compare",
}


def run(args: argparse.Namespace) -> int:
    from ..checkpoints.registry import search_dirs

    statuses = model_statuses()
    others = other_checkpoints()
    if args.json:
        print(json.dumps({
            "search_path": [str(d) for d in search_dirs()],
            "models": [asdict(s) for s in statuses],
            "other_files": [str(p) for p in others],
        }, indent=2))
        return 0
    print("Search path (a name is looked up as NAME.dat, NAME.pt or NAME.pth, in this order):")
    for d in search_dirs():
        print(f"  {d}{'' if d.is_dir() else '  (does not exist)'}")
    print("\nKnown models:")
    for s in statuses:
        if s.path is None:
            print(f"  {s.name:8s} not found")
        else:
            print(f"  {s.name:8s} {s.path}  {s.size / 1e6:.1f} MB  {_CHECK_TEXT[s.check or 'unverified']}")
    if others:
        print("\nOther checkpoint files in the search path (use them by path or file name):")
        for p in others:
            print(f"  {p}  {p.stat().st_size / 1e6:.1f} MB")
    missing = [s for s in statuses if s.path is None or s.check == "lfs-pointer"]
    if missing:
        print("\nMissing, and where to get it:")
        for s in missing:
            print(f"  {s.name:8s} {s.source}")
    return 0
