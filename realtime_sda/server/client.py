"""One websocket client of the avatar server: its photo, its peer connection, and (in
``mic`` mode) its own avatar session. Everything it owns is released in :meth:`close`."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
from typing import TYPE_CHECKING, Any

from ..errors import FaceNotFoundError, ImageDecodeError, RealtimeSDAError
from .broadcast import FrameHub
from .peer import PeerSession
from .security import decode_image
from .stills import Avatar
from .signaling import Message, SignalingError, encode, error_message, parse_message
from ..streaming.tasks import cancel_and_wait

if TYPE_CHECKING:
    import torch

    from .app import AvatarServer

__all__ = ["Client"]

log = logging.getLogger(__name__)
_ids = itertools.count(1)


class Client:
    """State of one websocket connection (all methods run on the event loop)."""

    def __init__(self, server: "AvatarServer", ws: Any) -> None:
        self.server = server
        self.ws = ws
        self.id = next(_ids)
        self.name = f"client{self.id}"
        self.avatar: Avatar | None = None  # the client's own photo, once it sent one
        self.peer: PeerSession | None = None
        self.session: Any = None
        self.hub: FrameHub | None = None
        self.watching = False
        self._stats_task: asyncio.Task[None] | None = None

    async def send(self, text: str) -> None:
        with contextlib.suppress(Exception):  # the socket may already be gone
            await self.ws.send(text)

    async def run(self) -> None:
        """Answer messages until the websocket closes."""
        cfg = self.server.model.config
        own = 1000.0 * cfg.lookahead_samples / cfg.audio_rate
        lookahead = own if self.server.lookahead_ms is None else min(float(self.server.lookahead_ms), own)
        default = self.server.default_avatar
        h, w = default.size(cfg) if default is not None else tuple(cfg.img_size)
        await self.send(encode(
            "ready", video_rate=float(cfg.video_rate), width=w, height=h,
            lookahead_ms=round(lookahead, 1),
            broadcast=self.server.broadcast is not None, has_avatar=default is not None,
        ))
        self._stats_task = asyncio.get_running_loop().create_task(self._stats(), name=f"{self.name}-stats")
        async for raw in self.ws:
            try:
                if isinstance(raw, (bytes, bytearray)):
                    await self._on_photo(bytes(raw))
                elif len(raw) > self.server.limits.max_text_bytes:
                    raise SignalingError("bad_message", f"text messages are limited to {self.server.limits.max_text_bytes} bytes")
                else:
                    await self._on_message(parse_message(raw, self.server.limits.max_sdp_bytes))
            except SignalingError as exc:
                await self.send(error_message(exc.code, str(exc)))
            except FaceNotFoundError:
                await self.send(error_message("no_face", "no face found in the photo: choose a photo with one face, seen from the front"))
            except ImageDecodeError as exc:
                await self.send(error_message("bad_image", str(exc)))
            except RealtimeSDAError as exc:
                await self.send(error_message("internal", str(exc)))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # never let one client's bad input take the server down
                log.exception("%s: unexpected error", self.name)
                await self.send(error_message("internal", f"the server could not handle that ({type(exc).__name__})"))

    async def _on_photo(self, data: bytes) -> None:
        # decoding and face detection take tens of ms: off the event loop (other sessions)
        limits = self.server.limits
        rgb = await asyncio.to_thread(decode_image, data, limits)
        self.avatar = await self.server.make_avatar(rgb)
        h, w = self.avatar.size(self.server.model.config)
        await self.send(encode("avatar", width=w, height=h))

    @property
    def still(self) -> "torch.Tensor | None":
        """The model's input of the client's own photo (None before one was sent)."""
        return self.avatar.still if self.avatar is not None else None

    async def _on_message(self, msg: Message) -> None:
        if msg.type == "ping":
            await self.send(encode("pong"))
        elif msg.type == "hello":
            pass  # the token was checked before the client was admitted
        elif msg.type == "stop":
            await self.close_media()
            await self.send(encode("stopped"))
        elif msg.type == "offer":
            await self._on_offer(msg)

    async def _on_offer(self, msg: Message) -> None:
        await self.close_media()
        server = self.server
        if msg.mode == "watch":
            if server.broadcast is None:
                raise SignalingError("no_broadcast", "no broadcast is running on this server: use your microphone instead")
        else:
            avatar = self.avatar if self.avatar is not None else server.default_avatar
            if avatar is None:
                raise SignalingError("no_avatar", "choose a photo first: this server has no default avatar")
        peer = PeerSession(server.ice_servers, float(server.model.config.video_rate), self.name,
                           audio_prefetch=server.config.audio_prefetch,
                           playout_margin_s=server.config.playout_margin_ms / 1000.0)
        self.peer = peer
        answer = await peer.answer(msg.sdp or "", want_mic=msg.mode == "mic")
        if msg.mode == "watch":
            assert server.broadcast is not None
            server.broadcast.hub.add(peer.feed)
            self.hub, self.watching = server.broadcast.hub, True
        else:
            assert avatar is not None
            self.session = await server.open_session(avatar)
            self.hub = FrameHub(self.session, self.name)
            self.hub.add(peer.feed)
            self.hub.start()
            peer.on_audio = self.session.push_audio
        await self.send(encode("answer", sdp=answer))

    async def _stats(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            peer, hub = self.peer, self.hub
            if peer is None or hub is None:
                continue
            if peer.failed.is_set():
                await self.close_media()
                await self.send(error_message("connection_lost", "the media connection was lost: press Start to connect again"))
                continue
            lat = hub.last_latency_s
            await self.send(encode(
                "stats", frames=peer.video.sent, dropped=peer.video.dropped_late + peer.feed.dropped_full,
                audio_silent=peer.audio.silent, viewers=hub.viewers,
                latency_ms=None if math.isnan(lat) else round(1000 * (lat + peer.feed.clock.delay_s), 1),
            ))

    async def close_media(self, timeout: float = 5.0) -> None:
        """Close the peer connection and this client's session (keeps the websocket)."""
        peer, self.peer = self.peer, None
        hub, self.hub = self.hub, None
        session, self.session = self.session, None
        if peer is not None and hub is not None:
            hub.remove(peer.feed)
        if hub is not None and not self.watching:
            await hub.close(timeout)
        self.watching = False
        if peer is not None:
            await peer.close(timeout)
        if session is not None:
            await asyncio.wait_for(session.close(), timeout)

    async def close(self, timeout: float = 5.0) -> None:
        """Release everything (the websocket is closed or closing)."""
        task, self._stats_task = self._stats_task, None
        await cancel_and_wait(task, timeout)
        await self.close_media(timeout)
