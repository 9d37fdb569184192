"""The front door: the page, signaling on ``/ws``, broadcast audio on ``/push`` and the
cluster's state on ``/status``, in front of the avatar workers. It holds no session state:
each page connection is placed on the worker with the most free capacity (by the loads it
polls, :mod:`.placement`) and its messages are relayed to that worker's channel; the media
then flows between the page and that worker's node directly.

When a worker is lost (its process or node died) its pages are told (an ``error`` message
with code ``worker_lost``) and placed on another worker at once; the page reconnects its
media on its own. A page whose front door died reconnects to any front door with
``/ws?resume=ID`` (the ``session`` message gave the ID) and keeps its session: the worker
held it meanwhile."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from collections import Counter, deque
from dataclasses import dataclass, field, replace
from http import HTTPStatus
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit

import numpy as np

from ..errors import require
from ..server.app import is_loopback
from ..server.security import Limits, host_allowed, origin_allowed, token_matches
from ..server.signaling import SignalingError, encode, error_message, parse_message
from ..server.static import SECURITY_HEADERS, WEB_CLIENT_DIR, static_response
from .actors import find_workers, worker_name
from .placement import BUSY_MESSAGE, WorkerLoad, rank_workers

__all__ = ["FrontDoorConfig", "FrontDoor", "WORKER_LOST"]

log = logging.getLogger(__name__)

#: what a page is told when its worker was lost (it then starts again on another one)
WORKER_LOST = "the avatar's worker was lost; reconnecting to another one"


@dataclass
class FrontDoorConfig:
    """A front door's settings."""

    host: str = "127.0.0.1"
    port: int = 8080
    token: str | None = None
    limits: Limits = field(default_factory=Limits)
    static_dir: Path = WEB_CLIENT_DIR
    poll_s: float = 0.5  # how often the workers' loads are read
    take_timeout_s: float = 5.0  # a long poll for a page's answers
    call_timeout_s: float = 3.0  # a worker that answers nothing this much longer is lost
    heartbeat_s: float = 0.2  # how often each worker's health port is knocked at
    #: a worker that does not answer a ping this long is taken for lost (Ray itself tells
    #: about a killed node's actors only after about 2 s)
    heartbeat_timeout_s: float = 0.8
    tls_cert: Path | None = None  # PEM certificate (chain) and key: serve HTTPS/WSS, as serve does
    tls_key: Path | None = None


