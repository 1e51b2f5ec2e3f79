"""The baseline of ``api_throughput.py``: a FastAPI POST that reads its JSON and does nothing.

Served the same way as the API (uvicorn, the same options and number of processes), it
shows what the server, the framework and the load generator cost before any work:

    uvicorn bench.noop_api:app --workers N
"""

from __future__ import annotations

import json

from fastapi import FastAPI, Request, Response

app = FastAPI()


@app.post("/noop", status_code=201)
async def noop(request: Request) -> Response:
    json.loads(await request.body())
    return Response(b'{"ok":true}', 201, media_type="application/json")
