"""Speech from text: espeak-ng into a wav file (the one wrapper of the program; the
example speech of ``demo`` and ``animate --text`` and the synthetic training corpus use it)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from ..errors import MissingDependencyError, RealtimeSDAError

__all__ = ["synthesize_speech"]


def synthesize_speech(text: str, out_wav: str | Path, voice: str = "en-us", speed: int = 150,
                      pitch: int | None = None) -> Path:
    """Speak ``text`` into a wav file with espeak-ng (a Debian/Ubuntu package): ``voice``
    (e.g. en-us, en+f3, de), ``speed`` in words per minute, ``pitch`` 0-99 (None: the voice's).

    Raises :class:`MissingDependencyError` when espeak-ng is not installed and
    :class:`RealtimeSDAError` when it fails."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise MissingDependencyError(
            "espeak-ng is not installed, so no speech can be made from text. Install it "
            "(Debian/Ubuntu: sudo apt-get install espeak-ng; macOS: brew install espeak-ng), "
            "or give an audio file of your own."
        )
    out_wav = Path(out_wav)
    cmd = [exe, "-v", voice, "-s", str(speed)] + ([] if pitch is None else ["-p", str(pitch)])
    proc = subprocess.run([*cmd, "-w", str(out_wav), text], capture_output=True, text=True, timeout=60)
    if proc.returncode != 0 or not out_wav.is_file():
        raise RealtimeSDAError(f"espeak-ng failed (voice {voice!r}): {proc.stderr.strip()[-300:]}")
    return out_wav
