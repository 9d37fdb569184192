"""One websocket client of the avatar server: its photo, its peer connection, and (in
``mic`` mode) its own avatar session. Everything it owns is released in :meth:`close`.

Bad input is answered with an ``error`` message and logged as one rate-limited line
(:class:`.logs.RefusalLog`); each media session logs one line when it opens and one with its
figures (duration, frames sent and dropped, latency) when it closes."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import statistics
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import FaceNotFoundError, ImageDecodeError, RealtimeSDAError
from ..media.heap import release_memory
from ..streaming.tasks import cancel_and_wait
from .broadcast import FrameHub
from .logs import RefusalLog, client_address
from .peer import PeerSession
from .photos import PhotoBusyError
from .security import Limits
from .signaling import Message, SignalingError, encode, error_message, parse_message
from .stills import Avatar

if TYPE_CHECKING:
    import torch

    from ..core.config import SDAConfig

__all__ = ["Client", "ClientContext"]

log = logging.getLogger(__name__)
_ids = itertools.count(1)


@dataclass(frozen=True)
class ClientContext:
    """What a client needs of its server, built once when the server starts (so a client
    never reaches into the server itself)."""

    limits: Limits
    model_config: "SDAConfig"
    #: the lookahead the server's sessions use, ms (announced in ``ready``)
    lookahead_ms: float
    default_avatar: Avatar | None
    ice_servers: tuple[str, ...]
    audio_prefetch: int | None
    playout_margin_s: float
    #: (client name, photo file bytes) -> its :class:`Avatar` (may raise ImageDecodeError,
    #: FaceNotFoundError, PhotoBusyError); decoded and aligned off the event loop
    make_avatar: Callable[[str, bytes], Awaitable[Avatar]]
    #: a live session showing an avatar
    open_session: Callable[[Avatar], Awaitable[Any]]
    #: the broadcast's frame hub, None when the server runs no broadcast
    broadcast_hub: Callable[[], FrameHub | None]
    #: where refusals are logged (one line each, rate-limited per address)
    refusals: RefusalLog = field(default_factory=RefusalLog)

    @property
    def video_rate(self) -> float:
        return float(self.model_config.video_rate)


class Client:
    """State of one websocket connection (all methods run on the event loop)."""

    def __init__(self, context: ClientContext, ws: Any) -> None:
        self.context = context
        self.ws = ws
        self.id = next(_ids)
        self.name = f"client{self.id}"
        self.address = client_address(ws)
        self.avatar: Avatar | None = None  # the client's own photo, once it sent one
        self.peer: PeerSession | None = None
        self.session: Any = None
        self.hub: FrameHub | None = None
        self.watching = False
        self._stats_task: asyncio.Task[None] | None = None
        self._opened_at = 0.0
        self._latencies: deque[float] = deque(maxlen=3600)  # ms, one a second (an hour at most)

    async def send(self, text: str) -> None:
        with contextlib.suppress(Exception):  # the socket may already be gone
            await self.ws.send(text)

    async def run(self) -> None:
        """Answer messages until the websocket closes."""
        ctx = self.context
        cfg = ctx.model_config
        default = ctx.default_avatar
        h, w = default.size(cfg) if default is not None else tuple(cfg.img_size)
        await self.send(encode(
            "ready", video_rate=ctx.video_rate, width=w, height=h,
            lookahead_ms=round(ctx.lookahead_ms, 1),
            broadcast=ctx.broadcast_hub() is not None, has_avatar=default is not None,
        ))
        self._stats_task = asyncio.get_running_loop().create_task(self._stats(), name=f"{self.name}-stats")
        async for raw in self.ws:
            try:
                if isinstance(raw, (bytes, bytearray)):
                    await self._on_photo(bytes(raw))
                elif len(raw) > ctx.limits.max_text_bytes:
                    raise SignalingError("bad_message", f"text messages are limited to {ctx.limits.max_text_bytes} bytes")
                else:
                    await self._on_message(parse_message(raw, ctx.limits.max_sdp_bytes))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # never let one client's bad input take the server down
                await self._refuse(exc)

    async def _refuse(self, exc: Exception) -> None:
        """Answer a refused message with an ``error`` (its code and plain words) and log one
        line (rate-limited; a traceback only at DEBUG, for errors nothing foresaw)."""
        if isinstance(exc, SignalingError):
            code, text = exc.code, str(exc)
        elif isinstance(exc, FaceNotFoundError):
            code, text = "no_face", "no face found in the photo: choose a photo with one face, seen from the front"
        elif isinstance(exc, ImageDecodeError):
            code, text = "bad_image", str(exc)
        elif isinstance(exc, PhotoBusyError):
            code, text = "busy", str(exc)
        elif isinstance(exc, RealtimeSDAError):
            code, text = "internal", str(exc)
        else:
            log.debug("%s: unexpected error", self.name, exc_info=exc)
            code, text = "internal", f"the server could not handle that ({type(exc).__name__})"
        self.context.refusals.refuse(self.address, f"{self.name}: {code}: {text}")
        await self.send(error_message(code, text))

    async def _on_photo(self, data: bytes) -> None:
        # decoding and face detection take tens of ms to seconds: the server's photo pool
        ctx = self.context
        self.avatar = await ctx.make_avatar(self.name, data)
        h, w = self.avatar.size(ctx.model_config)
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
        ctx = self.context
        if msg.mode == "watch":
            if ctx.broadcast_hub() is None:
                raise SignalingError("no_broadcast", "no broadcast is running on this server: use your microphone instead")
        else:
            avatar = self.avatar if self.avatar is not None else ctx.default_avatar
            if avatar is None:
                raise SignalingError("no_avatar", "choose a photo first: this server has no default avatar")
        peer = PeerSession(list(ctx.ice_servers), ctx.video_rate, self.name,
                           audio_prefetch=ctx.audio_prefetch, playout_margin_s=ctx.playout_margin_s)
        self.peer = peer
        answer = await peer.answer(msg.sdp or "", want_mic=msg.mode == "mic")
        if msg.mode == "watch":
            broadcast_hub = ctx.broadcast_hub()
            if broadcast_hub is None:
                raise SignalingError("no_broadcast", "no broadcast is running on this server: use your microphone instead")
            broadcast_hub.add(peer.feed)
            self.hub, self.watching = broadcast_hub, True
        else:
            assert avatar is not None
            self.session = await ctx.open_session(avatar)
            self.hub = FrameHub(self.session, self.name)
            self.hub.add(peer.feed)
            self.hub.start()
            peer.on_audio = self.session.push_audio
        await self.send(encode("answer", sdp=answer))
        self._opened_at = time.monotonic()
        self._latencies.clear()
        log.info("%s (%s): session opened (%s)", self.name, self.address, msg.mode)

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
            latency_ms = None if math.isnan(lat) else round(1000 * (lat + peer.feed.clock.delay_s), 1)
            if latency_ms is not None:
                self._latencies.append(latency_ms)
            await self.send(encode(
                "stats", frames=peer.video.sent, dropped=peer.video.dropped_late + peer.feed.dropped_full,
                audio_silent=peer.audio.silent, viewers=hub.viewers, latency_ms=latency_ms,
            ))

    async def close_media(self, timeout: float = 5.0) -> None:
        """Close the peer connection and this client's session (keeps the websocket)."""
        peer, self.peer = self.peer, None
        hub, self.hub = self.hub, None
        session, self.session = self.session, None
        if peer is not None and self._opened_at:
            self._log_closed(peer)
        if peer is not None and hub is not None:
            hub.remove(peer.feed)
        if hub is not None and not self.watching:
            await hub.close(timeout)
        self.watching = False
        if peer is not None:
            await peer.close(timeout)
        if session is not None:
            await asyncio.wait_for(session.close(), timeout)
        if peer is not None:  # its codecs' buffers were freed: hand the pages back (off the loop)
            await asyncio.to_thread(release_memory)

    def _log_closed(self, peer: PeerSession) -> None:
        """One line with the session's figures."""
        seconds, self._opened_at = time.monotonic() - self._opened_at, 0.0
        lat = f"{statistics.median(self._latencies):.0f} ms (median)" if self._latencies else "not measured"
        log.info("%s (%s): session closed after %.1f s: %d frames sent, %d dropped, latency %s",
                 self.name, self.address, seconds, peer.video.sent,
                 peer.video.dropped_late + peer.feed.dropped_full, lat)

    async def close(self, timeout: float = 5.0) -> None:
        """Release everything (the websocket is closed or closing)."""
        task, self._stats_task = self._stats_task, None
        await cancel_and_wait(task, timeout)
        await self.close_media(timeout)
