"""Example speech: text spoken into a wav file by espeak-ng."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from ..errors import RealtimeSDAError

__all__ = ["synthesize_speech"]


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
