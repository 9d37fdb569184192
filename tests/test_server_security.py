"""Server input checks without media: origin, token, photo decoding, signaling schema, static
files (incl. path traversal), over a real server on 127.0.0.1 where it matters."""

from __future__ import annotations

import asyncio
import io
import json

import numpy as np
import pytest
import torch

pytest.importorskip("aiortc")
pytest.importorskip("websockets")

from PIL import Image  # noqa: E402

from realtime_sda.errors import ImageDecodeError  # noqa: E402
from realtime_sda.server.security import Limits, decode_image, origin_allowed, token_matches  # noqa: E402
from realtime_sda.server.signaling import SignalingError, parse_message  # noqa: E402
from realtime_sda.server.static import WEB_CLIENT_DIR, resolve_static  # noqa: E402


def _png(w: int, h: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((h, w, 3), 128, np.uint8)).save(buf, "PNG")
    return buf.getvalue()


# ---- pure checks --------------------------------------------------------------------------
def test_origin_same_host_and_port_only():
    assert origin_allowed("http://127.0.0.1:8080", "127.0.0.1:8080")
    assert origin_allowed("http://localhost:8080", "LOCALHOST:8080")
    assert not origin_allowed("http://127.0.0.1:9999", "127.0.0.1:8080")
    assert not origin_allowed("https://evil.example", "127.0.0.1:8080")
    assert not origin_allowed("null", "127.0.0.1:8080")
    assert origin_allowed("https://app.example", "127.0.0.1:8080", frozenset({"https://app.example:443"}))
    assert origin_allowed(None, "127.0.0.1:8080")  # not a browser page


def test_token_compare():
    assert token_matches(None, None) and token_matches("x", None)
    assert token_matches("s3cret", "s3cret")
    assert not token_matches("s3cre", "s3cret") and not token_matches(None, "s3cret")


def test_decode_image_accepts_png_and_refuses_junk():
    rgb = decode_image(_png(40, 30))
    assert rgb.shape == (30, 40, 3) and rgb.dtype == np.uint8
    with pytest.raises(ImageDecodeError, match="could not be read"):
        decode_image(b"GIF89a" + b"\x00" * 50)
    with pytest.raises(ImageDecodeError, match="empty"):
        decode_image(b"")
    with pytest.raises(ImageDecodeError, match="MB limit"):
        decode_image(b"\x00" * 100, Limits(max_image_bytes=50))
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, "TIFF")
    with pytest.raises(ImageDecodeError, match="not accepted"):
        decode_image(buf.getvalue())


