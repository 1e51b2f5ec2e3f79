"""``JobType``: what a plugin declares for each kind of job it can run (DESIGN section 3)."""

from __future__ import annotations

import copy
import functools
import inspect
import math
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NoReturn

from pydantic import BaseModel

from orchestrator_core.cancellation import CancellationToken
from orchestrator_core.exceptions import InvalidJobTypeError
from orchestrator_core.flow import Limits, check
from orchestrator_core.secret_fields import holds_secrets, reveal

NAME_PATTERN = re.compile(r"[a-z][a-z0-9_.-]*")
QUEUE_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
MAX_NAME_LENGTH = 200

Execute = Callable[[Any, CancellationToken], Any]
"""``execute(payload, token)``: a plain function or an ``async def``."""


@dataclass(frozen=True, kw_only=True)
class JobType:
    """One kind of job: its name, payload model, the function that runs it, and its limits.

    Every field is checked on construction, so a malformed declaration fails inside
    the plugin's ``register_job_types`` hook, where the loader can name the plugin.

    :raises InvalidJobTypeError: naming the field, the bad value and the fix.
    """

    name: str
    """Unique across all plugins; lowercase ``[a-z][a-z0-9_.-]*``, by convention ``plugin.kind``."""
    payload: type[BaseModel]
    """The pydantic model a job's payload must validate against."""
    execute: Execute
    """Runs one attempt; its return value (JSON-serializable or a pydantic model) is the result."""
    description: str | None = None
    """Shown in ``GET /job-types``; None (the default) takes the docstring of ``execute``.

    Always a ``str`` after construction."""
    max_attempts: int = 3
    retry_backoff: float = 1.0
    """Base of the exponential backoff between attempts, in seconds."""
    retry_backoff_max: float = 60.0
    """Upper bound of the backoff, in seconds."""
    retry_jitter: bool = True
    """Randomise each backoff so retries of many jobs do not fire together."""
    timeout: float | None = None
    """Seconds an attempt may run before its token fires with reason ``"timeout"``."""
    queue: str | None = None
    """Broker queue to run on; None derives it from the name."""
    max_attempts_limit: int | None = None
    """The most ``max_attempts`` a submission may ask for; None allows the API's own cap.
    A type whose attempts have side effects that must not repeat (``shell.run``) sets 1."""
    retention: float | None = None
    """Seconds a finished job of this type is kept; None takes
    ``ORCHESTRATOR_RETENTION_SECONDS``, 0 keeps its jobs forever."""
    priority: int = 0
    """0..9: among waiting jobs of one queue, higher starts first (a job may set its own)."""
    concurrency: int | None = None
    """At most this many jobs of the type RUNNING at once, deployment-wide; None: no cap."""
    concurrency_per_key: int | None = None
    """At most this many RUNNING per ``concurrency_key`` (a tenant id, say); None: no cap."""
    rate_limit: str | None = None
    """At most N starts per period, evenly spaced: ``"20/s"``, ``"100/m"``, ``"5/h"``."""
    rate_limit_per_key: str | None = None
    """The same per ``concurrency_key``."""

    _schema: dict[str, Any] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._check_name()
        self._check_callables()
        self._check_limits()
        if self.description is None:
            object.__setattr__(self, "description", inspect.getdoc(_unwrap(self.execute)) or "")
        elif not isinstance(self.description, str):
            self._fail("description", self.description, "pass a str, or None for the docstring")
        try:
            schema = self.payload.model_json_schema()
        except Exception as exc:  # pydantic raises several types for unrepresentable fields
            self._fail("payload", self.payload, f"use fields that have a JSON schema ({exc})")
        object.__setattr__(self, "_schema", schema)

    @property
    def limits(self) -> Limits:
        """The type's own flow control, before any operator override."""
        return Limits(
            priority=self.priority,
            concurrency=self.concurrency,
            concurrency_per_key=self.concurrency_per_key,
            rate_limit=self.rate_limit,
            rate_limit_per_key=self.rate_limit_per_key,
        )

    @property
    def is_async(self) -> bool:
        """True when ``execute`` is a coroutine function (or an object with ``async __call__``)."""
        fn = self.execute
        # type(fn).__call__, not fn.__call__: for a class, that is what calling it does.
        return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(type(fn).__call__)

    def payload_schema(self) -> dict[str, Any]:
        """The payload model's JSON Schema (a fresh copy the caller may change)."""
        return copy.deepcopy(self._schema)

    def validate_payload(self, data: object) -> BaseModel:
        """Validate ``data`` against the payload model and return the model instance.

        :raises pydantic.ValidationError: listing each error with its path.
        """
        return self.payload.model_validate(data)

    @property
    def has_secrets(self) -> bool:
        """True when the payload model has a field typed ``SecretStr`` (``SecretBytes``,
        ``Secret[...]``) anywhere: such a job also stores a sealed copy of its payload
        for the worker (read from the model once, then cached)."""
        return holds_secrets(self.payload)

    def dump_payload(self, payload: BaseModel) -> dict[str, Any]:
        """The stored and shown form of a validated payload: its JSON, fields named by
        their alias, secret fields masked as ``"**********"``. Every reader of a job (the
        API, events, the CLI, the dashboard, logs, hooks) sees this form only; for a type
        without secrets, validating it again gives the same payload back."""
        return payload.model_dump(mode="json", by_alias=True)

    def reveal_payload(self, payload: BaseModel) -> dict[str, Any]:
        """The form the worker validates for ``execute``: :meth:`dump_payload` with each
        secret field's real value, so validating it again gives the same payload back.
        Sealed before it is stored; the same as :meth:`dump_payload` without secrets.

        :raises SerializationError: a secret's value cannot be written as JSON.
        """
        if not self.has_secrets:
            return self.dump_payload(payload)
        return reveal(payload)

    def retry_delay(self, attempt: int, *, rng: random.Random | None = None) -> float:
        """Seconds to wait before the attempt after ``attempt`` (the one that just failed).

        Exponential: ``retry_backoff * 2 ** (attempt - 1)``, capped at ``retry_backoff_max``;
        with jitter, a random point in the upper half of that, so retries of many jobs
        spread out while the spacing still grows.
        """
        delay = min(self.retry_backoff_max, self.retry_backoff * 2.0 ** max(0, attempt - 1))
        if self.retry_jitter:
            delay *= (rng or random).uniform(0.5, 1.0)
        return delay

    def _fail(self, field_name: str, value: object, fix: str) -> NoReturn:
        label = self.name if isinstance(self.name, str) else "?"
        raise InvalidJobTypeError(f"JobType {label!r}: invalid {field_name}={value!r}; {fix}")

    def _check_name(self) -> None:
        name = self.name
        if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
            self._fail(
                "name",
                name,
                "use lowercase letters, digits, '_', '.', '-', starting with a letter "
                "(e.g. 'acme.count')",
            )
        if len(name) > MAX_NAME_LENGTH:
            self._fail("name", name, f"use at most {MAX_NAME_LENGTH} characters")

    def _check_callables(self) -> None:
        payload = self.payload
        if not (
            isinstance(payload, type)
            and issubclass(payload, BaseModel)
            and payload is not BaseModel
        ):
            self._fail("payload", payload, "pass a subclass of pydantic.BaseModel (the class)")
        if not callable(self.execute):
            self._fail("execute", self.execute, "pass a function execute(payload, token)")
        try:
            signature = inspect.signature(self.execute)
        except (TypeError, ValueError):
            return  # some builtins cannot be introspected; the worker will find out
        try:
            signature.bind(None, None)
        except TypeError:
            self._fail(
                "execute",
                self.execute,
                f"it must accept two positional arguments (payload, token), "
                f"its signature is {signature}",
            )

    def _check_limits(self) -> None:
        if not _is_int(self.max_attempts) or self.max_attempts < 1:
            self._fail("max_attempts", self.max_attempts, "pass an int >= 1")
        if not _is_finite(self.retry_backoff) or self.retry_backoff <= 0:
            self._fail("retry_backoff", self.retry_backoff, "pass a number of seconds > 0")
        if not _is_finite(self.retry_backoff_max) or self.retry_backoff_max < self.retry_backoff:
            self._fail(
                "retry_backoff_max",
                self.retry_backoff_max,
                f"pass a number of seconds >= retry_backoff ({self.retry_backoff})",
            )
        if not isinstance(self.retry_jitter, bool):
            self._fail("retry_jitter", self.retry_jitter, "pass True or False")
        if self.timeout is not None and (not _is_finite(self.timeout) or self.timeout <= 0):
            self._fail("timeout", self.timeout, "pass a number of seconds > 0, or None for none")
        limit = self.max_attempts_limit
        if limit is not None and (not _is_int(limit) or limit < self.max_attempts):
            self._fail(
                "max_attempts_limit",
                limit,
                f"pass an int >= max_attempts ({self.max_attempts}), or None for no cap",
            )
        if self.retention is not None and (not _is_finite(self.retention) or self.retention < 0):
            self._fail("retention", self.retention, "pass seconds >= 0 (0 keeps), or None")
        for name in (
            "priority",
            "concurrency",
            "concurrency_per_key",
            "rate_limit",
            "rate_limit_per_key",
        ):
            try:
                object.__setattr__(self, name, check(name, getattr(self, name)))
            except ValueError as exc:
                self._fail(name, getattr(self, name), str(exc))
        queue = self.queue
        if queue is not None and (
            not isinstance(queue, str)
            or not QUEUE_PATTERN.fullmatch(queue)
            or len(queue) > MAX_NAME_LENGTH
        ):
            self._fail(
                "queue",
                queue,
                "pass None to derive it from the name, or letters, digits, '_', '.', '-' "
                f"(at most {MAX_NAME_LENGTH}, starting with a letter or digit)",
            )
        # Normalise so consumers (backoff arithmetic, JSON output) always see floats.
        for name in ("retry_backoff", "retry_backoff_max", "timeout", "retention"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, float(value))


def _is_int(value: object) -> bool:
    # bool is an int subclass, but max_attempts=True is a mistake, not 1.
    return isinstance(value, int) and not isinstance(value, bool)


def _is_finite(value: object) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return math.isfinite(value)


def _unwrap(fn: Callable[..., Any]) -> Callable[..., Any]:
    # A partial's own docstring describes functools.partial, not the job.
    while isinstance(fn, functools.partial):
        fn = fn.func
    return fn
