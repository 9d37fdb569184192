"""``realtime-sda serve`` as a user runs it, and a real face photo accepted over the websocket."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

import pytest
import torch

pytest.importorskip("aiortc")

from realtime_sda.cli import main as cli_main  # noqa: E402


def test_serve_command_serves_page_and_stops_cleanly(tiny_checkpoint, tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-m", "realtime_sda", "serve", "--model", str(tiny_checkpoint), "--port", "0",
         "--max-sessions", "2", "--token", "t0k", "--bf16", "--playout-margin-ms", "8"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )
    try:
        deadline, url = time.monotonic() + 60, None
        while time.monotonic() < deadline and url is None:
            line = proc.stdout.readline()
            if not line:
                break
            if "open http://" in line:
                url = line.split("open ", 1)[1].split()[0]
        assert url and url.startswith("http://127.0.0.1:") and url.endswith("/?token=t0k"), url
        page = urllib.request.urlopen(url, timeout=10).read()
        assert b"app.js" in page
    finally:
        os.killpg(proc.pid, signal.SIGINT)  # the group this test started
        try:
            proc.wait(20)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode in (0, 130)


def test_serve_bad_arguments_give_clean_errors(tmp_path, capsys):
    assert cli_main(["serve", "--model", str(tmp_path / "missing.pt")]) == 1
    err = capsys.readouterr().err
    assert "realtime-sda: error:" in err and "Traceback" not in err
    assert cli_main(["serve", "--max-sessions", "0"]) == 1
    assert "--max-sessions must be at least 1" in capsys.readouterr().err
    assert cli_main(["serve", "--audio-prefetch", "-1"]) == 1
    assert "--audio-prefetch must be 0 or more" in capsys.readouterr().err
    assert cli_main(["serve", "--playout-margin-ms", "2"]) == 1
    assert "--playout-margin-ms must be between 5 and 1000" in capsys.readouterr().err


def test_real_face_photo_is_aligned_and_used(face_image, tiny_model):
    from websockets.asyncio.client import connect

    from realtime_sda.server import AvatarServer, ServerConfig

    photo = face_image.read_bytes()  # the bundled photo, sent as an upload

    async def main():
        async with AvatarServer(tiny_model, ServerConfig(port=0), None) as srv:
            async with connect(f"ws://127.0.0.1:{srv.port}/ws", max_size=2**23) as ws:
                ready = json.loads(await ws.recv())
                await ws.send(json.dumps({"type": "offer", "sdp": "v=0\r\n", "mode": "mic"}))
                no_avatar = json.loads(await ws.recv())  # no default avatar and no photo yet
                await ws.send(photo)
                reply = json.loads(await asyncio.wait_for(ws.recv(), 60))
                client = next(iter(srv.clients))
                return ready, no_avatar, reply, client.still

    ready, no_avatar, reply, still = asyncio.run(main())
    assert ready["has_avatar"] is False and no_avatar["code"] == "no_avatar"
    assert reply["type"] == "avatar", reply
    h, w = tiny_model.config.img_size
    assert isinstance(still, torch.Tensor) and tuple(still.shape) == (1, 3, h, w)
    assert float(still.min()) >= -1.0 and float(still.max()) <= 1.0 and float(still.std()) > 0.05


def test_serve_on_a_port_in_use_says_so_in_one_line(tiny_checkpoint, capsys):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code = cli_main(["serve", "--model", str(tiny_checkpoint), "--crop", "--port", str(port)])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.startswith("realtime-sda: error:")]
    assert len(lines) == 1 and f"port {port}" in lines[0] and "--port" in lines[0], err


def test_serve_tls_options_are_checked(tiny_checkpoint, tmp_path, capsys):
    (tmp_path / "junk.pem").write_text("not a certificate")
    for args in (["--tls-cert", str(tmp_path / "missing.pem")], ["--tls-cert", str(tmp_path / "junk.pem")],
                 ["--tls-key", str(tmp_path / "junk.pem")]):
        assert cli_main(["serve", "--model", str(tiny_checkpoint), "--crop", "--port", "0", *args]) == 1
        err = capsys.readouterr().err
        assert "Traceback" not in err and "openssl req -x509" in err, err


def test_serve_margin_default_and_range_come_from_playout():
    from realtime_sda.cli import build_parser
    from realtime_sda.server.playout import DEFAULT_MARGIN_S, MAX_MARGIN_S

    args = build_parser().parse_args(["serve"])
    assert args.playout_margin_ms == 1000 * DEFAULT_MARGIN_S
    assert cli_main(["serve", "--playout-margin-ms", str(1000 * MAX_MARGIN_S + 1)]) == 1


def test_serve_log_has_sessions_not_ice_chatter(tiny_checkpoint):
    """``serve``'s log: one line per session opened and closed (with its figures), and none
    of aioice's per-candidate INFO lines (``--verbose`` keeps those)."""
    import numpy as np

    from testsupport.loopback_client import LoopbackViewer

    proc = subprocess.Popen(
        [sys.executable, "-m", "realtime_sda", "serve", "--model", str(tiny_checkpoint), "--port", "0", "--crop"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )
    try:
        deadline, url = time.monotonic() + 60, None
        while time.monotonic() < deadline and url is None:
            line = proc.stdout.readline()
            if not line:
                break
            if "open http://" in line:
                url = line.split("open ", 1)[1].split()[0]
        assert url, "serve printed no URL"

        async def watch() -> None:
            signal = 0.3 * np.random.default_rng(0).standard_normal(48000 * 5).astype(np.float32)
            async with LoopbackViewer(url.replace("http://", "ws://").rstrip("/") + "/ws", signal=signal,
                                      keep_images=False) as viewer:
                await viewer.wait_frames(10, timeout=30)

        asyncio.run(watch())
        time.sleep(1.0)
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            out, _ = proc.communicate(timeout=20)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
    opened = [ln for ln in out.splitlines() if "session opened" in ln]
    closed = [ln for ln in out.splitlines() if "session closed" in ln]
    assert len(opened) == 1 and len(closed) == 1, out[-3000:]
    assert "frames sent" in closed[0] and "latency" in closed[0], closed
    assert "aioice" not in out and "Traceback" not in out, out[-3000:]
