"""Hostile clients of the avatar server, run in their own process as a client on another
machine would be (in the server's process their own work would stall its event loop and
blur what is measured): ``python -m testsupport.hostile PORT CASE [--token T] [--count N]
[--parallel P]`` prints one JSON object of what the server answered. :func:`run_case` does
that from a test or benchmark.

Each case is bounded (``count`` attempts, ``parallel`` at once) and talks to 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import socket
import sys
import time
from functools import lru_cache
from pathlib import Path
from typing import Any, Awaitable, Callable

__all__ = ["CASES", "run_case", "small_faceless_png", "huge_flat_png"]

REPO = Path(__file__).resolve().parent.parent


# ---- payloads -----------------------------------------------------------------------------
def _png(rgb: Any) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "PNG")
    return buf.getvalue()


@lru_cache(maxsize=8)
def small_faceless_png(seed: int) -> bytes:
    """About 2 KB: 32x32 pixels of faint noise on grey (no face, even scaled up)."""
    import numpy as np

    return _png(np.random.default_rng(seed).integers(118, 138, (32, 32, 3), dtype=np.uint8))


@lru_cache(maxsize=4)
def huge_flat_png(shade: int) -> bytes:
    """About 80 KB that decode to 24 megapixels (6000x4000, one colour, no face)."""
    import numpy as np

    return _png(np.full((4000, 6000, 3), shade % 256, np.uint8))


# ---- clients ------------------------------------------------------------------------------
async def _ws(port: int, query: str) -> Any:
    from websockets.asyncio.client import connect

    return await connect(f"ws://127.0.0.1:{port}/ws{query}", max_size=2**23, open_timeout=30)


def _raw_http(port: int, request: bytes) -> int:
    """The HTTP status the server answers ``request`` with."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return int(data.split(b" ", 2)[1])


async def _http(port: int, request: bytes) -> int:
    return await asyncio.to_thread(_raw_http, port, request)


