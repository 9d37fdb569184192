"""The avatar worker: one per GPU (or per N CPU cores), a Ray actor of its own process that
owns an :class:`~realtime_sda.streaming.InferenceWorker` batching its sessions and the
WebRTC peers of its viewers (so media flows between a viewer and this worker's node).

Its page connections are :class:`~realtime_sda.server.client.Client` objects, the very ones
``serve`` runs, reading and writing a :class:`~.channel.Channel` instead of a websocket; a
front door moves the messages (:meth:`AvatarWorker.put`, :meth:`AvatarWorker.take`). A
channel outlives the front door that opened it (another one may resume it); nobody polling it
for ``channel_timeout_s`` ends it. The class is plain Python: :mod:`.launch` makes it an
actor (``max_restarts=-1``: Ray restarts a lost worker, which then starts from scratch)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, cast

from ..server.security import Limits
from .actors import NAMESPACE, worker_name
from .channel import Channel

__all__ = ["WorkerSpec", "AvatarWorker"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkerSpec:
    """What every worker runs (``serve``'s options that concern a worker)."""

    #: model name or checkpoint path (found on every node), or a picklable factory
    model: str | Callable[[], Any] = "default"
    device: str | None = None
    bf16: bool = False
    avatar: str | None = None  # photo for the default and broadcast avatar (None: the bundled one)
    aligned: bool = False
    crop: bool = False  # the model's crop instead of the whole photo
    size: int = 512
    still: Any = None  # a prepared (1, 3, H, W) still, shown as the crop (overrides avatar)
    lookahead_ms: float | None = None
    audio_prefetch: int | None = 0
    playout_margin_ms: float = 10.0
    ice_servers: tuple[str, ...] = ()
    limits: Limits = field(default_factory=Limits)  # max_sessions: a worker's upper bound
    max_batch: int = 64
    worker_cpus: int = 1  # CPU cores each worker has (torch threads = cores - 1, at least 1)
    capacity: int | None = None  # fixed capacity instead of the measured one
    broadcast: bool = False  # worker 0 runs the broadcast avatar; the others relay its frames
    broadcast_audio: str | None = None
    channel_timeout_s: float = 30.0


class AvatarWorker:
    """One avatar worker (methods are Ray actor methods; all run on its event loop)."""

    def __init__(self, spec: WorkerSpec, index: int) -> None:
        self.spec = spec
        self.index = index
        self.name = worker_name(index)
        self.node = ""  # the node's address (where viewers reach this worker's peers)
        self.node_id = ""
        self.health_port = 0  # see _open_health_port
        self.model: Any = None
        self.worker: Any = None
        self.photos: Any = None  # the photo pool, made on first use
        self.capacity: Any = None
        self.context: Any = None
        self.broadcast: Any = None  # the Broadcast (worker 0) or the relay's FrameHub
        self.ring: Any = None  # recent broadcast frames for the relays (worker 0)
        self.channels: dict[str, tuple[Channel, asyncio.Task[None], Any]] = {}
        self.pushers: dict[str, tuple[Channel, asyncio.Task[None]]] = {}
        self.steps: deque[tuple[int, float]] = deque(maxlen=500)  # (batch, ms)
        self.started_at = time.time()
        self.admitted = 0
        self.refused = 0
        self._start_task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    # ---- start ----------------------------------------------------------------------------
    async def ready(self) -> dict[str, Any]:
        """Start (once) and return :meth:`load`."""
        if self._start_task is None:
            self._start_task = asyncio.get_running_loop().create_task(self._start())
        await asyncio.shield(self._start_task)
        return self._load()

    async def _start(self) -> None:
        from ..server.client import ClientContext
        from ..server.playout import check_margin
        from ..server.stills import Avatar
        from ..streaming import InferenceWorker
        from .actors import node_id, node_ip
        from .capacity import measure_capacity

        spec = self.spec
        self.node, self.node_id = node_ip(), node_id()
        self.model = await asyncio.to_thread(self._load_model)
        threads = max(1, spec.worker_cpus - 1) if self.model.device.type == "cpu" else None
        self.worker = InferenceWorker(self.model, max_batch=spec.max_batch, num_threads=threads, name=f"{self.name}-inference")
        await self.worker.start()
        avatar = await self._default_avatar(Avatar)
        size = avatar.size(self.model.config) if avatar is not None else tuple(self.model.config.img_size)
        if spec.capacity is not None:
            from .capacity import Capacity

            self.capacity = Capacity(min(spec.capacity, spec.limits.max_sessions), 1000.0 / self.model.config.video_rate,
                                     limit=spec.limits.max_sessions)
        else:
            render = self._render_probe(avatar)
            self.capacity = await self.worker.submit(lambda: measure_capacity(
                self.model, spec.limits.max_sessions, size, render, media_threads=max(1, spec.worker_cpus - 1)))
        self._time_steps()
        self._open_health_port()
        if self.node.startswith("127."):  # a loopback-only cluster (tests): ICE on loopback too
            from ..server.peer import restrict_ice_to

            restrict_ice_to([self.node])
        await self._start_broadcast(avatar)
        cfg = self.model.config
        own = 1000.0 * cfg.lookahead_samples / cfg.audio_rate
        self.context = ClientContext(
            limits=spec.limits, model_config=cfg,
            lookahead_ms=own if spec.lookahead_ms is None else min(float(spec.lookahead_ms), own),
            default_avatar=avatar, ice_servers=tuple(spec.ice_servers), audio_prefetch=spec.audio_prefetch,
            playout_margin_s=check_margin(spec.playout_margin_ms / 1000.0),
            make_avatar=self._avatar_from_page, open_session=self._open_session,
            broadcast_hub=self._broadcast_hub,
        )
        self._spawn(self._reap(), "reaper")
        cap = self.capacity
        if cap.sessions == 0:
            log.warning("%s on %s takes no session: one alone would not keep real time here (step %.1f ms, "
                        "whole-photo rendering %.1f ms a frame of %.0f ms); try --crop or a smaller --size",
                        self.name, self.node, cap.step_ms.get(1, 0.0), cap.render_ms, cap.period_ms)
        else:
            log.info("%s on %s: capacity %d sessions", self.name, self.node, cap.sessions)

    def _load_model(self) -> Any:
        from ..checkpoints.loading import load_model

        spec = self.spec
        model = spec.model() if callable(spec.model) else load_model(spec.model, device=spec.device)
        if spec.bf16:
            import torch

            model.set_inference_dtype(torch.bfloat16)
        return model

    async def _default_avatar(self, avatar_cls: Any) -> Any:
        spec = self.spec
        if spec.still is not None:
            return avatar_cls(spec.still)
        from ..server.stills import default_photo, load_still

        if spec.crop or spec.aligned:
            still = await asyncio.to_thread(load_still, spec.avatar, self.model.config, spec.aligned)
            return avatar_cls(still) if still is not None else None
        photo = default_photo(spec.avatar)
        return await self._make_avatar(photo) if photo is not None else None

    def _render_probe(self, avatar: Any) -> Callable[[], Any] | None:
        if avatar is None or avatar.renderer is None:
            return None
        import numpy as np

        # the aligned face itself stands for a crop the model drew (its landmarks are found)
        still = avatar.still.detach().cpu().float()[0].permute(1, 2, 0).numpy()
        crop = np.ascontiguousarray(((still + 1.0) * 127.5).clip(0, 255).astype(np.uint8))
        return lambda: avatar.renderer(crop)

    def _open_health_port(self) -> None:
        """A TCP port that the kernel answers while this process lives (connections are
        queued by the kernel and drained by a thread): front doors connect to it to tell a dead
        worker (refused at once) from a busy one (a photo's face detection can hold the GIL
        for a second), which a call into the process could not."""
        import socket
        import threading

        sock = socket.socket(socket.AF_INET6 if ":" in self.node else socket.AF_INET, socket.SOCK_STREAM)
        sock.bind((self.node, 0))
        sock.listen(256)
        self.health_port = int(sock.getsockname()[1])

        def drain() -> None:
            while True:
                conn, _ = sock.accept()
                conn.close()

        threading.Thread(target=drain, name=f"{self.name}-health", daemon=True).start()

    def _time_steps(self) -> None:
        """Record every batched step's size and wall time (the worker's own model object)."""
        inner = self.model.forward_chunk
        steps = self.steps

        def timed(state: Any, windows: Any, noise: Any) -> Any:
            t = time.perf_counter()
            out = inner(state, windows, noise)
            steps.append((int(windows.shape[0]), 1000.0 * (time.perf_counter() - t)))
            return out

        self.model.forward_chunk = timed

    async def _make_avatar(self, image: Any, owner: str = "worker") -> Any:
        """A photo (path, RGB array or an upload) -> its Avatar, as ``serve`` makes it: decoded
        and aligned in the photo pool (never in the executor that encodes the media)."""
        from ..server.photos import PhotoPool, pooled_avatar

        if self.photos is None:
            self.photos = PhotoPool()
        return await pooled_avatar(self.photos, self.worker, image, owner=owner,
                                   whole_photo=not (self.spec.crop or self.spec.aligned), size=self.spec.size)

    async def _avatar_from_page(self, owner: str, data: bytes) -> Any:
        """A page's photo file -> its Avatar (the Client's ``make_avatar``)."""
        from ..server.photos import UPLOAD_DECODE_SIDE, Upload

        side = max(UPLOAD_DECODE_SIDE, self.spec.size or 0)
        return await self._make_avatar(Upload(bytes(data), self.spec.limits, side), owner)

    async def _open_session(self, avatar: Any) -> Any:
        return await self.worker.open_session(avatar.still, seed=None, lookahead_ms=self.spec.lookahead_ms,
                                              renderer=avatar.renderer)

    async def _start_broadcast(self, avatar: Any) -> None:
        from .relay import FrameRing, relay_hub

        if not self.spec.broadcast:
            return
        if self.index == 0:
            from pathlib import Path

            from ..server.broadcast import Broadcast

            if avatar is None:
                from ..errors import RealtimeSDAError

                raise RealtimeSDAError("a broadcast needs an avatar: pass --avatar IMAGE")
            audio = Path(self.spec.broadcast_audio) if self.spec.broadcast_audio else None
            self.broadcast = Broadcast(await self._open_session(avatar), audio)
            self.ring = FrameRing()
            self.broadcast.hub.add(cast(Any, self.ring))
            self.broadcast.start()
        else:
            self.broadcast = relay_hub(worker_name(0), NAMESPACE, self.name)

    def _broadcast_hub(self) -> Any:
        if self.broadcast is None:
            return None
        return getattr(self.broadcast, "hub", self.broadcast)

    def _spawn(self, coro: Any, what: str) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro, name=f"{self.name}-{what}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # ---- page connections -----------------------------------------------------------------
    async def open(self, channel_id: str) -> dict[str, Any] | None:
        """Admit a page connection (None: this worker is at its capacity)."""
        from ..server.client import Client

        await self.ready()
        if len(self.channels) >= self.capacity.sessions:
            self.refused += 1
            return None
        channel = Channel(channel_id)
        client = Client(self.context, channel)
        self.channels[channel_id] = (channel, self._spawn(self._run_client(channel_id, channel, client), "client"), client)
        self.admitted += 1
        return {"worker": self.name, "node": self.node}

    async def _run_client(self, channel_id: str, channel: Channel, client: Any) -> None:
        try:
            await client.run()
        except Exception as exc:  # a connection's failure ends that connection only
            log.debug("%s: %s ended: %r", self.name, channel_id, exc)
        finally:
            self.channels.pop(channel_id, None)  # no longer counted, while its media closes
            with contextlib.suppress(Exception):
                await client.close()
            await channel.close(1000)

    async def put(self, channel_id: str, raw: str | bytes) -> bool:
        """A page message for ``channel_id`` (False: no such channel here)."""
        entry = self.channels.get(channel_id) or self.pushers.get(channel_id)
        if entry is None:
            return False
        await entry[0].put(raw)
        return True

    async def take(self, channel_id: str, timeout: float = 5.0) -> tuple[list[str], str]:
        """Answers for the page, waiting up to ``timeout`` s: (messages, "open" | "closed" |
        "unknown"); "unknown": this worker does not hold that channel (it was restarted)."""
        entry = self.channels.get(channel_id) or self.pushers.get(channel_id)
        if entry is None:
            return [], "unknown"
        out, closed = await entry[0].take(timeout)
        return out, "closed" if closed else "open"

    async def has(self, channel_id: str) -> bool:
        """Whether this worker holds ``channel_id`` (a page resuming through another front door)."""
        return channel_id in self.channels

    async def hang_up(self, channel_id: str) -> None:
        """The page closed its socket: release its session."""
        entry = self.channels.get(channel_id) or self.pushers.get(channel_id)
        if entry is not None:
            entry[0].hang_up()

    async def open_pusher(self, channel_id: str) -> bool:
        """A ``/push`` connection for the broadcast (worker 0 only; False elsewhere)."""
        await self.ready()
        if self.index != 0 or self.broadcast is None:
            return False
        channel = Channel(channel_id)

        async def serve() -> None:
            try:
                await self.broadcast.serve_pusher(channel, self.spec.limits.max_push_rate)
            finally:
                await channel.close(1000)
                self.pushers.pop(channel_id, None)

        self.pushers[channel_id] = (channel, self._spawn(serve(), "pusher"))
        return True

    async def broadcast_frames(self, after: int, timeout: float = 2.0) -> tuple[int, list[Any]]:
        """Broadcast frames newer than sequence number ``after`` (worker 0), waiting up to
        ``timeout`` s for one: (latest sequence number, frames)."""
        await self.ready()
        if self.ring is None:
            return after, []
        return await self.ring.since(after, timeout)

    async def _reap(self) -> None:
        """End channels that no front door polled for ``channel_timeout_s`` (their page left
        with its front door and never came back)."""
        while True:
            await asyncio.sleep(1.0)
            for channel, _, _ in tuple(self.channels.values()):
                if channel.idle_for() > self.spec.channel_timeout_s:
                    channel.hang_up()

    # ---- reports --------------------------------------------------------------------------
    async def load(self) -> dict[str, Any]:
        """What placement needs: sessions against capacity. Starts the worker when it is not
        (a restarted worker starts on the first poll of a front door)."""
        if self._start_task is None:
            self._start_task = asyncio.get_running_loop().create_task(self._start())
        return self._load()

    def _load(self) -> dict[str, Any]:
        started = self.capacity is not None and self.context is not None
        out = {"worker": self.name, "node": self.node, "node_id": self.node_id, "ready": started, "sessions": len(self.channels),
               "capacity": self.capacity.sessions if started else 0, "health_port": self.health_port}
        task = self._start_task
        if task is not None and task.done() and not task.cancelled() and task.exception() is not None:
            out["error"] = f"{type(task.exception()).__name__}: {task.exception()}"
        return out

    async def stats(self) -> dict[str, Any]:
        """Sessions, capacity, step times and dropped frames (for ``/status``)."""
        import numpy as np

        out = self._load()
        steps = list(self.steps)
        ms = np.array([t for _, t in steps]) if steps else np.zeros(0)
        dropped = late = frames = 0
        for _, _, client in tuple(self.channels.values()):
            peer = client.peer
            if peer is not None:
                frames += peer.video.sent
                late += peer.video.dropped_late
                dropped += peer.feed.dropped_full
        out.update(
            uptime_s=round(time.time() - self.started_at, 1), admitted=self.admitted, refused=self.refused,
            inference_sessions=len(self.worker.sessions) if self.worker is not None else 0,
            steps={"count": len(steps), "p50_ms": round(float(np.percentile(ms, 50)), 2) if ms.size else None,
                   "p99_ms": round(float(np.percentile(ms, 99)), 2) if ms.size else None,
                   "mean_batch": round(float(np.mean([b for b, _ in steps])), 2) if steps else None},
            frames_sent=frames, frames_dropped_late=late, frames_dropped_queue=dropped,
            measured=self.capacity.as_dict() if self.capacity is not None else None,
            broadcast=None if self.broadcast is None else ("source" if self.index == 0 else "relay"),
            broadcast_viewers=getattr(self._broadcast_hub(), "viewers", 0) - (self.ring is not None),
        )
        return out

    async def ping(self) -> str:
        return self.name
