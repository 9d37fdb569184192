"""Files that ship inside the package: the default avatar image, and the speech synthesizer
used to make example speech."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from .errors import RealtimeSDAError

__all__ = ["ASSETS_DIR", "default_avatar_path", "synthesize_speech"]

ASSETS_DIR = Path(__file__).resolve().parent / "assets"


def default_avatar_path() -> Path:
    """The bundled avatar (a face the project rendered, aligned to the default model)."""
    path = ASSETS_DIR / "avatar.png"
    if not path.is_file():
        raise RealtimeSDAError(
            f"The default avatar image {path} is missing from this installation; pass an image "
            "of your own (--avatar IMAGE), or reinstall the package."
        )
    return path


def synthesize_speech(text: str, out_wav: str | Path, voice: str = "en-us", speed: int = 150) -> Path:
    """Speak ``text`` into a wav file with espeak-ng (a Debian/Ubuntu package)."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise RealtimeSDAError(
            "espeak-ng is not installed, so no example speech can be made. Install it "
            "(Debian/Ubuntu: sudo apt-get install espeak-ng; macOS: brew install espeak-ng), "
            "or give an audio file of your own."
        )
    out_wav = Path(out_wav)
    proc = subprocess.run(
        [exe, "-v", voice, "-s", str(speed), "-w", str(out_wav), text],
        capture_output=True, text=True, timeout=60,
    )
    if proc.returncode != 0 or not out_wav.is_file():
        raise RealtimeSDAError(f"espeak-ng failed (voice {voice!r}): {proc.stderr.strip()[:300]}")
    return out_wav
