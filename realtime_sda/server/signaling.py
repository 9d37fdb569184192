"""The signaling protocol: JSON messages on the ``/ws`` websocket, validated before use.

Client to server (text messages; a binary message is a photo upload)::

    {"type": "hello", "token": "..."}            optional first message (or ?token= in the URL)
    {"type": "offer", "sdp": "...", "mode": "mic" | "watch"}
                                                mic: my microphone drives my avatar;
                                                watch: view the broadcast avatar
    {"type": "stop"}                            close the media connection, keep the websocket
    {"type": "ping"}

Server to client::

    {"type": "ready", "video_rate": 25.0, "width": 96, "height": 128, "lookahead_ms": 80.0, "broadcast": false, ...}
    {"type": "avatar", "width": .., "height": .., "aligned": true}   photo accepted
    {"type": "answer", "sdp": "..."}
    {"type": "stats", "latency_ms": .., "frames": .., "dropped": ..}
    {"type": "error", "code": "...", "message": "plain words for the page"}
    {"type": "pong"}, {"type": "stopped"}
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ..errors import RealtimeSDAError

__all__ = ["SignalingError", "Message", "parse_message", "error_message", "encode", "ERROR_CODES"]

#: Error codes the page turns into plain messages.
ERROR_CODES = (
    "bad_message",  # malformed JSON / unknown type / missing field
    "bad_sdp",  # the offer could not be used
    "bad_image",  # the photo could not be decoded or is too large
    "no_face",  # no face found in the photo
    "server_full",
    "bad_token",  # a wrong access token
    "no_token",  # the server needs a token and none was given
    "no_avatar",  # no photo chosen and the server has no default avatar
    "no_broadcast",  # "watch" asked but no broadcast is running
    "busy",  # too many photos are being processed: try again
    "internal",
)

_TYPES = {"hello", "offer", "stop", "ping"}
_MODES = {"mic", "watch"}


class SignalingError(RealtimeSDAError):
    """A client message broke the protocol; ``code`` is one of :data:`ERROR_CODES`."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Message:
    """One validated client message."""

    type: str
    sdp: str | None = None
    mode: str = "mic"
    token: str | None = None


def parse_message(text: str | bytes, max_sdp_bytes: int = 64 * 1024) -> Message:
    """Parse and validate one text message; raises :class:`SignalingError` with a plain reason."""
    if isinstance(text, (bytes, bytearray)):
        raise SignalingError("bad_message", "expected a JSON text message")
    try:
        data: Any = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise SignalingError("bad_message", f"the message is not valid JSON ({type(exc).__name__})") from None
    if not isinstance(data, dict):
        raise SignalingError("bad_message", "the message must be a JSON object with a 'type'")
    kind = data.get("type")
    if not isinstance(kind, str) or kind not in _TYPES:
        raise SignalingError("bad_message", f"unknown message type {str(kind)[:40]!r}: use one of {sorted(_TYPES)}")
    if kind == "hello":
        token = data.get("token")
        if token is not None and not isinstance(token, str):
            raise SignalingError("bad_message", "'token' must be a string")
        return Message("hello", token=token)
    if kind == "offer":
        sdp, mode = data.get("sdp"), data.get("mode", "mic")
        if not isinstance(sdp, str) or not sdp.strip():
            raise SignalingError("bad_sdp", "the offer has no 'sdp' text")
        if len(sdp.encode("utf-8", "replace")) > max_sdp_bytes:
            raise SignalingError("bad_sdp", f"the offer SDP is over {max_sdp_bytes} bytes")
        if not sdp.startswith("v=0"):
            raise SignalingError("bad_sdp", "the offer is not an SDP description (it must start with 'v=0')")
        _check_mids(sdp)
        if not isinstance(mode, str) or mode not in _MODES:
            raise SignalingError("bad_message", f"'mode' must be one of {sorted(_MODES)}")
        return Message("offer", sdp=sdp, mode=mode)
    return Message(kind)


def _check_mids(sdp: str) -> None:
    """Each media section's ``a=mid:`` must be unique (aiortc fails late on a repeat)."""
    seen: set[str] = set()
    for line in sdp.splitlines():
        if line.startswith("a=mid:"):
            mid = line[6:].strip()
            if mid in seen:
                raise SignalingError("bad_sdp", f"the offer uses media id {mid[:20]!r} twice: each m= section needs its own a=mid")
            seen.add(mid)


def encode(kind: str, **fields: Any) -> str:
    """A server message as JSON text."""
    return json.dumps({"type": kind, **fields}, separators=(",", ":"))


def error_message(code: str, message: str) -> str:
    """An ``error`` message for the page."""
    return encode("error", code=code, message=message)
