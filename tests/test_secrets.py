"""Secret payload fields: found from the model, masked in the stored payload, sealed for the
worker (encrypted with the payload keys), and opened again only with one of them.

The store tests run on the machine's Redis; ``tests/api/test_api_secrets.py`` takes the
same types through a real API and a real worker.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from datetime import date
from typing import Any

import pytest
import redis
from cryptography.fernet import Fernet
from pydantic import BaseModel, Field, Secret, SecretBytes, SecretStr, field_serializer
from typing_extensions import TypedDict

from orchestrator_core import (
    CancellationToken,
    ConfigurationError,
    IdempotencyConflictError,
    JobType,
    SealedPayloadError,
    SerializationError,
    Settings,
    State,
)
from orchestrator_core.attempt import perform
from orchestrator_core.dispatch.publisher import Publisher
from orchestrator_core.dispatch.submission import Submitter
from orchestrator_core.sealing import Sealer
from orchestrator_core.secret_fields import holds_secrets, reveal
from orchestrator_core.store import JobStore, Ticket
from orchestrator_core.testing import run_job

MASK = "**********"
NEW_KEY = Fernet.generate_key().decode()
OLD_KEY = Fernet.generate_key().decode()


class Credentials(BaseModel):
    user: str
    password: SecretStr


class Login(BaseModel):
    url: str
    token: SecretStr = Field(alias="apiToken", max_length=64)
    credentials: Credentials
    spare: list[Credentials] = []
    headers: dict[str, SecretStr] = {}
    pin: SecretStr | None = None


def login(payload: Login, token: CancellationToken) -> dict[str, Any]:
    """Returns the secrets it was given: only a test may, to prove they arrived."""
    return {
        "token": payload.token.get_secret_value(),
        "password": payload.credentials.password.get_secret_value(),
        "spare": [spare.password.get_secret_value() for spare in payload.spare],
        "headers": {name: value.get_secret_value() for name, value in payload.headers.items()},
    }


LOGIN = JobType(name="t.login", payload=Login, execute=login)
BODY: dict[str, Any] = {
    "url": "https://example.invalid/",
    "apiToken": "tok-🔑-1",
    "credentials": {"user": "ann", "password": "pw-top"},
    "spare": [{"user": "bob", "password": "pw-spare"}],
    "headers": {"X-Auth": "hdr-secret"},
}
SECRETS = ("tok-🔑-1", "pw-top", "pw-spare", "hdr-secret")


# --- Which models hold secrets --------------------------------------------------------


class Plain(BaseModel):
    name: str
    counts: list[dict[str, int | None]] = []


class Tree(BaseModel):
    label: str
    children: list[Tree] = []


@dataclasses.dataclass
class Point:
    key: SecretStr


class Auth(TypedDict):
    secret: SecretBytes


def one_field(annotation: Any) -> type[BaseModel]:
    return type("Holder", (BaseModel,), {"__annotations__": {"field": annotation}})


@pytest.mark.parametrize(
    "annotation",
    [
        SecretStr,
        SecretStr | None,
        list[SecretStr],
        dict[str, SecretStr],
        tuple[int, SecretStr],
        SecretBytes,
        Secret[int],
        Credentials,
        list[Credentials] | None,
        dict[str, list[Credentials]],
        Point,
        Auth,
    ],
    ids=repr,
)
def test_a_secret_field_is_found_at_any_depth(annotation: Any) -> None:
    assert holds_secrets(one_field(annotation))
    assert JobType(name="t.x", payload=one_field(annotation), execute=login).has_secrets


@pytest.mark.parametrize("model", [Plain, Tree, one_field(str), one_field(list[Plain])])
def test_a_model_without_secret_fields_has_none(model: type[BaseModel]) -> None:
    assert not holds_secrets(model)
    assert not JobType(name="t.x", payload=model, execute=login).has_secrets


# --- Masked and revealed forms --------------------------------------------------------


def test_the_stored_payload_masks_every_secret_and_the_revealed_one_holds_them() -> None:
    payload = LOGIN.validate_payload(BODY)
    masked = LOGIN.dump_payload(payload)
    assert masked["apiToken"] == MASK
    assert masked["credentials"] == {"user": "ann", "password": MASK}
    assert masked["spare"] == [{"user": "bob", "password": MASK}]
    assert masked["headers"] == {"X-Auth": MASK}
    assert not any(secret in json.dumps(masked) for secret in SECRETS)

    revealed = LOGIN.reveal_payload(payload)
    assert revealed == {**BODY, "pin": None}
    assert LOGIN.validate_payload(revealed) == payload


class Everything(BaseModel):
    when: Secret[date]
    raw: SecretBytes
    keyed: dict[int, SecretStr]
    many: set[SecretStr]
    empty: SecretStr
    day: date

    @field_serializer("day", when_used="json")
    def _day(self, value: date) -> str:
        return value.strftime("%d/%m/%Y")


def test_revealing_keeps_the_models_own_json_and_every_kind_of_secret() -> None:
    payload = Everything.model_validate(
        {
            "when": "2024-02-29",
            "raw": "bytes!",
            "keyed": {"7": "seven"},
            "many": ["a", "b"],
            "empty": "",
            "day": "2024-03-01",
        }
    )
    revealed = reveal(payload)
    assert revealed["when"] == "2024-02-29"
    assert revealed["raw"] == "bytes!"
    assert revealed["keyed"] == {"7": "seven"}
    assert sorted(revealed["many"]) == ["a", "b"]
    assert revealed["empty"] == ""
    assert revealed["day"] == "01/03/2024"  # the JSON serializer of a field without secrets


class Reshaped(BaseModel):
    pair: list[SecretStr]

    @field_serializer("pair", when_used="json")
    def _pair(self, value: list[SecretStr]) -> str:
        return ",".join(str(item) for item in value)


def test_a_secret_that_cannot_be_put_back_is_an_error_not_a_masked_value() -> None:
    payload = Reshaped.model_validate({"pair": ["x", "y"]})
    with pytest.raises(SerializationError, match="reshapes"):
        reveal(payload)


def test_a_type_without_secrets_reveals_what_it_stores() -> None:
    plain = JobType(name="t.plain", payload=Plain, execute=login)
    payload = plain.validate_payload({"name": "n", "counts": [{"a": 1}]})
    assert plain.reveal_payload(payload) == plain.dump_payload(payload)


# --- Sealing ---------------------------------------------------------------------------


def test_a_sealed_copy_is_encrypted_with_the_newest_key_and_opened_by_any() -> None:
    revealed = LOGIN.reveal_payload(LOGIN.validate_payload(BODY))
    sealed = Sealer([NEW_KEY, OLD_KEY]).seal(revealed)
    assert sealed.text.startswith("fernet:")
    assert not any(secret in sealed.text or secret in sealed.digest for secret in SECRETS)
    assert Fernet(NEW_KEY).decrypt(sealed.text.removeprefix("fernet:").encode())
    assert Sealer([NEW_KEY]).unseal(sealed.text, job_id="j") == revealed

    # Rotation: what the old key sealed opens once a new key is put first.
    by_old = Sealer([OLD_KEY]).seal(revealed)
    assert Sealer([NEW_KEY, OLD_KEY]).unseal(by_old.text, job_id="j") == revealed
    assert Sealer([NEW_KEY, OLD_KEY]).seal(revealed).digest == by_old.digest


def test_without_a_key_the_copy_is_plain_and_still_opens_where_keys_are_set() -> None:
    sealed = Sealer().seal({"token": "t"})
    assert sealed.text == 'plain:{"token":"t"}'
    assert Sealer([NEW_KEY]).unseal(sealed.text, job_id="j") == {"token": "t"}


def test_an_encrypted_copy_without_its_key_is_a_clear_error() -> None:
    sealed = Sealer([OLD_KEY]).seal({"token": "t"})
    with pytest.raises(SealedPayloadError, match="ORCHESTRATOR_PAYLOAD_KEY is not set") as none:
        Sealer().unseal(sealed.text, job_id="j1")
    assert none.value.job_id == "j1"
    with pytest.raises(SealedPayloadError, match="none of the keys in ORCHESTRATOR_PAYLOAD_KEY"):
        Sealer([NEW_KEY]).unseal(sealed.text, job_id="j1")
    with pytest.raises(SealedPayloadError, match="no sealed copy"):
        Sealer([NEW_KEY]).unseal(None, job_id="j1")
    with pytest.raises(SealedPayloadError, match="no known format"):
        Sealer([NEW_KEY]).unseal("rot13:gbxra", job_id="j1")


def test_the_digest_tells_secrets_apart_and_depends_on_the_key() -> None:
    sealer = Sealer([NEW_KEY])
    assert sealer.seal({"a": "1"}).digest == sealer.seal({"a": "1"}).digest
    assert sealer.seal({"a": "1"}).digest != sealer.seal({"a": "2"}).digest
    assert Sealer([OLD_KEY]).seal({"a": "1"}).digest != sealer.seal({"a": "1"}).digest


@pytest.mark.parametrize("key", ["not-a-key", Fernet.generate_key().decode()[:-4]])
def test_a_malformed_key_is_a_configuration_error_that_does_not_echo_it(key: str) -> None:
    with pytest.raises(ConfigurationError, match="ORCHESTRATOR_PAYLOAD_KEY: key 2 of 2") as bad:
        Sealer.from_settings(Settings(payload_key=f"{NEW_KEY},{key}"))  # type: ignore[arg-type]
    assert key not in str(bad.value)
    assert NEW_KEY not in str(bad.value)


# --- What the worker validates ---------------------------------------------------------


def test_a_payload_that_no_longer_validates_does_not_echo_its_secrets() -> None:
    revealed = {**BODY, "apiToken": "x" * 65 + "-too-long"}
    outcome = perform(LOGIN, revealed, CancellationToken("j", 1))
    assert outcome.state is State.FAILED
    assert outcome.error is not None
    assert outcome.error.type == "PayloadInvalid"
    assert "apiToken" in outcome.error.message
    assert "too-long" not in outcome.error.message


def test_the_testing_kit_runs_execute_with_the_real_values() -> None:
    run = run_job(LOGIN, BODY)
    run.assert_completed(
        result={
            "token": "tok-🔑-1",
            "password": "pw-top",
            "spare": ["pw-spare"],
            "headers": {"X-Auth": "hdr-secret"},
        }
    )


# --- In Redis --------------------------------------------------------------------------


@pytest.fixture
def submitter(store: JobStore, settings: Settings) -> Iterator[Submitter]:
    publisher = Publisher.from_settings(settings)
    yield Submitter(store, publisher, sealer=Sealer([NEW_KEY, OLD_KEY]))
    publisher.close()


def test_the_job_hash_holds_the_masked_payload_and_the_encrypted_copy_only(
    store: JobStore, submitter: Submitter, redis_client: redis.Redis
) -> None:
    new = submitter.new_job(LOGIN, LOGIN.validate_payload(BODY))
    [submitted] = store.submit([Ticket((new,))])
    assert not isinstance(submitted, Exception)
    job = submitted.jobs[0]
    raw = redis_client.hgetall(store.keys.job(job.id))
    assert raw["sealed"].startswith("fernet:")
    assert not any(secret in value for value in raw.values() for secret in SECRETS)
    assert json.loads(raw["payload"])["apiToken"] == MASK

    for document in (job, store.get(job.id), *store.list_jobs().items):
        assert document.payload["credentials"]["password"] == MASK
        assert not any(secret in document.model_dump_json() for secret in SECRETS)

    start = store.start(job.id, 1, "w1")
    assert start.started
    opened = submitter.sealer.unseal(start.sealed, job_id=job.id)
    assert opened == {**BODY, "pin": None}
    assert "sealed" not in json.dumps(store.cancel(job.id).job.model_dump(mode="json"))


def test_a_type_without_secrets_stores_no_sealed_copy(
    store: JobStore, submitter: Submitter, redis_client: redis.Redis
) -> None:
    plain = JobType(name="t.plain", payload=Plain, execute=login)
    new = submitter.new_job(plain, plain.validate_payload({"name": "n"}))
    assert new.sealed is None
    [submitted] = store.submit([Ticket((new,))])
    assert not isinstance(submitted, Exception)
    job_id = submitted.jobs[0].id
    assert redis_client.hexists(store.keys.job(job_id), "sealed") is False
    assert store.start(job_id, 1, "w1").sealed is None


def test_a_plain_copy_keeps_any_unicode_through_the_store_script(
    store: JobStore, settings: Settings
) -> None:
    publisher = Publisher.from_settings(settings)
    try:
        unkeyed = Submitter(store, publisher)  # no ORCHESTRATOR_PAYLOAD_KEY
        body = {**BODY, "apiToken": 'é"\\\n\U0001f600\u2028'}
        new = unkeyed.new_job(LOGIN, body)  # its JSON: validated again to be sealed
        [submitted] = store.submit([Ticket((new,))])
    finally:
        publisher.close()
    assert not isinstance(submitted, Exception)
    start = store.start(submitted.jobs[0].id, 1, "w1")
    assert start.sealed is not None
    assert start.sealed.startswith("plain:")
    assert Sealer().unseal(start.sealed, job_id="j")["apiToken"] == body["apiToken"]


def test_a_repeat_is_recognised_though_each_copy_is_encrypted_afresh(
    store: JobStore, submitter: Submitter
) -> None:
    def request(body: dict[str, Any]) -> Any:
        new = submitter.new_job(LOGIN, LOGIN.validate_payload(body))
        [result] = store.submit([Ticket((new,), "key-1")])
        return result

    first = request(BODY)
    again = request(BODY)
    assert first.created
    assert not again.created
    assert again.jobs[0].id == first.jobs[0].id
    # The masked payloads are equal; the secrets differ, so it is another request.
    other = request({**BODY, "credentials": {"user": "ann", "password": "pw-other"}})
    assert isinstance(other, IdempotencyConflictError)
    assert other.job_id == first.jobs[0].id
