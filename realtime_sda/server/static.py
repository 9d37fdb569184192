"""Plain HTTP for the page: files of ``web_client/`` served by the websockets server's
``process_request`` hook, with no way out of that folder."""

from __future__ import annotations

import mimetypes
import sys
from pathlib import Path
from urllib.parse import unquote, urlsplit

__all__ = ["WEB_CLIENT_DIR", "ALLOWED_METHODS", "resolve_static", "static_response", "SECURITY_HEADERS"]


def _web_client_dir() -> Path:
    """The repository's ``web_client/``, or the copy a wheel install puts under the prefix."""
    repo = Path(__file__).resolve().parents[2] / "web_client"
    installed = Path(sys.prefix) / "share" / "realtime-sda" / "web_client"
    return repo if repo.is_dir() or not installed.is_dir() else installed


#: The page's folder.
WEB_CLIENT_DIR = _web_client_dir()

_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
          ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml", ".png": "image/png",
          ".ico": "image/x-icon", ".json": "application/json"}

#: Sent with every file: no framing by other sites, no third-party resources, no sniffing.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' blob: data:; "
    "media-src 'self' blob: mediastream:; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


#: request paths longer than this name no file of the page (they get 404 unread)
MAX_PATH_CHARS = 1024


def resolve_static(request_path: str, root: Path = WEB_CLIENT_DIR) -> Path | None:
    """The file under ``root`` that a request path names, or None when it does not exist or
    would leave ``root`` (``..``, encoded ``%2e%2e``, absolute paths, symlinks out)."""
    try:
        path = unquote(urlsplit(request_path).path)
    except ValueError:
        return None
    if "\x00" in path or "\\" in path or len(path) > MAX_PATH_CHARS:
        return None
    if any(len(part.encode("utf-8", "surrogatepass")) > 255 for part in path.split("/")):
        return None  # longer than any file name can be (the OS would raise ENAMETOOLONG)
    rel = path.lstrip("/") or "index.html"
    root = root.resolve()
    try:
        target = (root / rel).resolve()
        if target != root and root not in target.parents:
            return None
        if target.is_dir():
            target = target / "index.html"
        return target if target.is_file() else None
    except (OSError, RuntimeError, ValueError):
        return None


#: The methods the static paths answer; any other gets 405.
ALLOWED_METHODS = ("GET", "HEAD")


def static_response(request_path: str, root: Path = WEB_CLIENT_DIR, method: str = "GET") -> tuple[int, str, dict[str, str], bytes]:
    """(status, reason, headers, body) for a ``method`` request of ``request_path``: GET sends
    the file, HEAD the same headers (Content-Length included) without the body, any other
    method 405 with ``Allow``."""
    text = {"Content-Type": "text/plain; charset=utf-8", **SECURITY_HEADERS}
    if method not in ALLOWED_METHODS:
        body = b"method not allowed\n"
        return 405, "Method Not Allowed", {**text, "Allow": ", ".join(ALLOWED_METHODS),
                                           "Content-Length": str(len(body))}, body
    target = resolve_static(request_path, root)
    if target is None:
        status, reason, headers, body = 404, "Not Found", text, b"not found\n"
    else:
        ctype = _TYPES.get(target.suffix.lower()) or mimetypes.guess_type(target.name)[0] or "application/octet-stream"
        status, reason, headers, body = 200, "OK", {"Content-Type": ctype, **SECURITY_HEADERS}, target.read_bytes()
    headers = {**headers, "Content-Length": str(len(body))}
    return status, reason, headers, (b"" if method == "HEAD" else body)
