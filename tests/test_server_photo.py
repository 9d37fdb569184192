"""The server shows the whole photo: the default avatar photo and an uploaded one reach a
real aiortc viewer at the photo's size (long side at most ServerConfig.photo_size), with the face
region moving and the rest of the photo still."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest

pytest.importorskip("aiortc")

from realtime_sda import load_model  # noqa: E402
from realtime_sda.server import AvatarServer, ServerConfig  # noqa: E402
from testsupport.loopback_client import LoopbackViewer  # noqa: E402
from testsupport.media import face_photo, speech_like  # noqa: E402


def test_default_photo_and_upload_are_shown_whole():
    model = load_model("default")
    signal = speech_like(seconds=4.0, rate=48000, seed=2)

    async def main():
        config = ServerConfig(port=0, photo_size=320)
        async with AvatarServer(model, config, default_photo=face_photo()) as srv:
            async with LoopbackViewer(f"ws://127.0.0.1:{srv.port}/ws", signal=signal) as viewer:
                await viewer.wait_frames(60, timeout=40)
            ready = viewer.messages[0]
            from websockets.asyncio.client import connect

            async with connect(f"ws://127.0.0.1:{srv.port}/ws", origin=f"http://127.0.0.1:{srv.port}") as ws:
                await ws.recv()  # ready
                await ws.send(face_photo().read_bytes())
                reply = json.loads(await ws.recv())
            return viewer, ready, reply

    viewer, ready, reply = asyncio.run(main())
    # the bundled 192x256 photo at its own size: photo_size is a cap, a smaller photo is not enlarged
    assert (ready["height"], ready["width"]) == (256, 192)
    assert reply["type"] == "avatar" and (reply["height"], reply["width"]) == (256, 192)
    frames = np.stack(viewer.video.data[-40:]).astype(np.int16)
    assert frames.shape[1:] == (256, 192, 3)
    change = np.abs(np.diff(frames, axis=0)).mean(axis=0).mean(axis=2)  # per pixel over time
    assert change[160:224, 56:136].mean() > 3 * change[:48].mean()  # the mouth moves, the top stays
