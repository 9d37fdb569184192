"""Drive a real headless Chromium (Debian's ``chromium``) on the avatar page over the DevTools
protocol: for the browser test and the browser benchmark, never a browser download.

``HeadlessChromium(wav)`` starts it with a fake microphone playing ``wav`` (looped by
Chromium), loopback WebRTC allowed and no media permission prompt; ``page(url)`` opens a
:class:`CDP` session on its page.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

__all__ = ["CHROMIUM", "CDP", "HeadlessChromium"]

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


class CDP:
    """A minimal DevTools-protocol session on one page target."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self._ids = itertools.count(1)

    async def call(self, method: str, **params: Any) -> dict:
        msg_id = next(self._ids)
        await self.ws.send(json.dumps({"id": msg_id, "method": method, "params": params}))
        while True:
            msg = json.loads(await asyncio.wait_for(self.ws.recv(), 30))
            if msg.get("id") == msg_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    async def js(self, expression: str) -> Any:
        res = await self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in res:
            raise RuntimeError(f"page error: {res['exceptionDetails']}")
        return res["result"].get("value")

    async def wait_for(self, expression: str, timeout: float, what: str) -> Any:
        """Poll ``expression`` until it is truthy; on timeout say what the page's message is."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = await self.js(expression)
            if value:
                return value
            await asyncio.sleep(0.2)
        message = await self.js("(document.getElementById('message') || {}).textContent")
        raise TimeoutError(f"timed out waiting for {what}; the page says {message!r}")


class HeadlessChromium:
    """``async with HeadlessChromium(wav) as browser: async with browser.page(url) as cdp: ...``"""

    def __init__(self, wav: Path, profile: Path | None = None, extra_args: tuple[str, ...] = ()) -> None:
        """``extra_args``: more Chromium switches, e.g. ``--ignore-certificate-errors`` for a
        self-signed test server or ``--host-resolver-rules=MAP lan.test 127.0.0.1``."""
        if CHROMIUM is None:
            raise RuntimeError("Debian's chromium is not installed: apt-get install chromium")
        self.wav = Path(wav)
        self._tmp = None if profile is not None else tempfile.TemporaryDirectory(prefix="sda-chromium-")
        self.profile = Path(profile) if profile is not None else Path(self._tmp.name)
        self.proc: subprocess.Popen | None = None
        self.port: int | None = None
        self.extra_args = tuple(extra_args)

    async def __aenter__(self) -> "HeadlessChromium":
        args = [
            CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--use-fake-ui-for-media-stream",
            "--use-fake-device-for-media-stream", f"--use-file-for-fake-audio-capture={self.wav}",
            "--allow-loopback-in-peer-connection", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run", "--autoplay-policy=no-user-gesture-required", "--window-size=1100,800",
            f"--user-data-dir={self.profile}", "--remote-debugging-port=0", *self.extra_args, "about:blank",
        ]
        # Popen returns at once (nothing here waits on the process)
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)  # noqa: ASYNC220
        try:
            self.port = await self._devtools_port()
        except BaseException:
            self.stop()
            raise
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self.stop()

    async def _devtools_port(self, timeout: float = 30.0) -> int:
        path = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if path.is_file() and path.read_text().strip():
                return int(path.read_text().split()[0])
            await asyncio.sleep(0.1)
        raise TimeoutError("Chromium did not open its DevTools port")

    @contextlib.asynccontextmanager
    async def page(self, url: str):
        """A CDP session on the browser's page, navigated to ``url``."""
        from websockets.asyncio.client import connect

        listing = f"http://127.0.0.1:{self.port}/json/list"
        targets = await asyncio.to_thread(lambda: json.load(urllib.request.urlopen(listing, timeout=10)))
        target = next(t for t in targets if t["type"] == "page")
        async with connect(target["webSocketDebuggerUrl"], max_size=2**26) as ws:
            cdp = CDP(ws)
            await cdp.call("Page.enable")
            await cdp.call("Page.navigate", url=url)
            yield cdp

    def stop(self) -> None:
        """End Chromium and its children (the process group it was started in)."""
        proc, self.proc = self.proc, None
        if proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