class FrontDoor:
    """``async with FrontDoor(config) as door:`` serves on ``door.port``. ``find``: the
    workers by name (default: the service's named actors on the connected cluster)."""

    def __init__(self, config: FrontDoorConfig, find: Callable[[], dict[str, Any]] | None = None) -> None:
        if find is None:
            find = find_workers
        self.config = config
        self._find: Callable[[], dict[str, Any]] = find
        self.workers: dict[str, Any] = {}
        self.loads: dict[str, WorkerLoad] = {}
        self.port = config.port
        self.counts = {"pages": 0, "open": 0, "placed": 0, "busy": 0, "lost": 0, "resumed": 0}
        self.place_ms: deque[float] = deque(maxlen=500)
        self._server: Any = None
        self._poller: asyncio.Task[None] | None = None
        self._heart: asyncio.Task[None] | None = None
        self._lost: dict[str, asyncio.Event] = {}  # set when a worker stops answering
        self._answered: set[str] = set()  # workers that answered a knock (only those can miss one)
        self._health: dict[str, tuple[str, int]] = {}  # worker -> (node address, health port)
        self._placed: Counter[str] = Counter()  # pages placed on each worker, ever (see refresh)
        self._handlers: set[asyncio.Task[Any]] = set()
        self._stopping = False
        self._ray = require("ray", "cluster", "Cluster mode (serve --cluster)")

    # ---- life cycle ----------------------------------------------------------------------
    async def start(self) -> "FrontDoor":
        ws_server = require("websockets.asyncio.server", "server", "The front door")
        await self.refresh(find=True)
        self._poller = asyncio.get_running_loop().create_task(self._poll(), name="frontdoor-poll")
        self._heart = asyncio.get_running_loop().create_task(self._heartbeat(), name="frontdoor-heartbeat")
        limits = self.config.limits
        tls = None
        if self.config.tls_cert is not None:
            from ..server.security import tls_context

            tls = tls_context(self.config.tls_cert, self.config.tls_key)
        self._server = await ws_server.serve(
            self._handle, self.config.host, self.config.port, process_request=self._process_request, ssl=tls,
            max_size=limits.max_message_bytes, max_queue=4, ping_interval=10, ping_timeout=10, close_timeout=2,
        )
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("front door on http://%s:%d/ for %d workers", self.config.host, self.port, len(self.workers))
        return self

    async def stop(self, timeout: float = 5.0) -> None:
        """Stop serving. Sessions stay on their workers (their pages may resume elsewhere)."""
        self._stopping = True
        for task in (self._poller, self._heart):
            if task is not None:
                task.cancel()
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), timeout)
        for task in tuple(self._handlers):
            task.cancel()
        if self._handlers:
            await asyncio.wait(tuple(self._handlers), timeout=timeout)

    async def __aenter__(self) -> "FrontDoor":
        return await self.start()

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()

    # ---- worker loads --------------------------------------------------------------------
    async def _poll(self) -> None:
        n = 0
        while True:
            await asyncio.sleep(self.config.poll_s)
            n += 1
            with contextlib.suppress(Exception):
                await self.refresh(find=n % 10 == 0)

    async def _knock(self, name: str, limit: float) -> str | Exception:
        """Connect to a worker's health port: refused at once when its process is gone,
        no answer when its node is; answered by the kernel while it lives, however busy."""
        host, port = self._health.get(name, ("", 0))
        if not port:
            return name
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), limit)
        except (OSError, asyncio.TimeoutError) as exc:
            return exc
        writer.close()
        return name

    async def _heartbeat(self) -> None:
        """Knock at every worker; one that does not answer is lost: its pages move at once."""
        period, limit = self.config.heartbeat_s, self.config.heartbeat_timeout_s
        loop = asyncio.get_running_loop()
        while True:
            t = loop.time()
            names = [n for n, w in self.loads.items() if w.ready]
            answers = await asyncio.gather(*(self._knock(n, limit) for n in names))
            lagged = loop.time() - t > limit + 0.5  # this loop itself stalled: no verdict
            for name, answer in zip(names, answers):
                if isinstance(answer, str):
                    self._answered.add(name)  # armed: it answered since it was (re)started
                elif not lagged and name in self._answered:
                    self._answered.discard(name)
                    log.warning("%s missed a heartbeat (%s): its pages move", name, type(answer).__name__)
                    self._mark(name, ready=False)
                    self.lost_event(name).set()
            await asyncio.sleep(max(0.0, period - (loop.time() - t)))

    def lost_event(self, name: str) -> asyncio.Event:
        """Set once worker ``name`` is taken for lost (a new one after it is ready again)."""
        event = self._lost.get(name)
        if event is None:
            event = self._lost[name] = asyncio.Event()
        return event

    async def refresh(self, find: bool = False) -> dict[str, WorkerLoad]:
        """Read every worker's load now (and look for new workers when ``find``)."""
        if find or not self.workers:
            self.workers = await asyncio.to_thread(self._find)
        placed = dict(self._placed)
        reports = await asyncio.gather(*(self._call(h.load.remote()) for h in self.workers.values()))
        loads = {name: WorkerLoad.from_report(name, r if isinstance(r, dict) else {}) for name, r in zip(self.workers, reports)}
        # pages placed while the reports were on their way may be missing from them: counted
        # on top (at most one poll too many), or pages placed together would all go to the
        # worker the stale report shows emptiest
        for name, load in loads.items():
            late = self._placed[name] - placed.get(name, 0)
            if late:
                loads[name] = replace(load, sessions=load.sessions + late)
        self.loads = loads
        for name, r in zip(self.workers, reports):
            if isinstance(r, dict) and r.get("ready") and r.get("health_port"):
                self._health[name] = (str(r.get("node", "")), int(r["health_port"]))
        for name, load in self.loads.items():
            if load.ready and self.lost_event(name).is_set():
                self._lost[name] = asyncio.Event()  # back (restarted): watched afresh
        return self.loads

    async def _call(self, ref: Any, timeout: float | None = None) -> Any:
        """A worker call's result, or the exception (a lost worker, a timeout)."""
        try:
            return await asyncio.wait_for(ref, timeout or self.config.call_timeout_s)
        except Exception as exc:
            return exc

    def _mark(self, name: str, **change: Any) -> None:
        old = self.loads.get(name)
        if old is not None:
            self.loads[name] = WorkerLoad(old.name, change.get("sessions", old.sessions), old.capacity,
                                          change.get("ready", old.ready), old.node)

    async def place(self, exclude: set[str] | frozenset[str] = frozenset()) -> tuple[str, Any, str, str] | None:
        """Open a channel on the worker with the most free capacity that admits it:
        (worker name, handle, channel id, node), or None when every worker is full."""
        t0 = time.perf_counter()
        tried = set(exclude)
        while True:
            ranked = rank_workers(w for w in self.loads.values() if w.name not in tried)
            if not ranked:
                return None
            load = ranked[0]
            tried.add(load.name)
            handle = self.workers.get(load.name)
            cid = f"{load.name}/{secrets.token_urlsafe(12)}"
            # counted before the call: pages placed at the same moment go to other workers
            self._mark(load.name, sessions=load.sessions + 1)
            self._placed[load.name] += 1
            info = await self._call(handle.open.remote(cid), 10.0) if handle is not None else None
            if isinstance(info, dict):
                self.place_ms.append(1000.0 * (time.perf_counter() - t0))
                self.counts["placed"] += 1
                return load.name, handle, cid, str(info.get("node", ""))
            if info is None:  # full: another front door filled it meanwhile
                self._mark(load.name, sessions=load.capacity)
            else:
                self._mark(load.name, ready=False)

    # ---- HTTP ----------------------------------------------------------------------------
    async def _process_request(self, connection: Any, request: Any) -> Any:
        from websockets.datastructures import Headers
        from websockets.http11 import Response

        path = urlsplit(request.path).path
        limits = self.config.limits
        if not host_allowed(request.headers.get("Host"), is_loopback(self.config.host), limits.allowed_origins):
            return connection.respond(HTTPStatus.MISDIRECTED_REQUEST, "this front door only answers requests for "
                                      "localhost / 127.0.0.1 (DNS-rebinding guard); use --allow-origin\n")
        if path in ("/ws", "/push"):
            if not origin_allowed(request.headers.get("Origin"), request.headers.get("Host"), limits.allowed_origins):
                return connection.respond(HTTPStatus.FORBIDDEN, "websocket from another origin refused\n")
            return None
        if path == "/status":
            given = (parse_qs(urlsplit(request.path).query).get("token") or [None])[0]
            if not token_matches(given, self.config.token):
                return connection.respond(HTTPStatus.FORBIDDEN, "wrong or missing ?token=\n")
            body = json.dumps(await self.status(), indent=1).encode()
            headers = {"Content-Type": "application/json", **SECURITY_HEADERS, "Content-Length": str(len(body))}
            return Response(200, "OK", Headers(headers), body)
        status, reason, headers, body = static_response(request.path, self.config.static_dir,
                                                        getattr(request, "method", "GET"))
        return Response(status, reason, Headers(headers), body)

    async def status(self) -> dict[str, Any]:
        """The cluster's state: every worker's report and this front door's counts."""
        names = list(self.workers)
        reports = await asyncio.gather(*(self._call(self.workers[n].stats.remote()) for n in names))
        workers: list[dict[str, Any]] = [r if isinstance(r, dict) else {"worker": n, "ready": False, "error": type(r).__name__}
                   for n, r in zip(names, reports)]
        ready: list[dict[str, Any]] = [w for w in workers if w.get("ready")]
        place = np.asarray(self.place_ms)
        return {
            "workers": workers,
            "total": {"workers": len(workers), "ready": len(ready), "nodes": len({w.get("node") for w in ready}),
                      "sessions": sum(int(str(w.get("sessions", 0))) for w in ready),
                      "capacity": sum(int(str(w.get("capacity", 0))) for w in ready)},
            "front_door": {**self.counts, "place_p50_ms": round(float(np.median(place)), 2) if place.size else None},
        }

    # ---- websockets ----------------------------------------------------------------------
    async def _admit(self, ws: Any) -> bool:
        if self.config.token is None:
            return True
        given = (parse_qs(urlsplit(ws.request.path).query).get("token") or [None])[0]
        if not token_matches(given, self.config.token):
            with contextlib.suppress(Exception):
                msg = parse_message(await asyncio.wait_for(ws.recv(), 5.0))
                given = msg.token if msg.type == "hello" else None
        if token_matches(given, self.config.token):
            return True
        with contextlib.suppress(Exception):
            await ws.send(error_message("bad_token", "wrong or missing access token: open the link with ?token=... as given by the server"))
            await ws.close(1008, "bad token")
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
                await self._serve_push(ws)
            elif path == "/ws":
                await self._serve_page(ws)
        except (SignalingError, OSError) as exc:
            log.debug("connection ended: %r", exc)
        finally:
            self._handlers.discard(task)

    async def _serve_page(self, ws: Any) -> None:
        self.counts["pages"] += 1
        self.counts["open"] += 1
        try:
            resume = (parse_qs(urlsplit(ws.request.path).query).get("resume") or [None])[0]
            placed = await self._resume(resume) if resume else None
            while True:
                if placed is None:
                    placed = await self.place()
                    if placed is None:  # busy by the last poll: look again before saying so
                        await self.refresh()
                        placed = await self.place()
                    if placed is None:
                        self.counts["busy"] += 1
                        await ws.send(error_message("server_full", BUSY_MESSAGE))
                        await ws.close(1013, "busy")
                        return
                name, handle, cid, node = placed
                await ws.send(encode("session", id=cid, worker=name, node=node, resumed=bool(resume)))
                outcome = await self._relay(ws, name, handle, cid)
                load = self.loads.get(name)
                if load is not None:  # until the next poll says
                    self._mark(name, sessions=max(load.sessions - 1, 0))
                if outcome != "lost":
                    return
                self.counts["lost"] += 1
                self._mark(name, ready=False)
                await ws.send(error_message("worker_lost", WORKER_LOST))
                placed, resume = None, None
        finally:
            self.counts["open"] -= 1

    async def _resume(self, cid: str) -> tuple[str, Any, str, str] | None:
        name = cid.split("/", 1)[0]
        handle = self.workers.get(name)
        if handle is None or await self._call(handle.has.remote(cid)) is not True:
            return None
        self.counts["resumed"] += 1
        load = self.loads.get(name)
        return name, handle, cid, load.node if load is not None else ""

    async def _serve_push(self, ws: Any) -> None:
        name = worker_name(0)
        handle = self.workers.get(name)
        cid = f"{name}/push-{secrets.token_urlsafe(12)}"
        if handle is None or await self._call(handle.open_pusher.remote(cid)) is not True:
            await ws.send(error_message("no_broadcast", "this cluster runs no broadcast: start it with --broadcast"))
            await ws.close(1008, "no broadcast")
            return
        await self._relay(ws, name, handle, cid)

    async def _relay(self, ws: Any, name: str, handle: Any, cid: str) -> str:
        """Move messages between the page and its channel until one side ends: "page" (the
        page left: its session is released), "closed" (the worker ended it) or "lost"."""
        cfg = self.config
        lost = self._ray.exceptions.RayError

        async def up() -> str:
            async for raw in ws:
                ok = await asyncio.wait_for(handle.put.remote(cid, raw), 30.0)
                if not ok:
                    return "lost"
            return "page"

        async def down() -> str:
            while True:
                msgs, state = await asyncio.wait_for(handle.take.remote(cid, cfg.take_timeout_s),
                                                     cfg.take_timeout_s + cfg.call_timeout_s)
                for text in msgs:
                    await ws.send(text)
                if state != "open":
                    return "lost" if state == "unknown" else "closed"

        async def guarded(coro: Any) -> str:
            try:
                return str(await coro)
            except (lost, asyncio.TimeoutError):
                return "lost"
            except Exception:  # the page's socket failed
                return "page"

        async def watch(lost_event: asyncio.Event) -> str:
            await lost_event.wait()
            return "lost"

        tasks = [asyncio.ensure_future(guarded(up())), asyncio.ensure_future(guarded(down())),
                 asyncio.ensure_future(watch(self.lost_event(name)))]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        outcome = next(iter(done)).result()
        # the page left (its socket was not closed by this front door stopping): the worker
        # releases the session
        proto = ws.protocol
        closed_by_us = self._stopping and proto.close_sent is not None and not proto.close_rcvd_then_sent
        if outcome == "page" and not closed_by_us:
            handle.hang_up.remote(cid)  # fire and forget
        elif outcome == "lost":
            handle.hang_up.remote(cid)  # in case it was only slow: it releases the session
        elif outcome == "closed":
            with contextlib.suppress(Exception):
                await ws.close(1000)
        return outcome
