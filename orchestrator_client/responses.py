"""What the API's answers mean: the JSON documents it sends, and every failure, an error
status or no answer at all, as an :class:`ApiError`."""

from __future__ import annotations

from typing import Any

import httpx

from orchestrator_core.exceptions import ApiError

Document = dict[str, Any]
"""A JSON object exactly as the API sent it, so that a caller printing it shows what the
API said."""


def document(response: httpx.Response, *, base_url: str, listing: bool = False) -> Any:
    """The JSON object ``response`` holds, or with ``listing`` its JSON array of objects.

    :raises ApiError: with the response's status, when its body is not that (a proxy's
        page, say).
    """
    try:
        value = response.json()
    except ValueError:
        value = None
    if listing:
        wanted = "a JSON array of objects"
        good = isinstance(value, list) and all(isinstance(item, dict) for item in value)
    else:
        wanted, good = "a JSON object", isinstance(value, dict)
    if not good:
        raise ApiError(
            f"{response.status_code} the API at {base_url} answered with something "
            f"other than {wanted}: {one_line(response.text)[:200]!r}",
            status=response.status_code,
            detail=response.text[:200],
        )
    return value


def refusal(response: httpx.Response, *, sends_key: bool) -> ApiError:
    """The error an error status stands for, with the ``detail`` of the API's body.

    :param sends_key: whether the client sends an API key, so that a 401 without one
        can say which setting is missing.
    """
    status = response.status_code
    detail = _error_detail(response)
    message = f"{status} {describe_detail(detail)}"
    if status == 401 and not sends_key:
        message += " (no API key was sent; set ORCHESTRATOR_API_KEY)"
    return ApiError(message, status=status, detail=detail)


def unreachable(
    exc: httpx.TransportError, *, base_url: str, connect_timeout: float, read_timeout: float
) -> ApiError:
    """The error for a request that got no answer (``status`` None): refused, broken off,
    or not answered within the timeouts."""
    if isinstance(exc, httpx.TimeoutException):
        return ApiError(
            f"the API at {base_url} is unreachable: no answer in time ({type(exc).__name__}; "
            f"connect {connect_timeout:g} s, read {read_timeout:g} s)",
            status=None,
        )
    return ApiError(f"the API at {base_url} is unreachable: {one_line(exc)}", status=None)


def describe_detail(detail: object) -> str:
    """The ``detail`` of an error body on one line: validation errors as ``where: what``."""
    if isinstance(detail, list):
        return "; ".join(_describe_item(item) for item in detail)
    return one_line(str(detail))


def one_line(value: object) -> str:
    """``value`` as text with every run of whitespace, line breaks included, as one space."""
    return " ".join(str(value).split())


def _describe_item(item: object) -> str:
    if not isinstance(item, dict):
        return one_line(str(item))
    loc = [str(part) for part in item.get("loc", [])]
    if loc[:1] == ["body"]:
        loc = loc[1:]  # every submission error is in the body; the rest says where
    msg = one_line(str(item.get("msg", item)))
    return f"{'.'.join(loc)}: {msg}" if loc else msg


def _error_detail(response: httpx.Response) -> object:
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and "detail" in body:
        return body["detail"]
    # Not the API's own error (a proxy's page, say): show its start, not the whole page.
    return one_line(response.text)[:200] or response.reason_phrase
