"""The ``realtime-sda`` command line for tests through a fork server, since importing torch is
most of a short command's 2.4 s: one helper process a test session imports torch, numpy, cv2,
av and ``realtime_sda.cli`` once (and runs no torch operation, so no thread pool exists when
it forks); each command runs in a forked child, a real separate process with its own exit
status, complete environment, working folder, stdin (/dev/null) and file descriptors 1 and 2
(files: the output of C code and of subprocesses is caught too). ``tests/test_cli_offline.py``
keeps one true ``python -m realtime_sda`` run for the ``__main__`` path."""

from __future__ import annotations

import atexit
import contextlib
import importlib
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

__all__ = ["CliRunner", "PRELOAD", "serve"]

#: What the server imports before it forks (what the commands import when they run).
PRELOAD = ("torch", "numpy", "cv2", "av", "PIL.Image", "soxr", "dlib", "realtime_sda.cli")
REPO = Path(__file__).resolve().parent.parent


def _child(request: dict[str, Any], main: Callable[[], object]) -> NoReturn:
    """The forked child: the request's process, the command, its exit."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    sys.path[0] = os.getcwd()  # as ``python -m`` puts it
    for fd, path, flags in ((0, os.devnull, os.O_RDONLY), (1, request["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
                            (2, request["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)):
        opened = os.open(path, flags, 0o644)
        os.dup2(opened, fd)
        os.close(opened)
    sys.stdin = open(0, closefd=False)
    sys.stdout = open(1, "w", buffering=1 if os.environ.get("PYTHONUNBUFFERED") else -1, closefd=False)
    sys.stderr = open(2, "w", buffering=1, errors="backslashreplace", closefd=False)
    if "numpy" in sys.modules:  # a fresh process's global generator differs every run
        sys.modules["numpy"].random.seed()
    threads = os.environ.get("OMP_NUM_THREADS") or os.environ.get("MKL_NUM_THREADS") or ""
    if "torch" in sys.modules and threads.isdigit() and int(threads) > 0:  # OpenMP read them when the server loaded it
        sys.modules["torch"].set_num_threads(int(threads))
    sys.argv = ["realtime-sda", *request["args"]]
    try:
        code: object = main()
    except SystemExit as exc:
        code = exc.code
    except BaseException as exc:
        sys.excepthook(*sys.exc_info())
        code = 1
        if isinstance(exc, KeyboardInterrupt):  # the interpreter then ends by SIGINT
            sys.stderr.flush()
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGINT)
    if code is not None and not isinstance(code, int):  # sys.exit("message"), as the interpreter does it
        print(code, file=sys.stderr)
    status = 0 if code is None else code & 0xFF if isinstance(code, int) else 1
    atexit._run_exitfuncs()
    try:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
    except Exception:
        status = status or 120  # as the interpreter does when flushing fails
    os._exit(status)


def serve() -> None:
    """The server: one JSON request a line on stdin, ``{"pid": ...}`` then
    ``{"returncode": ...}`` a line on stdout for each; it ends at the end of stdin."""
    for name in PRELOAD:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    from realtime_sda.cli import build_parser, main

    build_parser()  # imports the subcommand modules
    requests, replies = os.fdopen(os.dup(0), "rb"), os.dup(1)
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
    os.dup2(2, 1)  # a stray print of the server cannot break the replies
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the test session's to handle
    for line in requests:
        pid = os.fork()
        if pid == 0:
            try:
                requests.close()
                os.close(replies)
                _child(json.loads(line), main)
            except BaseException:  # the child could not be set up: why, on the server's stderr
                traceback.print_exc()
            finally:
                os._exit(70)
        os.write(replies, json.dumps({"pid": pid}).encode() + b"\n")
        _, status = os.waitpid(pid, 0)
        os.write(replies, json.dumps({"returncode": os.waitstatus_to_exitcode(status)}).encode() + b"\n")


class CliRunner:
    """:meth:`run` a command as ``subprocess.run(..., capture_output=True, text=True)`` would."""

    def __init__(self) -> None:
        self._log = tempfile.TemporaryFile()
        self._proc = subprocess.Popen([sys.executable, "-m", "testsupport.clirunner"], cwd=REPO, stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, stderr=self._log)
        self._buffer = b""

    def _reply(self, deadline: float | None) -> dict[str, int] | None:
        """The server's next reply; None if ``deadline`` (time.monotonic) passes first."""
        assert self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        while b"\n" not in self._buffer:
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not select.select([fd], [], [], wait)[0]:
                return None
            chunk = os.read(fd, 65536)
            if not chunk:
                self._log.seek(0)
                raise RuntimeError(f"the CLI fork server ended:\n{self._log.read().decode(errors='replace')[-3000:]}")
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        reply: dict[str, int] = json.loads(line)
        return reply

    def run(self, args: Sequence[str], env: Mapping[str, str] | None = None, cwd: str | Path | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """``realtime-sda *args`` in ``cwd`` with exactly ``env`` (None: this process's); one past
        ``timeout`` s is killed and raises subprocess.TimeoutExpired."""
        argv = ["realtime-sda", *map(str, args)]
        folder = Path(os.getcwd() if cwd is None else cwd).resolve()
        if not folder.is_dir():
            raise FileNotFoundError(f"no such folder: {folder}")
        with tempfile.TemporaryDirectory(prefix="clirunner-") as tmp:
            out, err = Path(tmp, "stdout"), Path(tmp, "stderr")
            request = {"args": argv[1:], "env": dict(os.environ if env is None else env), "cwd": str(folder),
                       "stdout": str(out), "stderr": str(err)}
            assert self._proc.stdin is not None
            self._proc.stdin.write(json.dumps(request).encode() + b"\n")
            self._proc.stdin.flush()
            started = self._reply(None)
            assert started is not None
            done: dict[str, int] | None = None
            try:
                done = self._reply(time.monotonic() + timeout)
            finally:
                if done is None:  # past its time, or this process interrupted: the child is killed
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(started["pid"], signal.SIGKILL)
                    self._reply(time.monotonic() + 30)
            stdout, stderr = (p.read_text(errors="replace") if p.exists() else "" for p in (out, err))  # newlines as text=True
            if done is None:
                raise subprocess.TimeoutExpired(argv, timeout, output=stdout, stderr=stderr)
            return subprocess.CompletedProcess(argv, done["returncode"], stdout, stderr)

    def close(self) -> None:
        """End the server (it exits at the end of its stdin) and wait for it."""
        try:
            self._proc.communicate(timeout=30)  # closes its stdin, reads its stdout to the end
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.communicate()
        self._log.close()


if __name__ == "__main__":
    serve()
