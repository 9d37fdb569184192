"""Without a usable PortAudio library, the microphone commands say what to install.

The library is really made unusable: the test runs the CLI in a private mount namespace
(``unshare -m``, root only) with an empty file bind-mounted over libportaudio.
"""

from __future__ import annotations

import ctypes.util
import os
import shutil
import subprocess
import sys

import pytest


def _portaudio_path() -> str | None:
    name = ctypes.util.find_library("portaudio")
    for d in ("/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib/aarch64-linux-gnu",
              "/usr/lib/aarch64-linux-gnu", "/usr/lib", "/usr/local/lib"):
        if name and os.path.isfile(os.path.join(d, name)):
            return os.path.realpath(os.path.join(d, name))
    return None


def test_missing_portaudio_is_a_clear_error():
    lib = _portaudio_path()
    if lib is None or os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root, unshare and an installed PortAudio to hide")
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"no mount namespaces here: {probe.stderr.decode().strip()}")
    exe = shutil.which("realtime-sda", path=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    if exe is None:
        pytest.skip("the realtime-sda command is not installed")
    cli = f"{exe} preview --list-devices"
    res = subprocess.run(["unshare", "-m", "sh", "-c", f"mount --bind /dev/null {lib} && exec {cli}"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode != 0
    assert "PortAudio library is missing" in res.stderr and "apt-get install libportaudio2" in res.stderr
    assert "Traceback" not in res.stderr
