"""A payload model's secret fields: whether it has any, and its JSON with their real values.

pydantic writes a field typed ``SecretStr`` (or ``SecretBytes``, ``Secret[...]``) as
``"**********"`` in JSON mode. That masked JSON is what a job stores as its payload and
what every surface shows, so no reader of a job can see a secret. The worker needs the
real values for ``execute``: :func:`reveal` gives the JSON with them in place, which the
submitting process seals (``sealing.py``) and the worker validates again.
"""

from __future__ import annotations

import dataclasses
import functools
import typing
from collections.abc import Mapping
from typing import Any, get_args, get_origin

from pydantic import BaseModel, Secret, SecretBytes, SecretStr
from pydantic_core import to_jsonable_python
from typing_extensions import is_typeddict

from orchestrator_core.exceptions import SerializationError

SECRET_TYPES = (SecretStr, SecretBytes, Secret)
"""The pydantic types whose values JSON mode masks."""


@functools.cache
def holds_secrets(model: type[BaseModel]) -> bool:
    """Whether ``model`` has a secret field anywhere: at its top level or inside nested
    models, dataclasses, typed dicts, lists, dict values, unions and optionals.

    Read from the model's annotations, once per model, so a type without secret fields
    pays nothing on the submission path.
    """
    return _annotation_holds(model, set())


def _annotation_holds(annotation: object, seen: set[int]) -> bool:
    value = getattr(annotation, "__value__", None)  # a `type X = ...` alias
    if value is not None and not isinstance(annotation, type):
        return _annotation_holds(value, seen)
    origin = get_origin(annotation)
    if origin is not None:
        if isinstance(origin, type) and issubclass(origin, SECRET_TYPES):
            return True  # Secret[int]
        # Annotated's metadata, Literal's values: not types, so they hold nothing.
        return any(_annotation_holds(arg, seen) for arg in get_args(annotation))
    if not isinstance(annotation, type):
        return False
    if issubclass(annotation, SECRET_TYPES):
        return True
    if id(annotation) in seen:
        return False  # a recursive model: its fields are being looked at already
    seen.add(id(annotation))
    if issubclass(annotation, BaseModel):
        fields: list[object] = [f.annotation for f in annotation.model_fields.values()]
    elif dataclasses.is_dataclass(annotation) or is_typeddict(annotation):
        try:
            fields = list(typing.get_type_hints(annotation).values())
        except (NameError, TypeError):
            # Names only its own scope resolves: sealing a payload without secrets costs
            # a little, missing a secret would run execute with a masked value.
            return True
    else:
        return False
    return any(_annotation_holds(field, seen) for field in fields)


def reveal(payload: BaseModel) -> dict[str, Any]:
    """The JSON of ``payload`` (fields by alias) with each secret field's real value where
    JSON mode writes ``"**********"``: validating it again gives the same payload back.

    Everything but the secrets is the JSON-mode dump itself, so the model's own JSON
    serializers apply; the secrets come from the Python-mode dump, which keeps them as
    objects, walked alongside.

    :raises SerializationError: a secret sits where the two dumps differ in shape (a
        JSON-only serializer that reshapes a container of secrets), so it cannot be put
        back; a secret value that is not JSON.
    """
    masked = payload.model_dump(mode="json", by_alias=True)
    plain = payload.model_dump(by_alias=True)
    revealed = _merge(plain, masked, type(payload).__name__)
    if not isinstance(revealed, dict):
        raise SerializationError(f"payload {type(payload).__name__} does not dump to an object")
    return revealed


def _merge(plain: object, masked: object, where: str) -> Any:
    if isinstance(plain, SECRET_TYPES):
        return _secret_json(plain, where)
    if isinstance(plain, Mapping) and isinstance(masked, dict) and len(plain) == len(masked):
        if any(isinstance(key, SECRET_TYPES) for key in plain):
            raise SerializationError(f"payload {where}: a secret cannot be a dict key")
        # Both dumps keep the order of the dict they come from; only keys' types differ.
        return {
            key: _merge(value, masked_value, f"{where}.{key}")
            for (key, masked_value), value in zip(masked.items(), plain.values(), strict=True)
        }
    if isinstance(plain, set | frozenset) and _contains_secret(plain):
        # Two dumps of a set need not list it in one order; its items stand alone.
        return [_jsonable(item, f"{where}[]") for item in plain]
    if (
        isinstance(plain, list | tuple | set | frozenset)
        and isinstance(masked, list)
        and len(plain) == len(masked)
    ):
        return [
            _merge(item, masked_item, f"{where}[{index}]")
            for index, (item, masked_item) in enumerate(zip(plain, masked, strict=True))
        ]
    if _contains_secret(plain):
        raise SerializationError(
            f"payload {where}: its JSON serializer reshapes a value holding secret fields, "
            "so their real values cannot be stored for the worker"
        )
    return masked


def _jsonable(plain: object, where: str) -> Any:
    if isinstance(plain, SECRET_TYPES):
        return _secret_json(plain, where)
    if isinstance(plain, Mapping):
        return {str(key): _jsonable(value, f"{where}.{key}") for key, value in plain.items()}
    if isinstance(plain, list | tuple | set | frozenset):
        return [_jsonable(item, f"{where}[]") for item in plain]
    return _leaf_json(plain, where)


def _secret_json(secret: Secret[Any] | SecretStr | SecretBytes, where: str) -> Any:
    return _leaf_json(secret.get_secret_value(), where)


def _leaf_json(value: object, where: str) -> Any:
    try:
        return to_jsonable_python(value)
    except (TypeError, ValueError) as exc:  # pydantic-core's PydanticSerializationError
        raise SerializationError(f"payload {where} is not JSON-serializable: {exc}") from None


def _contains_secret(plain: object) -> bool:
    if isinstance(plain, SECRET_TYPES):
        return True
    if isinstance(plain, Mapping):
        return any(_contains_secret(k) or _contains_secret(v) for k, v in plain.items())
    if isinstance(plain, list | tuple | set | frozenset):
        return any(_contains_secret(item) for item in plain)
    return False
