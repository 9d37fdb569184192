"""Every code block of README.md runs as written, on the embedded default model, in a fresh
temporary folder: the shell blocks' ``realtime-sda ...`` lines (with a photo and speech made
here; all through the console script's ``main`` in one process, in README order) and the
Python blocks as whole programs. The two set-up commands (marked ``<!-- run-command -->``
and ``<!-- test-command -->``) are not run here: the first is ``tests/test_demo.py``'s job
and the second is this very suite."""

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


#: Runs README shell lines (as argv lists, in order) through the console script's own
#: ``realtime_sda.cli.main`` in one process, so that torch is imported once, not once a line;
#: each line's stdout, stderr (file descriptors 1 and 2) and exit status are kept apart.
RUNNER = r"""
import json, os, sys, traceback
argvs, out_dir = json.loads(sys.argv[1]), sys.argv[2]
from realtime_sda.cli import main
for i, argv in enumerate(argvs):
    streams = {}
    for fd, name in ((1, "stdout"), (2, "stderr")):
        streams[fd] = (os.dup(fd), open(os.path.join(out_dir, f"{i}.{name}"), "wb"))
        os.dup2(streams[fd][1].fileno(), fd)
    try:
        rc = main(argv)
    except SystemExit as exc:
        rc = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        traceback.print_exc()
        rc = 1
    sys.stdout.flush(); sys.stderr.flush()
    for fd, (saved, f) in streams.items():
        os.dup2(saved, fd); os.close(saved); f.close()
    with open(os.path.join(out_dir, f"{i}.rc"), "w") as f:
        f.write(str(rc))
"""


def _runnable(line: str) -> list[str] | str:
    """The argv a README line runs in a test (its slow parts made quick), or why it is not run."""
    words = shlex.split(line, comments=True)
    if words[1] in SKIPPED:
        return f"'{words[1]}': {SKIPPED[words[1]]}"
    command = shlex.join(words)
    for slow, quick in QUICK.items():
        command = command.replace(slow, quick)
    return shlex.split(command)


@pytest.fixture(scope="module")
def shell_results(workdir, tmp_path_factory) -> dict[str, tuple[int, str, str]]:
    """Every runnable README shell line, run in README order in one process in ``workdir``:
    line -> (exit status, stdout, stderr)."""
    lines = [line for line in _shell_lines() if not isinstance(_runnable(line), str)]
    out_dir = tmp_path_factory.mktemp("readme-runs")
    argvs = [_runnable(line)[1:] for line in lines]
    proc = subprocess.run([sys.executable, "-c", RUNNER, json.dumps(argvs), str(out_dir)], cwd=workdir, env=_env(),
                          capture_output=True, text=True, timeout=900)
    results = {}
    for i, line in enumerate(lines):
        rc_file = out_dir / f"{i}.rc"
        if not rc_file.is_file():
            results[line] = (-1, "", f"the runner stopped before this line (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
            continue
        results[line] = (int(rc_file.read_text()), (out_dir / f"{i}.stdout").read_text(errors="replace"),
                         (out_dir / f"{i}.stderr").read_text(errors="replace"))
    return results


@pytest.mark.parametrize("line", _shell_lines())
def test_readme_shell_line_runs(line, workdir, shell_results):
    words = _runnable(line)
    if isinstance(words, str):
        pytest.skip(words)
    rc, _, stderr = shell_results[line]
    assert rc == 0, f"{line!r} failed:\n{stderr[-3000:]}"
    assert "Traceback" not in stderr
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
