"""The OpenAPI document, with ``POST /jobs`` taking a union of every registered type.

Each type gets a ``JobCreate`` variant whose ``type`` is that name and whose ``payload``
is the plugin's model, joined by a discriminator on ``type``, so generated clients and
the docs page show each schema. The route itself validates by hand (for clear errors),
so this union exists for the document only.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, Union

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import Field, TypeAdapter, create_model

from api.schemas import MAX_ATTEMPTS_LIMIT
from orchestrator_core import Plugins


def _variant(name: str, payload: type[Any]) -> type[Any]:
    model_name = "JobCreate_" + re.sub(r"[^A-Za-z0-9]", "_", name)
    return create_model(
        model_name,
        type=(Literal[name], ...),  # type: ignore[arg-type]
        payload=(payload, ...),
        max_attempts=(int | None, Field(default=None, ge=1, le=MAX_ATTEMPTS_LIMIT)),
    )


def job_create_schema(plugins: Plugins) -> tuple[dict[str, Any], dict[str, Any]]:
    """The request body schema of ``POST /jobs`` and the component schemas it refers to."""
    variants = [_variant(r.name, r.job_type.payload) for r in plugins.job_types.values()]
    if not variants:
        return {"type": "object"}, {}
    union: Any = variants[0] if len(variants) == 1 else Union[tuple(variants)]  # noqa: UP007
    adapter: TypeAdapter[Any] = TypeAdapter(Annotated[union, Field(discriminator="type")])
    schema = adapter.json_schema(ref_template="#/components/schemas/{model}")
    definitions = schema.pop("$defs", {})
    return schema, definitions


def install(app: FastAPI, plugins: Plugins) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes
            )
            body, definitions = job_create_schema(plugins)
            document.setdefault("components", {}).setdefault("schemas", {}).update(definitions)
            post = document["paths"]["/jobs"]["post"]
            post.pop("x-job-create", None)
            post["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": body}},
            }
            post["parameters"] = post.get("parameters", [])
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