def _upgrade(origin: bytes) -> bytes:
    return (b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: " + origin + b"\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")


async def _messages(port: int, token: str, raws: list[str | bytes], timeout: float = 60.0) -> list[str]:
    """Admitted client: send each of ``raws``, collect each answer's code (or type)."""
    ws = await _ws(port, f"?token={token}" if token else "")
    codes = []
    async with ws:
        ready = json.loads(await asyncio.wait_for(ws.recv(), timeout))
        assert ready["type"] == "ready", ready
        for raw in raws:
            await ws.send(raw)
            reply = json.loads(await asyncio.wait_for(ws.recv(), timeout))
            codes.append(reply.get("code", reply["type"]))
    return codes


async def surrogate_token(port: int, token: str, k: int) -> list[str]:
    ws = await _ws(port, "")
    async with ws:
        await ws.send('{"type": "hello", "token": "\\ud800"}')
        return [json.loads(await asyncio.wait_for(ws.recv(), 30))["code"]]


async def missing_token(port: int, token: str, k: int) -> list[str]:
    ws = await _ws(port, "")
    async with ws:
        await ws.send('{"type": "hello"}')
        return [json.loads(await asyncio.wait_for(ws.recv(), 30))["code"]]


async def unhashable_fields(port: int, token: str, k: int) -> list[str]:
    return await _messages(port, token, ['{"type": []}', '{"type": {"a": 1}}',
                                         '{"type": "offer", "sdp": "v=0\\r\\n", "mode": []}', '{"type": "ping"}'])


async def duplicate_mid(port: int, token: str, k: int) -> list[str]:
    import aiortc

    pc = aiortc.RTCPeerConnection()
    pc.addTransceiver("audio", direction="recvonly")
    pc.addTransceiver("video", direction="recvonly")
    await pc.setLocalDescription(await pc.createOffer())
    sdp = pc.localDescription.sdp.replace("a=mid:1", "a=mid:0")
    await pc.close()
    return await _messages(port, token, [json.dumps({"type": "offer", "sdp": sdp, "mode": "mic"})])


async def long_path_component(port: int, token: str, k: int) -> list[int]:
    paths = (b"/" + b"a" * 300, b"/x/" + b"b" * 256 + b"/index.html")
    return [await _http(port, b"GET " + p + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n") for p in paths]


async def bad_origin(port: int, token: str, k: int) -> list[int]:
    origins = (b"http://127.0.0.1:99999", b"http://[::1", b"http://[zz]:80", b"http://127.0.0.1:port")
    return [await _http(port, _upgrade(o)) for o in origins]


async def duplicate_host(port: int, token: str, k: int) -> list[int]:
    return [await _http(port, b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nHost: evil.example\r\n\r\n")]


async def long_url(port: int, token: str, k: int) -> list[int]:
    path = b"/" + b"a/" * 4000  # 8 KB, within the HTTP layer's 8 KiB line limit
    return [await _http(port, b"GET " + path + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")]


async def small_photo(port: int, token: str, k: int) -> list[str]:
    return await _messages(port, token, [small_faceless_png(k % 8)], timeout=300)


async def huge_photo(port: int, token: str, k: int) -> list[str]:
    return await _messages(port, token, [huge_flat_png(100 + k % 4)], timeout=300)


async def push_flood(port: int, token: str, k: int) -> list[str]:
    """One /push connection sending 10 s of 16 kHz audio as ten 1 s messages at once; what
    the server answered (nothing while it queues: 'queued'), or 'busy' for a second pusher."""
    import numpy as np
    from websockets.asyncio.client import connect

    pcm = (0.2 * np.random.default_rng(k).standard_normal(16000) * 32767).astype("<i2").tobytes()
    answers = []
    async with connect(f"ws://127.0.0.1:{port}/push?token={token}", open_timeout=30) as ws:
        await ws.send(json.dumps({"rate": 16000, "channels": 1}))
        for _ in range(10):
            try:
                await ws.send(pcm)
                reply = json.loads(await asyncio.wait_for(ws.recv(), 0.05))
                answers.append(reply["code"])
                if reply["code"] == "busy":
                    break
            except asyncio.TimeoutError:
                answers.append("queued")
    return answers


CASES: dict[str, Callable[[int, str, int], Awaitable[list[Any]]]] = {
    f.__name__: f for f in (surrogate_token, missing_token, unhashable_fields, duplicate_mid, long_path_component,
                            bad_origin, duplicate_host, long_url, small_photo, huge_photo, push_flood)
}


async def _run(port: int, case: str, token: str, count: int, parallel: int, seconds: float | None = None) -> dict[str, Any]:
    """``count`` attempts, ``parallel`` at once; with ``seconds``, ``parallel`` clients each
    repeating the case until that much time has passed."""
    fn = CASES[case]
    answers: list[Any] = []
    errors: list[str] = []
    t0 = time.monotonic()

    async def attempt(k: int) -> None:
        try:
            answers.extend(await fn(port, token, k))
        except Exception as exc:  # reported, not raised: the caller asserts on it
            errors.append(f"{type(exc).__name__}: {exc}"[:200])

    async def repeat(worker: int) -> None:
        k = worker
        while time.monotonic() - t0 < (seconds or 0.0):
            await attempt(k)
            k += parallel

    if seconds is not None:
        await asyncio.gather(*(repeat(w) for w in range(parallel)))
    else:
        for start in range(0, count, parallel):
            await asyncio.gather(*(attempt(k) for k in range(start, min(count, start + parallel))))
    return {"case": case, "answers": answers, "errors": errors, "seconds": time.monotonic() - t0}


async def run_case(port: int, case: str, token: str = "", count: int = 1, parallel: int = 1,
                   timeout: float = 300.0, seconds: float | None = None) -> dict[str, Any]:
    """Run ``case`` in a new process against 127.0.0.1:``port``; its JSON result."""
    more = ["--seconds", str(seconds)] if seconds is not None else []
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "testsupport.hostile", str(port), case, "--token", token,
        "--count", str(count), "--parallel", str(parallel), *more, cwd=str(REPO),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"hostile client {case} failed: {err.decode(errors='replace')[-2000:]}")
    return json.loads(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("port", type=int)
    p.add_argument("case", choices=sorted(CASES))
    p.add_argument("--token", default="")
    p.add_argument("--count", type=int, default=1)
    p.add_argument("--parallel", type=int, default=1)
    p.add_argument("--seconds", type=float, default=None, help="repeat for this long (instead of --count)")
    args = p.parse_args(argv)
    print(json.dumps(asyncio.run(_run(args.port, args.case, args.token, args.count, args.parallel, args.seconds))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
