"""The avatar server: ONE ``websockets`` server serving the page over HTTP (HTTPS with a
certificate: browsers give the microphone only to secure pages, or to localhost) through
``process_request``, signaling on ``/ws`` and broadcast audio on ``/push``, with one shared
model and inference worker that batches every session. Hostile requests get a plain refusal
and one rate-limited log line (:mod:`.logs`); photos are worked on in :mod:`.photos`' pool."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import json
import logging
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from ..errors import RealtimeSDAError, require
from .broadcast import SAY_ROUTES, answer_say_request
from .client import Client, ClientContext
from .logs import CONNECTION_LOGGER, ConnectionLogFilter, RefusalLog, client_address
from .photos import UPLOAD_DECODE_SIDE, PhotoPool, Upload, pooled_avatar, warm_up
from .playout import DEFAULT_MARGIN_S, check_margin
from .security import Limits, host_allowed, origin_allowed, tls_context, token_matches
from .signaling import SignalingError, error_message, parse_message
from .static import WEB_CLIENT_DIR, static_response
from .stills import Avatar

__all__ = ["ServerConfig", "AvatarServer", "is_loopback"]

log = logging.getLogger(__name__)

#: a /push message larger than this closes the pusher's connection (1009) before it is read
#: whole; up to it, one over the broadcast's own limit is answered ``too_large``
PUSH_MAX_FRAME_BYTES = 2 << 20


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and 'localhost'."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass
class ServerConfig:
    """Everything ``realtime-sda serve`` can set."""

    host: str = "127.0.0.1"
    port: int = 8080
    ice_servers: list[str] = field(default_factory=list)  # none: no STUN/TURN traffic at all
    token: str | None = None
    limits: Limits = field(default_factory=Limits)
    static_dir: Path = WEB_CLIENT_DIR
    broadcast: bool = False  # run the broadcast avatar (fed by /push or broadcast_audio)
    broadcast_audio: Path | None = None
    lookahead_ms: float | None = None
    max_batch: int = 64
    ice_addresses: list[str] | None = None  # host candidates; default: loopback when host is
    torch_threads: int | None = None  # CPU model: default cpu_count - 1 (one core for the codecs)
    #: microphone packets aiortc holds before decoding (20 ms each; aiortc's own default is 4):
    #: more absorbs network jitter and reordering; 0 (each packet decoded as it arrives in
    #: sequence) suits loopback and a LAN; None keeps aiortc's
    audio_prefetch: int | None = 0
    #: how early (at least) the latest frame of the last 10 s reached a viewer's feed before it
    #: is sent: the playout margin that absorbs how unevenly frames are made. Playback moves
    #: later when a frame comes closer than 5 ms to its slot and earlier again after 10 s of
    #: frames all early by more than 1.5x this. 10 ms suits a quiet server; a busy CPU adapts
    playout_margin_ms: float = 1000.0 * DEFAULT_MARGIN_S  # 5 to 1000 (playout.check_margin)
    #: show the whole photo (uploads and the default avatar photo), the face moving in it;
    #: False: the model's aligned crop, as before
    photo: bool = True
    #: long side of the whole-photo frames at most, pixels (512 stays real time on a 2-core CPU;
    #: a smaller photo keeps its size)
    photo_size: int | None = 512
    #: PEM certificate (chain) and private key: serve HTTPS/WSS (``serve --tls-cert/--tls-key``)
    tls_cert: Path | None = None
    tls_key: Path | None = None
    #: photos worked on at once, and waiting at most (then refused with ``busy``)
    photo_workers: int = 1
    photo_queue: int = 4

    @property
    def scheme(self) -> str:
        """``https`` with a certificate, else ``http``."""
        return "https" if self.tls_cert is not None else "http"



class AvatarServer:
    """``async with AvatarServer(model, config, default_still) as server: ...`` (or
    ``await start()`` / ``await stop()``). ``server.port`` is the bound port.

    The default avatar: ``default_photo`` (a photo, prepared at start: the whole photo when
    ``config.photo``, else its crop) or ``default_still`` (the model's input, shown as the crop).
    """

    def __init__(self, model: Any, config: ServerConfig, default_still: Any = None, default_photo: Any = None) -> None:
        self.model = model
        self.config = config
        self.limits = config.limits
        self.ice_servers = list(config.ice_servers)
        self.lookahead_ms = config.lookahead_ms
        self.default_avatar: Avatar | None = Avatar(default_still) if default_still is not None else None
        self._default_photo = default_photo
        self.clients: set[Client] = set()
        self.broadcast: Any = None
        self.worker: Any = None
        self._server: Any = None
        self._handlers: set[asyncio.Task[Any]] = set()
        self._undo_ice: Any = None
        self._client_context: ClientContext | None = None
        self.port = config.port
        self.refusals = RefusalLog()
        self._log_filter = ConnectionLogFilter(self.refusals)
        self.photos: PhotoPool | None = None

    # ---- life cycle ----------------------------------------------------------------------
    async def start(self) -> "AvatarServer":
        """Start the worker, the broadcast and the server (all undone if any step fails: a
        port in use is one plain error naming ``--port``)."""
        try:
            return await self._start()
        except BaseException:
            await self.stop()
            raise

    async def _start(self) -> "AvatarServer":
        from ..streaming import InferenceWorker

        ws_server = require("websockets.asyncio.server", "server", "The WebRTC server")
        from .peer import restrict_ice_to

        tls = tls_context(self.config.tls_cert, self.config.tls_key)
        self.photos = PhotoPool(self.config.photo_workers, self.config.photo_queue)
        await self.photos.run("server", warm_up)  # dlib's models, before any viewer watches

        ice = self.config.ice_addresses
        if ice is None and is_loopback(self.config.host):
            ice = ["127.0.0.1"]  # a loopback server only talks to browsers on this machine
        if ice is not None and self._undo_ice is None:
            self._undo_ice = restrict_ice_to(ice)  # undone in stop()
        self.worker = InferenceWorker(self.model, max_batch=self.config.max_batch, num_threads=self._torch_threads())
        await self.worker.start()
        if self._default_photo is not None:
            self.default_avatar = await self.make_avatar(self._default_photo)
        if self.config.broadcast or self.config.broadcast_audio is not None:
            if self.default_avatar is None:
                raise RealtimeSDAError("a broadcast needs an avatar: pass --avatar IMAGE")
            from .broadcast import Broadcast

            session = await self.open_session(self.default_avatar)
            self.broadcast = Broadcast(session, self.config.broadcast_audio)
            self.broadcast.start()
        self._client_context = self._make_client_context()
        conn_log = logging.getLogger(CONNECTION_LOGGER)
        conn_log.addFilter(self._log_filter)  # removed in stop()
        try:
            self._server = await ws_server.serve(
                self._handle, self.config.host, self.config.port, ssl=tls, logger=conn_log,
                process_request=self._process_request, max_size=self.limits.max_message_bytes,
                max_queue=4, ping_interval=10, ping_timeout=10, close_timeout=2,
            )
        except OSError as exc:
            raise RealtimeSDAError(_bind_error(exc, self.config.host, self.config.port)) from None
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("serving on %s://%s:%d/", self.config.scheme, self.config.host, self.port)
        return self

    def _make_client_context(self) -> ClientContext:
        cfg = self.model.config
        own = 1000.0 * cfg.lookahead_samples / cfg.audio_rate
        return ClientContext(
            limits=self.limits,
            model_config=cfg,
            lookahead_ms=own if self.lookahead_ms is None else min(float(self.lookahead_ms), own),
            default_avatar=self.default_avatar,
            ice_servers=tuple(self.ice_servers),
            audio_prefetch=self.config.audio_prefetch,
            playout_margin_s=check_margin(self.config.playout_margin_ms / 1000.0),
            make_avatar=self.avatar_from_upload,
            open_session=self.open_session,
            refusals=self.refusals,
            broadcast_hub=lambda: self.broadcast.hub if self.broadcast is not None else None,
        )

    def _torch_threads(self) -> int | None:
        """Torch CPU threads for the inference thread. On CPU, torch's thread pool competing
        with the video encoder threads for every core stalls single frames for hundreds of
        ms (measured on 2 cores: 25 fps fell to ~10), so one core is left to the media."""
        import os

        import torch

        if getattr(self.model, "device", torch.device("cpu")).type != "cpu":
            return None
        return self.config.torch_threads or max(1, min(torch.get_num_threads(), (os.cpu_count() or 2) - 1))

    async def stop(self, timeout: float = 5.0) -> None:
        """Close every client, the broadcast, the photo pool and the worker (each step
        bounded)."""
        logging.getLogger(CONNECTION_LOGGER).removeFilter(self._log_filter)
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), timeout)
            self._server = None
        for task in tuple(self._handlers):
            task.cancel()
        if self._handlers:
            await asyncio.wait(tuple(self._handlers), timeout=timeout)
        if self._undo_ice is not None:
            self._undo_ice()
            self._undo_ice = None
        if self.broadcast is not None:
            await self.broadcast.close(timeout)
            self.broadcast = None
        if self.photos is not None:
            await self.photos.close(timeout)
            self.photos = None
        if self.worker is not None:
            await self.worker.stop(timeout=timeout)
            self.worker = None

    async def __aenter__(self) -> "AvatarServer":
        return await self.start()

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()

    async def make_avatar(self, image: Any, owner: str = "server") -> Avatar:
        """A photo (path, RGB array or :class:`.photos.Upload`) -> its :class:`Avatar` (may raise
        FaceNotFoundError, or PhotoBusyError when the photo pool is full). Decoding and
        detection run in the photo pool, the model's rest pose on the inference thread."""
        assert self.photos is not None, "start() the server first"
        return await pooled_avatar(self.photos, self.worker, image, owner=owner, whole_photo=self.config.photo,
                                   size=self.config.photo_size)

    async def avatar_from_upload(self, owner: str, data: bytes) -> Avatar:
        """A photo file sent by client ``owner`` -> its :class:`Avatar`: decoded (at most
        about :data:`UPLOAD_DECODE_SIDE` px long, within the limits) and aligned in the photo
        pool, never on the event loop or in the executor that encodes the media."""
        side = max(UPLOAD_DECODE_SIDE, self.config.photo_size or 0)
        return await self.make_avatar(Upload(data, self.limits, side), owner)

    async def open_session(self, avatar: Avatar) -> Any:
        """A live session showing ``avatar``."""
        return await self.worker.open_session(avatar.still, seed=None, lookahead_ms=self.lookahead_ms,
                                              renderer=avatar.renderer)

    # ---- HTTP ----------------------------------------------------------------------------
    def _refuse(self, connection: Any, status: HTTPStatus, text: str) -> Any:
        """A plain-text refusal, logged as one rate-limited line."""
        self.refusals.refuse(client_address(connection), f"HTTP {status.value}: {text}")
        return connection.respond(status, text + "\n")

    def _process_request(self, connection: Any, request: Any) -> Any:
        try:
            return self._route(connection, request)
        except Exception as exc:  # a request nothing below foresaw: refused, the server goes on
            log.debug("request failed", exc_info=True)
            return self._refuse(connection, HTTPStatus.BAD_REQUEST, f"bad request ({type(exc).__name__})")

    def _route(self, connection: Any, request: Any) -> Any:
        path = urlsplit(request.path).path
        hosts, origins = request.headers.get_all("Host"), request.headers.get_all("Origin")
        if len(hosts) > 1 or len(origins) > 1:
            return self._refuse(connection, HTTPStatus.BAD_REQUEST, "send one Host and at most one Origin header")
        host, origin = (hosts or [None])[0], (origins or [None])[0]
        if not host_allowed(host, is_loopback(self.config.host), self.limits.allowed_origins):
            return self._refuse(
                connection, HTTPStatus.MISDIRECTED_REQUEST,
                "this server only answers requests for localhost / 127.0.0.1 (DNS-rebinding guard); "
                "use --allow-origin to name another host",
            )
        if path in SAY_ROUTES:  # POST /say?text=..., POST /interrupt: the broadcast's text in (broadcast.py)
            query = parse_qs(urlsplit(request.path).query)
            allowed = (origin is None or origin_allowed(origin, host, self.limits.allowed_origins)) and (
                self.config.token is None or token_matches((query.get("token") or [None])[0], self.config.token))
            code, answer = answer_say_request(self.broadcast, path, getattr(request, "method", "GET"), query, allowed=allowed)
            from websockets.datastructures import Headers as SayHeaders
            from websockets.http11 import Response as SayResponse

            body = json.dumps(answer).encode()
            return SayResponse(code, HTTPStatus(code).phrase, SayHeaders(
                [("Content-Type", "application/json"), ("Content-Length", str(len(body))), ("Cache-Control", "no-store")]), body)
        if path in ("/ws", "/push"):
            if not origin_allowed(origin, host, self.limits.allowed_origins):
                return self._refuse(connection, HTTPStatus.FORBIDDEN, "websocket from another origin refused")
            return None
        status, reason, headers, body = static_response(request.path, self.config.static_dir,
                                                        getattr(request, "method", "GET"))
        from websockets.datastructures import Headers
        from websockets.http11 import Response

        return Response(status, reason, Headers(headers), body)

    # ---- websockets ----------------------------------------------------------------------
    async def _admit(self, ws: Any) -> bool:
        """Token check (query ``?token=`` or a first ``hello`` message); a refusal says
        whether the token was missing or wrong, and is logged as one line."""
        if self.config.token is None:
            return True
        query = parse_qs(urlsplit(ws.request.path).query)
        given = (query.get("token") or [None])[0]
        if token_matches(given, self.config.token):
            return True
        try:
            msg = parse_message(await asyncio.wait_for(ws.recv(), 5.0))
            hello = msg.token if msg.type == "hello" else None
        except (asyncio.TimeoutError, SignalingError):
            hello = None
        except Exception:  # the connection went away
            return False
        if token_matches(hello, self.config.token):
            return True
        if not given and not hello:
            code, text = "no_token", ("this server needs an access token and none was given: open the link "
                                      "'realtime-sda serve' printed (it ends in ?token=...)")
        else:
            code, text = "bad_token", "wrong access token: open the link with ?token=... as given by the server"
        self.refusals.refuse(client_address(ws), code)
        with contextlib.suppress(Exception):
            await ws.send(error_message(code, text))
            await ws.close(1008, code)
        return False

    async def _handle(self, ws: Any) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            path = urlsplit(ws.request.path).path
            if not await self._admit(ws):
                return
            if path == "/push":
                await self._handle_push(ws)
            elif path == "/ws":
                await self._handle_client(ws)
            else:
                await ws.close(1008, "unknown endpoint")
        except Exception as exc:  # one connection's failure: one line, no traceback, the server goes on
            self.refusals.refuse(client_address(ws), f"connection ended by an error ({type(exc).__name__}: {exc})")
            log.debug("connection handler failed", exc_info=True)
        finally:
            self._handlers.discard(task)

    async def _handle_client(self, ws: Any) -> None:
        if len(self.clients) >= self.limits.max_sessions:
            self.refusals.refuse(client_address(ws), "server_full")
            await ws.send(error_message("server_full", f"server full: all {self.limits.max_sessions} sessions are in use, try again later"))
            await ws.close(1013, "server full")
            return
        assert self._client_context is not None  # built in start(), before serving
        client = Client(self._client_context, ws)
        self.clients.add(client)
        try:
            await client.run()
        except Exception as exc:  # connection errors end this client only
            log.debug("%s ended: %r", client.name, exc)
        finally:
            self.clients.discard(client)
            await client.close()

    async def _handle_push(self, ws: Any) -> None:
        """``/push``: a JSON header ``{"rate": 16000, "channels": 1}`` then binary int16 PCM,
        served by :meth:`Broadcast.serve_pusher` (queued, bounded, played at real time).
        A message over :data:`PUSH_MAX_FRAME_BYTES` closes the connection (1009) unread."""
        if self.broadcast is None:
            await ws.send(error_message("no_broadcast", "this server runs no broadcast: start it with --broadcast"))
            await ws.close(1008, "no broadcast")
            return
        protocol = getattr(ws, "protocol", None)
        if protocol is not None and hasattr(protocol, "max_message_size"):
            protocol.max_message_size = min(PUSH_MAX_FRAME_BYTES, self.limits.max_message_bytes)
        await self.broadcast.serve_pusher(ws, self.limits.max_push_rate)


def _bind_error(exc: OSError, host: str, port: int) -> str:
    """One line for a server that cannot listen, naming the fix."""
    if exc.errno == errno.EADDRINUSE:
        return f"port {port} on {host} is already in use (another server?): choose another with --port N (0 picks a free one)"
    if exc.errno == errno.EACCES:
        return f"no permission to listen on port {port}: ports under 1024 need root; choose another with --port N"
    if exc.errno in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT) or isinstance(exc, OSError) and "getaddrinfo" in str(exc):
        return f"cannot listen on {host}: no such address on this machine; check --host"
    return f"cannot listen on {host}:{port} ({exc}): check --host and --port"
