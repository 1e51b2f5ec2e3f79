"""The OpenAPI document, with ``POST /jobs`` taking the union of every installed type's
request model (``schemas.SubmissionModels``, the same models the route validates with),
discriminated on ``type``, so generated clients and the docs page show each schema;
``POST /jobs/batch`` takes a list of them.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from api.schemas import SubmissionModels
from orchestrator_core.models import MAX_BATCH_JOBS


def install(app: FastAPI, submissions: SubmissionModels) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes
            )
            body, definitions = submissions.json_schema()
            document.setdefault("components", {}).setdefault("schemas", {}).update(definitions)
            batch = {
                "type": "object",
                "properties": {
                    "jobs": {
                        "type": "array",
                        "items": body,
                        "minItems": 1,
                        "maxItems": MAX_BATCH_JOBS,
                    }
                },
                "required": ["jobs"],
                "additionalProperties": False,
            }
            for path in document["paths"].values():
                post = path.get("post", {})
                kind = post.pop("x-job-create", None)
                if kind is not None:
                    schema = body if kind == "one" else batch
                    post["requestBody"] = {
                        "required": True,
                        "content": {"application/json": {"schema": schema}},
                    }
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
