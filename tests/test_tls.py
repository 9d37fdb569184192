"""The page from another machine: browsers give the microphone only to secure pages.

``serve --tls-cert/--tls-key`` serves https and wss (a self-signed pair made here with the
``cryptography`` package); the page over https in headless Chromium is a secure context and
its avatar plays; over plain http under a LAN name (``lan.test`` mapped to 127.0.0.1 by
Chromium's resolver rules, so still loopback only) it is not, and the page says so and why.
"""

from __future__ import annotations

import asyncio
import datetime
import http.client
import ipaddress
import json
import re
import shlex
import shutil
import ssl
import subprocess
import urllib.request
from pathlib import Path

import pytest
import torch

pytest.importorskip("aiortc")

from realtime_sda.errors import RealtimeSDAError  # noqa: E402
from realtime_sda.server import AvatarServer, Limits, ServerConfig  # noqa: E402
from testsupport.chromium import CHROMIUM, HeadlessChromium  # noqa: E402

needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (see .ci/install)")


def self_signed_pair(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost, and its key (PEM files)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "realtime-sda test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                    x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def _still(model):
    h, w = model.config.img_size
    return torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(0)) * 2 - 1


def test_tls_serves_https_and_wss(tmp_path, tiny_model):
    from websockets.asyncio.client import connect

    cert, key = self_signed_pair(tmp_path)
    trust = ssl.create_default_context(cafile=str(cert))

    async def main():
        config = ServerConfig(port=0, tls_cert=cert, tls_key=key)
        async with AvatarServer(tiny_model, config, _still(tiny_model)) as srv:
            url = f"https://127.0.0.1:{srv.port}/"
            page = await asyncio.to_thread(lambda: urllib.request.urlopen(url, context=trust, timeout=10).read())
            async with connect(f"wss://127.0.0.1:{srv.port}/ws", ssl=trust,
                               origin=f"https://127.0.0.1:{srv.port}") as ws:
                ready = json.loads(await ws.recv())
            with pytest.raises((OSError, http.client.HTTPException)):  # plain http to a TLS port: no page
                await asyncio.to_thread(lambda: urllib.request.urlopen(f"http://127.0.0.1:{srv.port}/", timeout=5).read())
            return config.scheme, page, ready

    scheme, page, ready = asyncio.run(main())
    assert scheme == "https" and b"app.js" in page and ready["type"] == "ready"


def test_bad_certificate_files_name_the_fix(tmp_path, tiny_model):
    (tmp_path / "junk.pem").write_text("not a certificate")

    async def main(**files):
        async with AvatarServer(tiny_model, ServerConfig(port=0, **files), _still(tiny_model)):
            pass

    for files in ({"tls_cert": tmp_path / "missing.pem"}, {"tls_cert": tmp_path / "junk.pem"},
                  {"tls_key": tmp_path / "junk.pem"}):
        with pytest.raises(RealtimeSDAError, match="openssl req -x509"):
            asyncio.run(main(**files))


def _wav(tmp: Path) -> Path:
    """A short tone for Chromium's fake microphone."""
    import wave

    import numpy as np

    path = tmp / "tone.wav"
    t = np.arange(48000 * 2) / 48000
    pcm = (0.3 * np.sin(2 * np.pi * 220 * t) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(48000)
        w.writeframes(pcm.tobytes())
    return path


@pytest.mark.slow
@needs_chromium
def test_page_over_https_is_a_secure_context_and_plays(tmp_path, tiny_model):
    cert, key = self_signed_pair(tmp_path)

    async def main():
        config = ServerConfig(port=0, tls_cert=cert, tls_key=key)
        async with AvatarServer(tiny_model, config, _still(tiny_model)) as srv:
            async with HeadlessChromium(_wav(tmp_path), tmp_path / "profile", ("--ignore-certificate-errors",)) as browser, \
                    browser.page(f"https://127.0.0.1:{srv.port}/") as cdp:
                await cdp.wait_for("window.sda && window.sda.ready !== null", 30, "the page to connect")
                secure = await cdp.js("window.isSecureContext")
                await cdp.js("document.getElementById('start').click()")
                await cdp.wait_for("document.getElementById('avatar').readyState >= 2", 40, "the avatar video")
                await cdp.wait_for("document.getElementById('avatar').getVideoPlaybackQuality().totalVideoFrames > 10",
                                   20, "frames")
                return secure, await cdp.js("location.protocol")

    secure, protocol = asyncio.run(main())
    assert secure is True and protocol == "https:"


@pytest.mark.slow
@needs_chromium
def test_page_over_plain_http_from_a_lan_name_says_it_is_not_secure(tmp_path, tiny_model):
    """http://lan.test:PORT/ (lan.test resolved to 127.0.0.1 by Chromium's own rules) is not a
    secure context: the page names that as the cause, at load and when Start asks for the
    microphone, instead of 'No microphone could be opened (TypeError)'."""

    async def main():
        limits = Limits(allowed_origins=frozenset({"http://lan.test"}))  # the server's DNS-rebinding guard
        async with AvatarServer(tiny_model, ServerConfig(port=0, limits=limits), _still(tiny_model)) as srv:
            rules = "--host-resolver-rules=MAP lan.test 127.0.0.1"
            async with HeadlessChromium(_wav(tmp_path), tmp_path / "profile", (rules,)) as browser, \
                    browser.page(f"http://lan.test:{srv.port}/") as cdp:
                await cdp.wait_for("window.sda && window.sda.ready !== null", 30, "the page to connect")
                at_load = await cdp.js("[window.isSecureContext, document.getElementById('message').textContent]")
                await cdp.js("document.getElementById('start').click()")
                await asyncio.sleep(0.5)
                after = await cdp.js("document.getElementById('message').textContent")
                return at_load, after

    (secure, at_load), after = asyncio.run(main())
    assert secure is False
    for text in (at_load, after):
        assert "not a secure context" in text and "https" in text and "localhost" in text, text
        assert "TypeError" not in text and "Plug one in" not in text, text


def test_openssl_line_in_the_readme_makes_a_usable_pair(tmp_path, tiny_model):
    """The README's self-signed pair (``openssl req -x509 ...``) is one the server takes."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    found = re.search(r"`(openssl req -x509[^`]*)`", readme)
    assert found is not None, "README has no `openssl req -x509 ...` command"
    subprocess.run(shlex.split(found.group(1)), cwd=tmp_path, check=True, timeout=60,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    async def main():
        config = ServerConfig(port=0, tls_cert=tmp_path / "cert.pem", tls_key=tmp_path / "key.pem")
        async with AvatarServer(tiny_model, config, _still(tiny_model)) as srv:
            return srv.port

    assert asyncio.run(main()) > 0
