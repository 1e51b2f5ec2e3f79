"""``/openapi.json`` and the pages that show it: ``/docs`` (Swagger UI), ``/redoc`` (ReDoc).

Once API keys are set the document needs one (of either role). The pages do not: a
browser navigating to them cannot send a bearer header. They hold nothing but a viewer
and a key prompt; their script (``api/reference/reference.js``) fetches the document
with the key the browser tab already has (the dashboard's) or asks for one, and Swagger
UI's own calls send it too. Everything the pages load is served from here: the viewers
from the files the ``fastapi-offline`` package ships, never from a CDN.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import fastapi_offline
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse, JSONResponse

from api.deps import Authorized

PAGES_DIR = Path(__file__).resolve().parent.parent / "reference"
VIEWERS_DIR = Path(fastapi_offline.__file__).resolve().parent / "static"
VIEWER_FILES = ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js", "favicon.png")

MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".png": "image/png",
}

# Nothing but this API's own files run or load. The viewers set styles inline, and
# ReDoc runs its search in a worker made from a blob.
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; "
        "worker-src 'self' blob:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}

router = APIRouter(tags=["reference"], include_in_schema=False)


@cache
def assets() -> dict[str, Path]:
    """The files the pages load, by name; a fixed set, so no request path reaches the
    file system."""
    own = {
        path.name: path
        for path in PAGES_DIR.iterdir()
        if path.suffix in (".js", ".css") and path.is_file()
    }
    return {**{name: VIEWERS_DIR / name for name in VIEWER_FILES}, **own}


def _file(path: Path) -> FileResponse:
    return FileResponse(path, media_type=MEDIA_TYPES[path.suffix], headers=HEADERS)


@router.get("/openapi.json", dependencies=[Authorized])
async def openapi_document(request: Request) -> JSONResponse:
    return JSONResponse(request.app.openapi())


@router.get("/docs")
def swagger_page() -> FileResponse:
    return _file(PAGES_DIR / "swagger.html")


@router.get("/redoc")
def redoc_page() -> FileResponse:
    return _file(PAGES_DIR / "redoc.html")


@router.get("/docs/assets/{name}")
def reference_asset(name: str) -> FileResponse:
    path = assets().get(name)
    if path is None:
        raise HTTPException(404, detail=f"no such reference file {name!r}")
    return _file(path)