def _png_header_only(w: int, h: int) -> bytes:
    """A PNG whose header claims w x h pixels, with one tiny compressed row (a bomb's shape)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * (3 * w + 1))) + chunk(b"IEND", b"")


def test_decompression_bomb_refused_before_decoding():
    for w, h in [(6000, 6000), (20000, 20000)]:  # over our limit; over Pillow's own limit too
        bomb = _png_header_only(w, h)
        assert len(bomb) < 200_000
        with pytest.raises(ImageDecodeError, match="megapixel|too large"):
            decode_image(bomb)


def test_signaling_schema():
    assert parse_message('{"type":"ping"}').type == "ping"
    msg = parse_message(json.dumps({"type": "offer", "sdp": "v=0\r\n", "mode": "watch"}))
    assert msg.mode == "watch" and msg.sdp == "v=0\r\n"
    for bad, code in [("{", "bad_message"), ("[1]", "bad_message"), ('{"type":"x"}', "bad_message"),
                      ('{"type":"offer"}', "bad_sdp"), ('{"type":"offer","sdp":"hello"}', "bad_sdp"),
                      ('{"type":"offer","sdp":"v=0","mode":"spy"}', "bad_message"),
                      ('{"type":"hello","token":5}', "bad_message"), ("[" * 100000, "bad_message")]:
        with pytest.raises(SignalingError) as info:
            parse_message(bad)
        assert info.value.code == code, bad
    with pytest.raises(SignalingError, match="over"):
        parse_message(json.dumps({"type": "offer", "sdp": "v=0" + "a" * 70000}))


def test_static_paths_cannot_escape(tmp_path):
    root = tmp_path / "site"
    root.mkdir()
    (root / "index.html").write_text("hi")
    (tmp_path / "secret.txt").write_text("secret")
    (root / "link").symlink_to(tmp_path / "secret.txt")
    assert resolve_static("/", root) == (root / "index.html").resolve()
    assert resolve_static("/index.html?x=1", root) is not None
    for path in ["/../secret.txt", "/%2e%2e/secret.txt", "/..%2fsecret.txt", "//etc/passwd",
                 "/link", "/a/../../secret.txt", "/%00index.html", "/..\\secret.txt"]:
        assert resolve_static(path, root) is None, path
    assert resolve_static("/app.js", WEB_CLIENT_DIR) is not None


# ---- over a real server ---------------------------------------------------------------------
@pytest.fixture()
def server_factory(tiny_model):
    from realtime_sda.server import AvatarServer, ServerConfig

    def make(**kw):
        still = torch.zeros(1, 3, *tiny_model.config.img_size)
        return AvatarServer(tiny_model, ServerConfig(port=0, **kw), still)

    return make


def _http_get(port: int, path: str, host: str | None = None, method: str = "GET") -> tuple[int, bytes, dict]:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request(method, path, headers={"Host": host} if host else {})  # path sent as is
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    return resp.status, body, dict(resp.getheaders())


def _raw_http(port: int, request: bytes) -> bytes:
    """Everything the server sends back for ``request`` until it closes the connection."""
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return data


def test_http_methods_on_static_paths(server_factory):
    async def main():
        async with server_factory() as srv:
            status, body, headers = await asyncio.to_thread(_http_get, srv.port, "/")
            assert status == 200 and body
            # HEAD: GET's status and headers, no body (read from the socket: http.client
            # would not read a body after HEAD even if one came)
            raw = await asyncio.to_thread(_raw_http, srv.port, b"HEAD / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            head, _, rest = raw.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200"), head
            assert f"Content-Length: {len(body)}".encode() in head and b"Content-Security-Policy" in head
            assert rest == b""
            raw = await asyncio.to_thread(_raw_http, srv.port, b"HEAD /missing.js HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            assert raw.startswith(b"HTTP/1.1 404") and raw.endswith(b"\r\n\r\n")
            for method in ["POST", "PUT", "DELETE", "OPTIONS", "PATCH", "TRACE", "BREW"]:
                status, body, headers = await asyncio.to_thread(_http_get, srv.port, "/index.html", None, method)
                assert status == 405 and headers["Allow"] == "GET, HEAD" and b"<video" not in body, method
            # a request with a body: websockets closes the connection before the server sees
            # it (no file sent), and the server goes on serving
            raw = await asyncio.to_thread(
                _raw_http, srv.port,
                b"POST /app.js HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\n\r\nhello")
            assert b"200 OK" not in raw
            status, _, _ = await asyncio.to_thread(_http_get, srv.port, "/app.js")
            assert status == 200
    asyncio.run(main())


def test_http_static_and_traversal(server_factory):
    async def main():
        async with server_factory() as srv:
            get = lambda p: asyncio.to_thread(_http_get, srv.port, p)  # noqa: E731
            status, body, headers = await get("/")
            assert status == 200 and b"<video" in body and "frame-ancestors" in headers["Content-Security-Policy"]
            status, body, headers = await get("/app.js")
            assert status == 200 and headers["Content-Type"].startswith("text/javascript")
            for path in ["/../pyproject.toml", "/%2e%2e/pyproject.toml", "/..%2f..%2fetc%2fpasswd", "/../../../../etc/passwd"]:
                status, body, _ = await get(path)
                assert status == 404 and b"realtime-sda" not in body and b"root:" not in body, path
    asyncio.run(main())


def test_websocket_origin_token_and_bad_messages(server_factory):
    from websockets.asyncio.client import connect
    from websockets.exceptions import InvalidStatus

    async def main():
        async with server_factory(token="tok-123") as srv:
            url = f"ws://127.0.0.1:{srv.port}/ws"
            with pytest.raises(InvalidStatus) as info:
                await connect(url + "?token=tok-123", additional_headers={"Origin": "http://evil.example"})
            assert info.value.response.status_code == 403
            async with connect(url + "?token=wrong") as ws:  # wrong token, then no hello
                await ws.send(json.dumps({"type": "hello", "token": "nope"}))
                reply = json.loads(await ws.recv())
                assert reply["code"] == "bad_token"
                await ws.wait_closed()
                assert ws.close_code == 1008
            origin = f"http://127.0.0.1:{srv.port}"
            async with connect(url, additional_headers={"Origin": origin}) as ws:  # token by hello
                await ws.send(json.dumps({"type": "hello", "token": "tok-123"}))
                assert json.loads(await ws.recv())["type"] == "ready"
                cases = [("not json", "bad_message"), ('{"type":"offer","sdp":"v=0\\r\\ngarbage"}', "bad_sdp"),
                         (b"\x89PNG\r\n\x1a\nbroken", "bad_image"), ('{"type":"warp"}', "bad_message"),
                         ('{"type":"ping","pad":"' + "x" * 300_000 + '"}', "bad_message")]
                for payload, code in cases:
                    await ws.send(payload)
                    reply = json.loads(await ws.recv())
                    assert reply["type"] == "error" and reply["code"] == code, (payload, reply)
                await ws.send(_png(200, 200))  # a valid image without a face
                reply = json.loads(await asyncio.wait_for(ws.recv(), 30))
                assert reply["code"] == "no_face" and "no face found in the photo" in reply["message"]
                await ws.send('{"type":"ping"}')
                assert json.loads(await ws.recv())["type"] == "pong"  # still served
            async with connect(url + "?token=tok-123") as ws:  # huge message: closed with 1009
                assert json.loads(await ws.recv())["type"] == "ready"
                await ws.send(b"\x00" * (Limits().max_message_bytes + 1))
                await ws.wait_closed()
                assert ws.close_code == 1009
    asyncio.run(main())


def test_server_full_message(server_factory):
    from websockets.asyncio.client import connect

    async def main():
        async with server_factory(limits=Limits(max_sessions=1)) as srv:
            url = f"ws://127.0.0.1:{srv.port}/ws"
            async with connect(url) as first:
                assert json.loads(await first.recv())["type"] == "ready"
                async with connect(url) as second:
                    reply = json.loads(await second.recv())
                    assert reply["code"] == "server_full" and "server full" in reply["message"]
                    await second.wait_closed()
                    assert second.close_code == 1013
            for _ in range(100):  # the slot is freed when the first client leaves
                if not srv.clients:
                    break
                await asyncio.sleep(0.02)
            async with connect(url) as third:
                assert json.loads(await third.recv())["type"] == "ready"
    asyncio.run(main())


def test_host_allowed_guards_against_dns_rebinding():
    from realtime_sda.server.security import host_allowed

    for host in ["127.0.0.1:8080", "localhost:8080", "LOCALHOST", "[::1]:8080", "127.0.0.2:1", "app.localhost:80"]:
        assert host_allowed(host, loopback_only=True), host
    for host in ["evil.example:8080", "192.168.1.5:8080", "", None, "127.0.0.1.evil.example:8080"]:
        assert not host_allowed(host, loopback_only=True), host
    assert host_allowed("tv.example:8080", True, frozenset({"http://tv.example:8080"}))
    assert host_allowed("evil.example:8080", loopback_only=False)  # bound publicly: names unknown


def test_rebound_host_name_is_refused(server_factory):
    """A page on evil.example whose name now points at 127.0.0.1 sends Host: evil.example."""

    async def main():
        async with server_factory() as srv:
            status, body, _ = await asyncio.to_thread(_http_get, srv.port, "/", f"evil.example:{srv.port}")
            assert status == 421 and b"DNS-rebinding" in body
            status, _, _ = await asyncio.to_thread(_http_get, srv.port, "/ws", f"evil.example:{srv.port}")
            assert status == 421
            status, _, _ = await asyncio.to_thread(_http_get, srv.port, "/", f"localhost:{srv.port}")
            assert status == 200

    asyncio.run(main())
