from __future__ import annotations

import dataclasses
import functools
import inspect
import random
from typing import Any

import pydantic
import pytest
from pydantic import BaseModel, ConfigDict, Field

from orchestrator_core import CancellationToken, InvalidJobTypeError, JobType


class Count(BaseModel):
    to: int = Field(gt=0, le=100)


def count(payload: Count, token: CancellationToken) -> dict[str, int]:
    """Count up to ``to``.

    Second paragraph.
    """
    return {"counted": payload.to}


async def count_async(payload: Count, token: CancellationToken) -> dict[str, int]:
    return {"counted": payload.to}


def undocumented(payload: Count, token: CancellationToken) -> None:
    pass


def make(**overrides: Any) -> JobType:
    fields: dict[str, Any] = {"name": "acme.count", "payload": Count, "execute": count}
    fields.update(overrides)
    return JobType(**fields)


def test_defaults_follow_the_design() -> None:
    job_type = make()
    assert job_type.description == "Count up to ``to``.\n\nSecond paragraph."
    assert (job_type.max_attempts, job_type.retry_backoff, job_type.retry_backoff_max) == (3, 1, 60)
    assert job_type.retry_jitter is True
    assert job_type.timeout is None
    assert job_type.queue is None
    assert job_type.is_async is False


def test_explicit_description_wins_and_missing_docstring_gives_empty_string() -> None:
    assert make(description="Counts.").description == "Counts."
    assert make(execute=undocumented).description == ""


def test_description_of_a_partial_comes_from_the_wrapped_function() -> None:
    assert make(execute=functools.partial(count)).description == inspect.getdoc(count)


def test_is_frozen_and_keyword_only() -> None:
    job_type = make()
    with pytest.raises(dataclasses.FrozenInstanceError):
        job_type.max_attempts = 5  # type: ignore[misc]
    with pytest.raises(TypeError):
        JobType("acme.count", Count, count)  # type: ignore[call-arg]


def test_numbers_are_normalised_to_float() -> None:
    job_type = make(timeout=30, retry_backoff=2, retry_backoff_max=10)
    assert (job_type.timeout, job_type.retry_backoff, job_type.retry_backoff_max) == (30, 2, 10)
    assert all(isinstance(v, float) for v in (job_type.timeout, job_type.retry_backoff))
    assert isinstance(job_type.retry_backoff_max, float)


class AsyncCallable:
    async def __call__(self, payload: Count, token: CancellationToken) -> None:
        pass


class SyncCallable:
    """Runs synchronously."""

    def __call__(self, payload: Count, token: CancellationToken) -> None:
        pass


@pytest.mark.parametrize(
    ("execute", "expected"),
    [
        (count, False),
        (count_async, True),
        (functools.partial(count_async), True),
        (AsyncCallable(), True),
        (SyncCallable(), False),
    ],
)
def test_is_async(execute: Any, expected: bool) -> None:
    assert make(execute=execute).is_async is expected


def test_callable_object_description_comes_from_its_class() -> None:
    assert make(execute=SyncCallable()).description == "Runs synchronously."


@pytest.mark.parametrize("name", ["a", "acme.count", "a1_b-c.d", "x" * 200, "acme..double", "z-"])
def test_valid_names(name: str) -> None:
    assert make(name=name).name == name


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("name", "Acme.count"),
        ("name", "1acme"),
        ("name", "acme count"),
        ("name", ""),
        ("name", "x" * 201),
        ("name", 42),
        ("payload", dict),
        ("payload", Count(to=1)),
        ("payload", BaseModel),
        ("execute", "acme:count"),
        ("description", 3),
        ("max_attempts", 0),
        ("max_attempts", True),
        ("max_attempts", 2.0),
        ("retry_backoff", 0),
        ("retry_backoff", -1.0),
        ("retry_backoff", True),
        ("retry_backoff", float("nan")),
        ("retry_backoff_max", 0.5),
        ("retry_backoff_max", float("inf")),
        ("retry_jitter", 1),
        ("timeout", 0),
        ("timeout", -5),
        ("timeout", True),
        ("timeout", "30"),
        ("timeout", float("inf")),
        ("queue", ""),
        ("queue", "-slow"),
        ("queue", "slow queue"),
        ("queue", "q" * 201),
        ("priority", 10),
        ("priority", -1),
        ("priority", True),
        ("concurrency", 0),
        ("concurrency", 2.5),
        ("concurrency_per_key", -3),
        ("rate_limit", "20"),
        ("rate_limit", "0/s"),
        ("rate_limit", "5/d"),
        ("rate_limit", 20),
        ("rate_limit_per_key", "200001/s"),
    ],
)
def test_invalid_field_names_field_value_and_fix(field: str, value: object) -> None:
    with pytest.raises(InvalidJobTypeError) as info:
        make(**{field: value})
    message = str(info.value)
    assert f"invalid {field}=" in message
    assert repr(value)[:50] in message
    assert "; " in message  # the fix follows the value
    assert isinstance(info.value, ValueError)


