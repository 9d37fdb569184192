"""Safety checks for everything a browser can send: Origin, token, message and image limits.

A server reachable by a browser must treat every byte as hostile: a page on another site may
open a websocket to it (Origin check), a photo may be a decompression bomb (pixel limit
before decoding), and a token must not leak through timing (constant-time compare).
"""

from __future__ import annotations

import hmac
import io
import ipaddress
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import numpy as np

from ..errors import ImageDecodeError, RealtimeSDAError

if TYPE_CHECKING:
    from PIL import Image

__all__ = ["Limits", "origin_allowed", "host_allowed", "token_matches", "decode_image", "ALLOWED_IMAGE_FORMATS",
           "tls_context", "TLS_HELP"]

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
    """``scheme://host:port`` of an origin, or None when it is not a valid http(s) origin
    (a port out of range, a broken IPv6 literal...: refused, never an exception)."""
    try:
        parts = urlsplit(origin.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return None
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return None
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
    scheme_host, _, port = norm.rpartition(":")
    return f"{scheme_host.partition('://')[2]}:{port}" == _host_port(host_header, int(port))


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
    if not host_header or len(host_header) > 255:
        return False
    name = _host_port(host_header, None).rpartition(":")[0]
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        if ipaddress.ip_address(name).is_loopback:
            return True
    except ValueError:
        pass
    return any(_hostname(a) == name for a in allowed)


def _hostname(origin: str) -> str | None:
    try:
        return urlsplit(origin).hostname
    except ValueError:
        return None


#: how to make a self-signed certificate for a LAN (also in README and ``serve --help``)
TLS_HELP = ("make a self-signed pair with: openssl req -x509 -newkey rsa:2048 -nodes -days 365 "
            "-keyout key.pem -out cert.pem -subj /CN=realtime-sda -addext subjectAltName=IP:192.168.1.10 "
            "(your machine's address)")


def tls_context(cert: str | Path | None, key: str | Path | None) -> ssl.SSLContext | None:
    """A server TLS context for a PEM certificate (chain) and key; None without a
    certificate; a plain error naming the fix when the files cannot be used. TLS makes the
    page a secure context, where browsers give it the microphone from other machines."""
    if cert is None and key is None:
        return None
    if cert is None:
        raise RealtimeSDAError(f"--tls-key needs --tls-cert too; {TLS_HELP}")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        ctx.load_cert_chain(str(cert), str(key) if key is not None else None)
    except (OSError, ssl.SSLError) as exc:
        raise RealtimeSDAError(f"cannot use the TLS certificate {cert} / key {key}: {exc}; {TLS_HELP}") from None
    return ctx


def token_matches(given: str | None, expected: str | None) -> bool:
    """Constant-time token check; no token configured means every client is accepted."""
    if expected is None:
        return True
    if given is None:
        return False
    # surrogatepass: a lone surrogate ("\ud800", valid JSON) is a wrong token, not an error
    return hmac.compare_digest(given.encode("utf-8", "surrogatepass"), expected.encode("utf-8", "surrogatepass"))


def decode_image(data: bytes, limits: Limits = Limits(), max_side: int | None = None) -> np.ndarray:
    """Decode an uploaded photo into (H, W, 3) uint8 RGB, refusing oversized files,
    decompression bombs and formats outside :data:`ALLOWED_IMAGE_FORMATS`.

    The pixel count is read from the header and checked before anything is decoded. With
    ``max_side``, the photo comes back with its long side between ``max_side`` and twice it
    (smaller photos unchanged): a JPEG is decoded at that scale (``Image.draft``: 1/2..1/8 of
    the pixels are never made), other formats are reduced right after decoding, so at most
    one full-size copy exists, briefly."""
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
            return _decode_scaled(img, max_side)
    except ImageDecodeError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageDecodeError(f"the photo is too large to decode safely ({exc}): send a smaller photo") from exc
    except Exception as exc:  # Pillow raises many types for corrupt files
        raise ImageDecodeError(f"the photo could not be read ({type(exc).__name__}): send a JPEG or PNG file") from exc


def _decode_scaled(img: "Image.Image", max_side: int | None) -> np.ndarray:
    """An opened image decoded to RGB, its long side brought down towards ``max_side``."""
    w, h = img.size
    if max_side is not None and max(w, h) > max_side:
        # the smallest JPEG scale still >= max_side on the long side (draft keeps the aspect)
        img.draft("RGB", (max(1, w * max_side // max(w, h)), max(1, h * max_side // max(w, h))))
    img.load()
    if max_side is not None and (factor := max(img.size) // max_side) >= 2:
        img = img.reduce(factor)  # box filter over factor x factor: long side in [max_side, 2 max_side)
    rgb = img if img.mode == "RGB" else img.convert("RGB")
    return np.array(rgb, dtype=np.uint8)
