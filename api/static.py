"""What every file the API serves from its package is sent with: its media type, and
headers that let nothing but the API's own files run or load (each page adds its
Content-Security-Policy)."""

from __future__ import annotations

MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".png": "image/png",
}


def static_headers(policy: str) -> dict[str, str]:
    """The headers of a served file under the Content-Security-Policy ``policy``."""
    return {
        "Content-Security-Policy": policy,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        # Revalidated on every load (cheap, by ETag), so an upgrade shows at once.
        "Cache-Control": "no-cache",
    }
