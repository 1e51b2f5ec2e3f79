"""``/ui``: the web dashboard, static files shipped inside the ``api`` package.

The pages themselves are open to all, since a browser navigating to ``/ui`` cannot
send an API key; every call they make for data needs the key like any client's.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse, RedirectResponse

from api.static import MEDIA_TYPES, static_headers

UI_DIR = Path(__file__).resolve().parent.parent / "ui"

# Only the dashboard's own files run or load: no inline script, nothing from elsewhere.
HEADERS = static_headers(
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)

router = APIRouter(tags=["ui"], include_in_schema=False)


@cache
def assets() -> dict[str, Path]:
    """The servable files by name; a fixed set, so no request path reaches the file system."""
    return {
        path.name: path
        for path in UI_DIR.iterdir()
        if path.is_file() and path.suffix in MEDIA_TYPES
    }


def _file(name: str) -> FileResponse:
    path = assets().get(name)
    if path is None:
        raise HTTPException(404, detail=f"no such dashboard file {name!r}")
    return FileResponse(path, media_type=MEDIA_TYPES[path.suffix], headers=HEADERS)


@router.get("/ui")
def ui_root() -> RedirectResponse:
    # Relative, so the page's own relative links work behind a proxy's path prefix too.
    return RedirectResponse("ui/", status_code=307)


@router.get("/ui/")
def ui_index() -> FileResponse:
    return _file("index.html")


@router.get("/ui/{name}")
def ui_asset(name: str) -> FileResponse:
    return _file(name)
