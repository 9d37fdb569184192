"""Every code block of README.md runs as written, on the embedded default model, in a fresh
temporary folder: the shell blocks' ``realtime-sda ...`` lines (with a photo and speech made
here) and the Python blocks as whole programs. The two set-up commands (marked
``<!-- run-command -->`` and ``<!-- test-command -->``) are not run here: the first is
``tests/test_demo.py``'s job and the second is this very suite."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"

#: Shell lines not run, with why: they need hardware, a network or data a test cannot make.
SKIPPED = {
    "preview": "opens a window and plays sound (a display and a speaker)",
    "vcam": "needs a virtual camera device (v4l2loopback) and a microphone",
    "serve": "a long-running server for browsers (tests/test_server_*.py cover it)",
    "prepare": "needs a folder of real talking-face videos (tests/test_training_prepare.py covers it)",
}

#: Changes to make a line quick in a test, the rest of it as written: the README's training
#: commands on a tiny corpus, for two steps.
QUICK = {
    "--clips 400": "--clips 6",
    "train config.json": "train config.json --steps 2 --no-progress",
}

_FENCE = re.compile(r"^```(\w*)\n(.*?)^```\n", re.S | re.M)


def readme_blocks() -> list[tuple[str, str, str]]:
    """(language, code, marker) for every fenced block; marker is the HTML comment right
    above it (e.g. 'run-command'), or ''."""
    text = README.read_text()
    out = []
    for m in _FENCE.finditer(text):
        before = text[: m.start()].rstrip().splitlines()
        marker = re.fullmatch(r"<!--\s*(\S+)\s*-->", before[-1].strip()) if before else None
        out.append((m.group(1), m.group(2), marker.group(1) if marker else ""))
    return out


def _shell_lines() -> list[str]:
    lines = []
    for lang, code, marker in readme_blocks():
        if lang != "sh" or marker in ("run-command", "test-command"):
            continue
        for line in code.splitlines():
            words = shlex.split(line, comments=True)
            if words:
                lines.append(line)
    return lines


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """A folder with what the README's examples name: face.jpg and photo.jpg (scikit-image's
    astronaut), group.jpg (her and her mirror image, side by side), speech.wav (espeak-ng), and the
    README's training config as config.json."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed")
    from PIL import Image
    from skimage import data

    from realtime_sda.media.speech import synthesize_speech

    d = tmp_path_factory.mktemp("readme")
    face = Image.fromarray(data.astronaut())
    face.save(d / "face.jpg")
    face.save(d / "photo.jpg")
    w, h = face.size
    group = Image.new("RGB", (2 * w, h))
    group.paste(face, (0, 0))
    group.paste(face.transpose(Image.Transpose.FLIP_LEFT_RIGHT), (w, 0))
    group.save(d / "group.jpg")
    synthesize_speech("Hello! I am a talking face.", d / "speech.wav")
    configs = [code for lang, code, _ in readme_blocks() if lang == "json"]
    assert len(configs) == 1, "the README shows one training config"
    json.loads(configs[0])
    (d / "config.json").write_text(configs[0])
    return d


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    env.setdefault("OMP_NUM_THREADS", "2")
    return env


def test_readme_has_the_blocks_this_test_runs():
    blocks = readme_blocks()
    markers = [m for _, _, m in blocks if m]
    assert markers.count("run-command") == 1 and markers.count("test-command") == 1
    assert {lang for lang, _, _ in blocks} <= {"sh", "python", "json"}
    assert sum(lang == "python" for lang, _, _ in blocks) >= 2
    for line in _shell_lines():
        words = shlex.split(line, comments=True)
        assert words[0] == "realtime-sda", f"a README shell line that is not a realtime-sda command: {line!r}"
    # 'grid' is shown as the option it is, never as what an example needs
    assert not any("--model grid" in shlex.join(shlex.split(line, comments=True)) for line in _shell_lines())


@pytest.mark.parametrize("line", _shell_lines())
def test_readme_shell_line_runs(line, workdir):
    words = shlex.split(line, comments=True)
    if words[1] in SKIPPED:
        pytest.skip(f"'{words[1]}': {SKIPPED[words[1]]}")
    command = shlex.join(words)
    for slow, quick in QUICK.items():
        command = command.replace(slow, quick)
    words = shlex.split(command)
    exe = [sys.executable, "-m", "realtime_sda"]
    if words[1] == "evaluate" and not (workdir / "runs" / "x" / "last.pt").is_file():
        pytest.skip("needs the README's train line to have run first")
    if words[1] == "train" and not (workdir / "data" / "meta.json").is_file():
        pytest.skip("needs the README's synth line to have run first")
    proc = subprocess.run(exe + words[1:], cwd=workdir, env=_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{line!r} failed:\n{proc.stderr[-3000:]}"
    assert "Traceback" not in proc.stderr
    for i, word in enumerate(words):  # every file it was told to write is there
        if word in ("-o", "--output", "--record") and i + 1 < len(words):
            assert (workdir / words[i + 1]).stat().st_size > 0


@pytest.mark.parametrize("index", range(sum(lang == "python" for lang, _, _ in readme_blocks())))
def test_readme_python_block_runs(index, workdir):
    code = [code for lang, code, _ in readme_blocks() if lang == "python"][index]
    script = workdir / f"readme_block_{index}.py"
    script.write_text(code)
    proc = subprocess.run([sys.executable, str(script)], cwd=workdir, env=_env(), capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, f"README Python block {index} failed:\n{code}\n{proc.stderr[-3000:]}"
    if "save_video" in code:  # both writers give the speech its whole length
        import av

        for name in ("out.mp4", "same.mp4"):
            with av.open(str(workdir / name)) as c:
                v, a = c.streams.video[0], c.streams.audio[0]
                video_s = float(v.frames / v.average_rate)
                audio_s = float(a.duration * a.time_base)
            assert abs(video_s - audio_s) < 0.1, (name, video_s, audio_s)
    if "frames()" in code:  # the streaming example shows frames
        assert len(proc.stdout.splitlines()) > 10
