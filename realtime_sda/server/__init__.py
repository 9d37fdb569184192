"""The live avatar over WebRTC: one ``websockets`` server for the page (HTTP), signaling
(``/ws``) and broadcast audio (``/push``); aiortc peers; one shared inference worker.

Modules: :mod:`.app` (server), :mod:`.client` (one page connection), :mod:`.peer` (its
RTCPeerConnection), :mod:`.tracks` (avatar video/audio tracks), :mod:`.broadcast` (fan-out),
:mod:`.signaling` (message schema), :mod:`.security` (origin, token, limits, photo decoding),
:mod:`.static` (page files). Names are imported lazily: aiortc is the ``server`` extra.
"""

from __future__ import annotations

from .._lazy import lazy_exports

_EXPORTS = {
    "AvatarServer": "app",
    "ServerConfig": "app",
    "Limits": "security",
    "load_still": "stills",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
