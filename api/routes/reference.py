"""``/openapi.json`` and the pages that show it: ``/docs`` (Swagger UI), ``/redoc`` (ReDoc).

Once API keys are set the document needs one (of either role). The pages do not: a
browser navigating to them cannot send a bearer header. They hold nothing but a viewer
and a key prompt; their script (``api/reference/reference.js``) fetches the document
with the key the browser tab already has (the dashboard's) or asks for one, and Swagger
UI's own calls send it too. Everything the pages load is served from here: the viewers
from the files the ``fastapi-offline`` package ships, never from a CDN.
"""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path

import fastapi_offline
from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.responses import FileResponse, JSONResponse

from api.deps import Authorized
from api.static import MEDIA_TYPES, static_headers

PAGES_DIR = Path(__file__).resolve().parent.parent / "reference"
VIEWERS_DIR = Path(fastapi_offline.__file__).resolve().parent / "static"
REDOC = "redoc.standalone.js"
VIEWER_FILES = ("swagger-ui-bundle.js", "swagger-ui.css", REDOC, "favicon.png")
REDOC_LOGO = b"https://cdn.redoc.ly/redoc/logo-mini.svg"
"""The one thing either viewer would fetch from elsewhere: the logo in ReDoc's sidebar."""

# Nothing but this API's own files run or load. The viewers set styles inline, and
# ReDoc runs its search in a worker made from a blob.
HEADERS = static_headers(
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; "
    "worker-src 'self' blob:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)

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


@cache
def asset(name: str) -> tuple[bytes, str]:
    """The content of the file ``name`` and its ETag, read once: the viewers are megabytes,
    and a browser that has them asks only whether they changed (304).

    ReDoc's sidebar logo is the one thing either viewer would fetch from elsewhere (a
    CDN); the policy above would block it, with an error in the console on every load,
    so it is pointed at an empty ``data:`` image, which ReDoc hides when it fails to load.
    """
    content = assets()[name].read_bytes()
    if name == REDOC:
        content = content.replace(REDOC_LOGO, b"data:,")
    return content, f'"{hashlib.sha256(content).hexdigest()[:32]}"'


def _file(path: Path) -> FileResponse:
    return FileResponse(path, media_type=MEDIA_TYPES[path.suffix], headers=HEADERS)


@router.get("/openapi.json", dependencies=[Authorized])
async def openapi_document(request: Request) -> JSONResponse:
    return JSONResponse(request.app.openapi())


@router.get("/docs")
async def swagger_page() -> FileResponse:
    return _file(PAGES_DIR / "swagger.html")


@router.get("/redoc")
async def redoc_page() -> FileResponse:
    return _file(PAGES_DIR / "redoc.html")


@router.get("/docs/assets/{name}")
async def reference_asset(name: str, request: Request) -> Response:
    if name not in assets():
        raise HTTPException(404, detail=f"no such reference file {name!r}")
    content, etag = asset(name)  # in memory after the first read: no thread needed
    headers = {**HEADERS, "ETag": etag}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    return Response(content, media_type=MEDIA_TYPES[Path(name).suffix], headers=headers)
