"""The avatar service over a Ray cluster: avatar workers (one per GPU, or per N CPU cores)
that own their inference worker and WebRTC peers, and stateless front doors that serve the
page, relay signaling to the chosen worker and report the cluster's state.

Modules: :mod:`.placement` (which worker takes a session; pure), :mod:`.channel` (a
websocket stand-in between a front door and a worker), :mod:`.worker` (the avatar worker),
:mod:`.relay` (the broadcast's frames relayed to other workers), :mod:`.frontdoor` (the page,
``/ws``, ``/push`` and ``/status``), :mod:`.actors` (the named actors, finding them), :mod:`.launch` (connect,
start workers, ``serve --cluster``), :mod:`.netns` (a private network namespace for local test clusters). Ray is
the ``cluster`` extra: ``import realtime_sda.cluster`` does not import it.
"""

from __future__ import annotations

from .._lazy import lazy_exports

_EXPORTS = {
    "WorkerLoad": "placement",
    "rank_workers": "placement",
    "AvatarWorker": "worker",
    "WorkerSpec": "worker",
    "FrontDoor": "frontdoor",
    "FrontDoorConfig": "frontdoor",
    "connect": "launch",
    "start_workers": "launch",
    "find_workers": "actors",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
