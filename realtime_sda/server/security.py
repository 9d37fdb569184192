"""Safety checks for everything a browser can send: Origin, token, message and image limits.

A server reachable by a browser must treat every byte as hostile: a page on another site may
open a websocket to it (Origin check), a photo may be a decompression bomb (pixel limit
before decoding), and a token must not leak through timing (constant-time compare).
"""

from __future__ import annotations

import hmac
import io
import ipaddress
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import numpy as np

from ..errors import ImageDecodeError

__all__ = ["Limits", "origin_allowed", "host_allowed", "token_matches", "decode_image", "ALLOWED_IMAGE_FORMATS"]

#: Photo formats accepted from the page (Pillow format names); anything else is refused.
ALLOWED_IMAGE_FORMATS = frozenset({"JPEG", "PNG", "BMP", "WEBP", "GIF"})


@dataclass(frozen=True)
class Limits:
    """Size limits of one server (all inputs are refused beyond them, with a plain message)."""

    max_message_bytes: int = 8 * 1024 * 1024  # one websocket message (photos come as binary)
    max_image_bytes: int = 6 * 1024 * 1024  # an uploaded photo file
    max_image_pixels: int = 24_000_000  # decoded width x height (a 6000x4000 camera photo)
    max_sdp_bytes: int = 64 * 1024  # one SDP offer
    max_text_bytes: int = 256 * 1024  # one JSON message (parsed on the event loop)
    max_push_rate: int = 192_000  # audio sample rate accepted on /push
    max_sessions: int = 8  # concurrent websocket clients
    allowed_origins: frozenset[str] = field(default_factory=frozenset)  # extra "scheme://host:port"


def _norm_origin(origin: str) -> str | None:
    parts = urlsplit(origin.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{parts.scheme}://{parts.hostname.lower()}:{port}"


def origin_allowed(origin: str | None, host_header: str | None, allowed: frozenset[str] = frozenset()) -> bool:
    """True when a websocket's ``Origin`` is this server itself (same host:port as the
    ``Host`` header) or is in ``allowed``. Non-browser clients send no Origin; they are
    allowed (they cannot be driven by a hostile web page)."""
    if origin is None:
        return True
    norm = _norm_origin(origin)
    if norm is None:
        return False
    if norm in {_norm_origin(a) for a in allowed}:
        return True
    if not host_header:
        return False
    parts = urlsplit(norm)
    return f"{parts.hostname}:{parts.port}" == _host_port(host_header, parts.port)


def _host_port(host_header: str, default_port: int | None) -> str:
    host = host_header.strip().lower()
    if host.startswith("["):  # [::1]:8080
        name, _, rest = host[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else str(default_port)
        return f"{name}:{port}"
    name, sep, port = host.rpartition(":")
    if not sep:
        return f"{host}:{default_port}"
    return f"{name}:{port}"


def host_allowed(host_header: str | None, loopback_only: bool, allowed: frozenset[str] = frozenset()) -> bool:
    """DNS-rebinding guard. A server bound to loopback answers only requests whose ``Host``
    names this machine (localhost, 127.0.0.0/8, ::1) or an allowed origin's host: a hostile
    page whose own name was re-pointed to 127.0.0.1 sends its own name and is refused, even
    though its Origin and Host agree."""
    if not loopback_only:
        return True
    if not host_header:
        return False
    name = _host_port(host_header, None).rpartition(":")[0]
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        if ipaddress.ip_address(name).is_loopback:
            return True
    except ValueError:
        pass
    return any(urlsplit(a).hostname == name for a in allowed)


def token_matches(given: str | None, expected: str | None) -> bool:
    """Constant-time token check; no token configured means every client is accepted."""
    if expected is None:
        return True
    if given is None:
        return False
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def decode_image(data: bytes, limits: Limits = Limits()) -> np.ndarray:
    """Decode an uploaded photo into (H, W, 3) uint8 RGB, refusing oversized files,
    decompression bombs and formats outside :data:`ALLOWED_IMAGE_FORMATS`."""
    from PIL import Image

    if len(data) > limits.max_image_bytes:
        raise ImageDecodeError(
            f"the photo is {len(data) / 1e6:.1f} MB, over the {limits.max_image_bytes / 1e6:.0f} MB limit: "
            "send a smaller JPEG or PNG"
        )
    if not data:
        raise ImageDecodeError("the photo is empty: choose a JPEG or PNG file")
    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.format not in ALLOWED_IMAGE_FORMATS:
                raise ImageDecodeError(
                    f"the photo's format {img.format!r} is not accepted: use one of {sorted(ALLOWED_IMAGE_FORMATS)}"
                )
            w, h = img.size
            if w * h > limits.max_image_pixels or w <= 0 or h <= 0:
                raise ImageDecodeError(
                    f"the photo is {w}x{h} pixels, over the {limits.max_image_pixels / 1e6:.0f} megapixel limit: "
                    "send a smaller photo"
                )
            img.draft("RGB", (min(w, 2048), min(h, 2048)))  # JPEG: decode at reduced size when large
            rgb = img.convert("RGB")
            return np.asarray(rgb, dtype=np.uint8).copy()
    except ImageDecodeError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageDecodeError(f"the photo is too large to decode safely ({exc}): send a smaller photo") from exc
    except Exception as exc:  # Pillow raises many types for corrupt files
        raise ImageDecodeError(f"the photo could not be read ({type(exc).__name__}): send a JPEG or PNG file") from exc