def test_flow_control_fields_make_its_limits() -> None:
    job_type = make(priority=7, concurrency=3, rate_limit=" 100 / m ", rate_limit_per_key="2/s")
    limits = job_type.limits
    assert (limits.priority, limits.concurrency, limits.concurrency_per_key) == (7, 3, None)
    assert (limits.rate_limit, limits.rate_limit_per_key, limits.paused) == ("100/m", "2/s", False)
    assert job_type.rate_limit == "100/m"  # written one way, whatever the spelling
    assert limits.script_arguments() == {
        "priority": 7,
        "concurrency": 3,
        "rate_limit": 600.0,
        "rate_limit_per_key": 500.0,
    }
    assert make().limits.script_arguments() == {"priority": 0}


def test_invalid_job_type_names_the_type() -> None:
    with pytest.raises(InvalidJobTypeError, match=r"^JobType 'acme.count': invalid max_attempts"):
        make(max_attempts=0)


def test_backoff_max_may_equal_backoff() -> None:
    assert make(retry_backoff=5, retry_backoff_max=5).retry_backoff_max == 5


def test_queue_accepts_uppercase_and_digits() -> None:
    assert make(queue="Slow-1.q_2").queue == "Slow-1.q_2"


def test_execute_must_accept_payload_and_token() -> None:
    def one_argument(payload: Count) -> None:
        pass

    with pytest.raises(InvalidJobTypeError, match=r"two positional arguments \(payload, token\)"):
        make(execute=one_argument)


def test_payload_without_json_schema_is_rejected() -> None:
    class Opaque:
        pass

    class Unrepresentable(BaseModel):
        model_config = ConfigDict(arbitrary_types_allowed=True)
        thing: Opaque

    with pytest.raises(InvalidJobTypeError, match=r"invalid payload=.*JSON schema"):
        make(payload=Unrepresentable)


def test_payload_schema_is_the_models_schema_and_a_copy() -> None:
    job_type = make()
    schema = job_type.payload_schema()
    assert schema == Count.model_json_schema()
    assert schema["properties"]["to"] == {
        "exclusiveMinimum": 0,
        "maximum": 100,
        "title": "To",
        "type": "integer",
    }
    schema["properties"].clear()
    assert job_type.payload_schema() == Count.model_json_schema()


def test_validate_payload_returns_the_model() -> None:
    payload = make().validate_payload({"to": 7})
    assert payload == Count(to=7)


def test_validate_payload_lets_validation_error_through_with_its_path() -> None:
    with pytest.raises(pydantic.ValidationError) as info:
        make().validate_payload({"to": 0})
    assert info.value.errors()[0]["loc"] == ("to",)


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid")

    json_body: dict[str, int] | None = Field(default=None, alias="json")
    method: str = "GET"


def test_the_stored_payload_validates_again_as_the_same_payload() -> None:
    # Stored by field name, an aliased field would be an extra field on the worker.
    job_type = make(payload=Request)
    payload = job_type.validate_payload({"json": {"a": 1}})
    stored = job_type.dump_payload(payload)
    assert stored == {"json": {"a": 1}, "method": "GET"}
    assert job_type.validate_payload(stored) == payload


def test_equal_declarations_are_equal_and_hashable() -> None:
    assert make() == make()
    assert hash(make()) == hash(make())
    assert make() != make(max_attempts=4)


def test_retry_delay_grows_exponentially_up_to_the_cap() -> None:
    plain = JobType(
        name="t.backoff",
        payload=_BackoffPayload,
        execute=_backoff_execute,
        retry_backoff=0.5,
        retry_backoff_max=3.0,
        retry_jitter=False,
    )
    assert [plain.retry_delay(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    jittered = dataclasses.replace(plain, retry_jitter=True)
    rng = random.Random(7)
    for attempt, full in enumerate([0.5, 1.0, 2.0, 3.0], start=1):
        delays = [jittered.retry_delay(attempt, rng=rng) for _ in range(200)]
        assert min(delays) >= full / 2
        assert max(delays) <= full
        assert len(set(delays)) > 100, "jitter must spread the delays"


class _BackoffPayload(BaseModel):
    pass


def _backoff_execute(payload: _BackoffPayload, token: CancellationToken) -> None:
    """Does nothing."""
