"""The /schedules resource over real HTTP and Redis: create, read, change, delete, and
every refusal."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from apiserver import ApiFactory
from cryptography.fernet import Fernet

from orchestrator_core import Settings
from orchestrator_core.sealing import Sealer
from orchestrator_core.store.keys import Keys
from orchestrator_core.store.schedules import ScheduleStore

NIGHTLY: dict[str, Any] = {
    "name": "nightly",
    "cron": "0 3 * * *",
    "timezone": "Europe/Berlin",
    "type": "demo.echo",
    "payload": {"message": "hi"},
}
FULL, READ = "k-full", "k-read"
SECRETS = Path(__file__).resolve().parent.parent / "fixtures" / "secrets"
MASK = "**********"


def instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def create(api: httpx.Client, **fields: Any) -> dict[str, Any]:
    response = api.post("/schedules", json={**NIGHTLY, **fields})
    assert response.status_code == 201, response.text
    document: dict[str, Any] = response.json()
    return document


@pytest.fixture
def schedules(api_settings: Settings, redis_client: redis.Redis) -> ScheduleStore:
    return ScheduleStore(redis_client, Keys(api_settings.prefix))


def test_a_created_schedule_is_shown_with_its_next_run(api: httpx.Client) -> None:
    response = api.post("/schedules", json=NIGHTLY)
    assert response.status_code == 201
    assert response.headers["location"] == "/schedules/nightly"
    document = response.json()
    assert document["payload"] == {"message": "hi", "data": None}, "stored as validated"
    assert (document["priority"], document["concurrency_key"], document["enabled"]) == (
        None,
        None,
        True,
    )
    assert (document["last_run_at"], document["last_job_id"]) == (None, None)
    created, next_run = instant(document["created_at"]), instant(document["next_run_at"])
    assert created < next_run <= created + timedelta(days=1)
    # 03:00 in Berlin is 01:00 or 02:00 UTC, whatever the season.
    assert (next_run.hour, next_run.minute) in {(1, 0), (2, 0)}
    assert "sealed" not in document
    assert "armed_at" not in document
    assert api.get("/schedules/nightly").json() == document
    assert api.get("/schedules").json() == {"items": [document]}


def test_defaults_and_options(api: httpx.Client) -> None:
    plain = {k: v for k, v in NIGHTLY.items() if k != "timezone"}
    response = api.post(
        "/schedules",
        json={
            **plain,
            "name": "0.every-5_min",
            "cron": "*/5  * * * *",
            "priority": 9,
            "concurrency_key": "tenant-1",
            "enabled": False,
        },
    )
    assert response.status_code == 201, response.text
    document = response.json()
    assert document["timezone"] == "UTC"
    assert document["cron"] == "*/5 * * * *"
    assert (document["priority"], document["concurrency_key"]) == (9, "tenant-1")
    assert document["next_run_at"] is None, "paused: no next run"


def test_the_list_is_by_name(api: httpx.Client) -> None:
    for name in ("b", "c", "a"):
        create(api, name=name)
    assert [s["name"] for s in api.get("/schedules").json()["items"]] == ["a", "b", "c"]


@pytest.mark.parametrize(
    ("change", "where", "says"),
    [
        ({"cron": "0 3 * *"}, ["body", "cron"], "a cron expression has 5 fields"),
        ({"cron": "0 3 * * * *"}, ["body", "cron"], "not 6"),
        ({"cron": "0 27 * * *"}, ["body", "cron"], "bad hour"),
        ({"cron": "every night"}, ["body", "cron"], "5 fields"),
        ({"cron": 3}, ["body", "cron"], "valid string"),
        ({"timezone": "Europe/Atlantis"}, ["body", "timezone"], "unknown time zone"),
        ({"timezone": "+02:00"}, ["body", "timezone"], "IANA name"),
        ({"name": "Nightly"}, ["body", "name"], "should match pattern"),
        ({"name": "night ly"}, ["body", "name"], "should match pattern"),
        ({"name": ""}, ["body", "name"], "at least 1 character"),
        ({"name": "n" * 201}, ["body", "name"], "at most 200"),
        ({"priority": 10}, ["body", "priority"], "less than or equal to 9"),
        ({"priority": -1}, ["body", "priority"], "greater than or equal to 0"),
        ({"concurrency_key": ""}, ["body", "concurrency_key"], "at least 1 character"),
        ({"payload": {"message": 5}}, ["body", "payload", "message"], "valid string"),
        ({"payload": {"message": "hi", "extra": 1}}, ["body", "payload", "extra"], "Extra"),
        ({"payload": {}}, ["body", "payload", "message"], "Field required"),
        ({"payload": []}, ["body", "payload"], "valid dictionary"),
        ({"every": "night"}, ["body", "every"], "Extra inputs"),
    ],
)
def test_a_bad_schedule_is_refused_by_its_field(
    api: httpx.Client, change: dict[str, Any], where: list[str], says: str
) -> None:
    response = api.post("/schedules", json={**NIGHTLY, **change})
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert where in [error["loc"] for error in detail], detail
    assert says in " ".join(error["msg"] for error in detail)
    assert api.get("/schedules").json() == {"items": []}


def test_a_missing_field_is_named(api: httpx.Client) -> None:
    for field in ("name", "cron", "type", "payload"):
        body = {k: v for k, v in NIGHTLY.items() if k != field}
        response = api.post("/schedules", json=body)
        assert response.status_code == 422
        assert response.json()["detail"][0]["loc"] == ["body", field]


def test_an_unknown_type_lists_the_known_ones(api: httpx.Client) -> None:
    response = api.post("/schedules", json={**NIGHTLY, "type": "nope.missing"})
    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == ["body", "type"]
    assert error["known_types"] == ["demo.echo", "demo.fail", "demo.sleep"]


def test_a_body_that_is_no_object_is_refused(api: httpx.Client) -> None:
    assert api.post("/schedules", json=["nightly"]).status_code == 422
    malformed = api.post(
        "/schedules", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert malformed.status_code == 422


def test_a_taken_name_is_409_and_keeps_the_first(api: httpx.Client) -> None:
    create(api)
    response = api.post("/schedules", json={**NIGHTLY, "payload": {"message": "other"}})
    assert response.status_code == 409
    assert response.json()["detail"] == "a schedule named 'nightly' already exists"
    assert api.get("/schedules/nightly").json()["payload"]["message"] == "hi"


def test_an_unknown_schedule_is_404(api: httpx.Client) -> None:
    for response in (
        api.get("/schedules/ghost"),
        api.patch("/schedules/ghost", json={"enabled": False}),
        api.delete("/schedules/ghost"),
    ):
        assert response.status_code == 404
        assert response.json()["detail"] == "no schedule named 'ghost'"


def test_pausing_and_resuming(api: httpx.Client) -> None:
    create(api)
    paused = api.patch("/schedules/nightly", json={"enabled": False})
    assert paused.status_code == 200
    assert (paused.json()["enabled"], paused.json()["next_run_at"]) == (False, None)
    resumed = api.patch("/schedules/nightly", json={"enabled": True}).json()
    assert resumed["enabled"] is True
    assert resumed["next_run_at"] is not None
    assert api.get("/schedules/nightly").json() == resumed


def test_resuming_skips_the_fires_of_the_pause(api: httpx.Client, schedules: ScheduleStore) -> None:
    create(api, cron="* * * * *")
    # Paused an hour ago, right after its last fire.
    hour_ago = schedules.now() - timedelta(hours=1)
    schedules.update(
        "nightly",
        lambda s: s.model_copy(
            update={"enabled": False, "armed_at": hour_ago, "last_run_at": hour_ago}
        ),
    )
    resumed = api.patch("/schedules/nightly", json={"enabled": True}).json()
    # Not the fire of a minute ago, which the pause skipped: the next one to come.
    assert instant(resumed["next_run_at"]) > schedules.now() - timedelta(seconds=1)
    assert schedules.get("nightly").due_fire(schedules.now()) is None


def test_patch_changes_the_fields_it_names(api: httpx.Client) -> None:
    before = create(api)
    changed = api.patch(
        "/schedules/nightly",
        json={
            "cron": "30 4 * * *",
            "timezone": "UTC",
            "type": "demo.sleep",
            "payload": {"seconds": 1},
            "priority": 3,
            "concurrency_key": "k",
        },
    )
    assert changed.status_code == 200, changed.text
    document = changed.json()
    assert document["created_at"] == before["created_at"]
    assert (document["cron"], document["timezone"], document["type"]) == (
        "30 4 * * *",
        "UTC",
        "demo.sleep",
    )
    assert document["payload"] == {"seconds": 1.0, "steps": 10}
    assert (document["priority"], document["concurrency_key"]) == (3, "k")
    next_run = instant(document["next_run_at"])
    assert (next_run.hour, next_run.minute) == (4, 30)
    # null removes an option; leaving a field out keeps it.
    cleared = api.patch("/schedules/nightly", json={"priority": None}).json()
    assert (cleared["priority"], cleared["concurrency_key"]) == (None, "k")
    assert cleared["payload"] == {"seconds": 1.0, "steps": 10}


@pytest.mark.parametrize(
    ("change", "where"),
    [
        ({"cron": "61 * * * *"}, ["body", "cron"]),
        ({"cron": None}, ["body", "cron"]),
        ({"timezone": "Nowhere/Else"}, ["body", "timezone"]),
        ({"enabled": None}, ["body", "enabled"]),
        ({"payload": {"message": 1}}, ["body", "payload", "message"]),
        # The payload it has does not suit the new type.
        ({"type": "demo.sleep"}, ["body", "payload", "seconds"]),
        ({"name": "renamed"}, ["body", "name"]),
        ({"priority": 10}, ["body", "priority"]),
    ],
)
def test_a_bad_patch_is_refused_and_changes_nothing(
    api: httpx.Client, change: dict[str, Any], where: list[str]
) -> None:
    before = create(api)
    response = api.patch("/schedules/nightly", json=change)
    assert response.status_code == 422, response.text
    assert where in [error["loc"] for error in response.json()["detail"]]
    assert api.get("/schedules/nightly").json() == before


def test_patch_to_an_unknown_type_lists_the_known_ones(api: httpx.Client) -> None:
    create(api)
    response = api.patch("/schedules/nightly", json={"type": "nope.missing"})
    assert response.status_code == 422
    assert response.json()["detail"][0]["known_types"] == ["demo.echo", "demo.fail", "demo.sleep"]


def test_delete_is_204_and_the_schedule_is_gone(api: httpx.Client) -> None:
    create(api)
    response = api.delete("/schedules/nightly")
    assert response.status_code == 204
    assert response.content == b""
    assert api.get("/schedules/nightly").status_code == 404
    assert api.get("/schedules").json() == {"items": []}
    # The name is free again.
    create(api)


def test_keys_guard_the_schedules(start_api: ApiFactory) -> None:
    keyed = start_api(api_keys=(FULL,), readonly_api_keys=(READ,))
    as_full = {"Authorization": f"Bearer {FULL}"}
    as_read = {"Authorization": f"Bearer {READ}"}
    assert keyed.get("/schedules").status_code == 401
    assert keyed.post("/schedules", json=NIGHTLY).status_code == 401
    assert keyed.post("/schedules", json=NIGHTLY, headers=as_read).status_code == 403
    assert keyed.post("/schedules", json=NIGHTLY, headers=as_full).status_code == 201
    assert keyed.get("/schedules/nightly", headers=as_read).status_code == 200
    assert keyed.get("/schedules", headers=as_read).json()["items"][0]["name"] == "nightly"
    refused = keyed.patch("/schedules/nightly", json={"enabled": False}, headers=as_read)
    assert refused.status_code == 403
    assert keyed.delete("/schedules/nightly", headers=as_read).status_code == 403
    assert keyed.get("/schedules/nightly", headers=as_read).json()["enabled"] is True


def test_the_api_reference_documents_the_schedules(api: httpx.Client) -> None:
    paths = api.get("/openapi.json").json()["paths"]
    assert set(paths["/schedules"]) == {"get", "post"}
    assert set(paths["/schedules/{name}"]) == {"get", "patch", "delete"}
    body = paths["/schedules"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert {"name", "cron", "timezone", "type", "payload"} <= set(body["properties"])


def test_secret_payload_fields_are_masked_and_sealed(
    start_api: ApiFactory,
    schedules: ScheduleStore,
    redis_client: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.syspath_prepend(str(SECRETS))
    key = Fernet.generate_key().decode()
    api = start_api(plugins="secrettest", payload_key=key)
    login = {
        "url": "https://login.invalid/",
        "token": "tok-1a2b-secret",
        "credentials": {"user": "ann", "password": "pw-3c4d-secret"},
    }
    response = api.post("/schedules", json={**NIGHTLY, "type": "st.login", "payload": login})
    assert response.status_code == 201, response.text
    shown = response.json()["payload"]
    assert (shown["token"], shown["credentials"]["password"]) == (MASK, MASK)
    assert "secret" not in api.get("/schedules").text
    record = redis_client.hget(schedules.keys.schedules, "nightly")
    assert "secret" not in record
    sealer = Sealer([key])
    assert sealer.unseal(schedules.get("nightly").sealed, job_id="-")["token"] == login["token"]

    # A change of timing keeps the sealed copy; a new payload is sealed anew.
    api.patch("/schedules/nightly", json={"cron": "0 4 * * *"})
    assert sealer.unseal(schedules.get("nightly").sealed, job_id="-")["token"] == login["token"]
    api.patch("/schedules/nightly", json={"payload": {**login, "token": "tok-new-secret"}})
    assert sealer.unseal(schedules.get("nightly").sealed, job_id="-")["token"] == "tok-new-secret"
    assert "secret" not in redis_client.hget(schedules.keys.schedules, "nightly")
