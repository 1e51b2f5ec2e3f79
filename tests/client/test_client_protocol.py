"""Both clients, on a stand-in transport, send the same requests and make the same of the
same answers: each test runs once with :class:`Client` and once with :class:`AsyncClient`.

A stand-in transport is for this alone (what goes out, what comes back); the clients
against the real API and worker are in test_async_client.py.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import aclosing, closing
from typing import Any

import httpx
import pytest

from orchestrator_client import ApiError, AsyncClient, Client
from orchestrator_core import load_settings

URL = "http://api.test:8000"
Answer = httpx.Response | Exception
Document = dict[str, Any]


@pytest.fixture(params=["sync", "async"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


class Script:
    """Answers each request with the next of ``answers``, and keeps the requests."""

    def __init__(self, *answers: Answer) -> None:
        self.answers = iter(answers)
        self.seen: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request)
        answer = next(self.answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    def run(self, kind: str, method: str, *args: Any, **options: Any) -> Any:
        """What ``method`` of a client of ``kind`` returns, with this script for the API."""
        transport = httpx.MockTransport(self)
        if kind == "sync":
            with Client(URL, api_key="k1", transport=transport) as client:
                return getattr(client, method)(*args, **options)

        async def run() -> Any:
            async with AsyncClient(URL, api_key="k1", transport=transport) as client:
                return await getattr(client, method)(*args, **options)

        return asyncio.run(run())

    def events(self, kind: str, count: int, **options: Any) -> list[Document]:
        """The first ``count`` items of ``events(**options)`` of a client of ``kind``."""
        transport = httpx.MockTransport(self)
        if kind == "sync":
            with (
                Client(URL, api_key="k1", transport=transport) as client,
                closing(client.events(**options)) as events,
            ):
                return list(itertools.islice(events, count))

        async def take() -> list[Document]:
            async with (
                AsyncClient(URL, api_key="k1", transport=transport) as client,
                aclosing(client.events(**options)) as events,
            ):
                taken: list[Document] = []
                async for event in events:
                    taken.append(event)
                    if len(taken) == count:
                        break
                return taken

        return asyncio.run(take())


def job_doc(state: str, history: int, **fields: Any) -> Document:
    return {"id": "j", "state": state, "attempts": 1, "history": [{}] * history, **fields}


def transition(seq: int, state: str, event_id: str | None = None) -> str:
    data = {"id": event_id or str(seq), "job_id": "j", "state": state, "seq": seq}
    return f"id: {event_id or seq}\nevent: transition\ndata: {json.dumps(data)}\n\n"


def stream(kind: str, *messages: str, broken: bool = False) -> httpx.Response:
    """An event stream of ``messages``; ``broken``: it breaks off after them."""
    chunks = [message.encode() for message in messages]

    def sync_body() -> Iterator[bytes]:
        yield from chunks
        if broken:
            raise httpx.RemoteProtocolError("peer closed connection")

    async def async_body() -> AsyncIterator[bytes]:
        for chunk in sync_body():
            yield chunk

    body = sync_body() if kind == "sync" else async_body()
    return httpx.Response(200, content=body, headers={"content-type": "text/event-stream"})


def test_the_operations_send_the_same_requests_and_return_the_same(kind: str) -> None:
    script = Script(
        httpx.Response(201, json={"id": "x", "state": "CREATED"}),
        httpx.Response(200, json={"id": "a/b?c"}),
        httpx.Response(409, json={"id": "x"}),
        httpx.Response(200, json={"items": []}),
    )
    submitted = script.run(kind, "submit", "demo.echo", {"m": 1}, idempotency_key="key-1")
    assert submitted == {"id": "x", "state": "CREATED"}
    assert script.run(kind, "get", "a/b?c") == {"id": "a/b?c"}
    assert script.run(kind, "cancel", "x") == (409, {"id": "x"})
    assert script.run(kind, "jobs", state="FAILED", limit=5) == {"items": []}
    assert [(r.method, r.url.raw_path, r.content) for r in script.seen] == [
        ("POST", b"/jobs", b'{"type":"demo.echo","payload":{"m":1}}'),
        ("GET", b"/jobs/a%2Fb%3Fc", b""),
        ("DELETE", b"/jobs/x", b""),
        ("GET", b"/jobs?limit=5&state=FAILED", b""),
    ]
    assert {r.headers["Authorization"] for r in script.seen} == {"Bearer k1"}
    assert script.seen[0].headers["Idempotency-Key"] == "key-1"


@pytest.mark.parametrize(
    ("answer", "status", "message"),
    [
        (
            lambda: httpx.Response(422, json={"detail": [{"loc": ["body", "type"], "msg": "no"}]}),
            422,
            "422 type: no",
        ),
        (
            lambda: httpx.Response(502, text="<h1>Bad\nGateway</h1>"),
            502,
            "502 <h1>Bad Gateway</h1>",
        ),
        (lambda: httpx.Response(200, text="ok"), 200, f"200 the API at {URL} answered with some"),
        (lambda: httpx.ConnectError("refused"), None, f"the API at {URL} is unreachable: refused"),
        (lambda: httpx.ReadTimeout("slow"), None, f"the API at {URL} is unreachable: no answer"),
    ],
    ids=["validation", "proxy-page", "not-json", "refused", "timeout"],
)
def test_failures_are_the_same_errors(
    kind: str, answer: Callable[[], Answer], status: int | None, message: str
) -> None:
    with pytest.raises(ApiError) as caught:
        Script(answer()).run(kind, "get", "j")
    assert caught.value.status == status
    assert str(caught.value).startswith(message)


def test_wait_follows_the_stream_through_an_outage_and_resumes_where_it_was(kind: str) -> None:
    script = Script(
        httpx.Response(200, json=job_doc("RUNNING", 2)),
        httpx.Response(503, json={"detail": "Redis is unavailable; try again shortly"}),
        httpx.ConnectError("refused"),
        stream(kind, ": keepalive\n\n", transition(3, "RETRYING"), broken=True),
        httpx.Response(200, json=job_doc("RETRYING", 3)),
        stream(kind, transition(4, "RUNNING"), transition(5, "COMPLETED")),
        httpx.Response(200, json=job_doc("COMPLETED", 5, result={"ok": True})),
    )
    updates: list[str] = []
    final = script.run(
        kind, "wait", "j", on_update=lambda job: updates.append(job["state"]), poll_seconds=0.01
    )
    assert final["result"] == {"ok": True}
    assert updates == ["RUNNING", "RETRYING", "COMPLETED"]
    streams = [r for r in script.seen if r.url.path.endswith("/events")]
    assert [r.headers["Last-Event-ID"] for r in streams] == ["2", "2", "2", "3"]
    assert {(r.headers["Accept"], r.url.params["progress"]) for r in streams} == {
        ("text/event-stream", "true")
    }


def test_wait_polls_an_api_that_has_no_event_stream(kind: str) -> None:
    script = Script(
        httpx.Response(200, json=job_doc("CREATED", 1)),
        httpx.Response(404, json={"detail": "Not Found"}),
        httpx.Response(200, json=job_doc("RUNNING", 2)),
        httpx.Response(503, json={"detail": "a moment"}),
        httpx.Response(200, json=job_doc("FAILED", 3)),
    )
    updates: list[str] = []
    final = script.run(
        kind, "wait", "j", on_update=lambda job: updates.append(job["state"]), poll_seconds=0.01
    )
    assert final["state"] == "FAILED"
    assert updates == ["CREATED", "RUNNING", "FAILED"]
    assert [r.url.path for r in script.seen] == ["/jobs/j", "/jobs/j/events", *["/jobs/j"] * 3]


def test_wait_gives_up_at_once_on_a_job_that_is_not_there(kind: str) -> None:
    with pytest.raises(ApiError) as caught:
        Script(httpx.Response(404, json={"detail": "no job with id 'j'"})).run(
            kind, "wait", "j", on_update=lambda job: None
        )
    assert caught.value.status == 404


def test_events_resume_after_the_last_one_received_and_report_gaps(kind: str) -> None:
    gaps: list[str] = []
    script = Script(
        stream(
            kind, ": trimmed: events after 1-0 and before 4-0\n\n", transition(1, "CREATED", "4-0")
        ),
        httpx.Response(503, json={"detail": "stopping"}),
        stream(kind, transition(2, "RUNNING", "5-0"), broken=True),
        stream(kind, transition(3, "COMPLETED", "6-0")),
    )
    events = script.events(kind, 3, type="demo.echo", last_event_id="1-0", on_gap=gaps.append)
    assert [event["state"] for event in events] == ["CREATED", "RUNNING", "COMPLETED"]
    assert gaps == ["trimmed: events after 1-0 and before 4-0"]
    assert [r.headers.get("Last-Event-ID") for r in script.seen] == ["1-0", "4-0", "4-0", "5-0"]
    assert {r.url.raw_path for r in script.seen} == {b"/events?type=demo.echo"}


def test_events_give_up_at_once_on_a_bad_filter(kind: str) -> None:
    refusal = httpx.Response(422, json={"detail": "unknown state 'NOPE'"})
    with pytest.raises(ApiError) as caught:
        Script(refusal).events(kind, 1, state="NOPE")
    assert str(caught.value) == "422 unknown state 'NOPE'"


@pytest.mark.parametrize("client_class", [Client, AsyncClient])
def test_both_are_made_from_settings_alike(client_class: type[Client | AsyncClient]) -> None:
    client = client_class.from_settings(load_settings(api_url=f"{URL}/", api_key="k2"))
    assert isinstance(client, client_class)
    assert client.base_url == URL
    assert client._api.headers["Authorization"] == "Bearer k2"
    if isinstance(client, AsyncClient):
        asyncio.run(client.aclose())
    else:
        client.close()


def test_submit_batch_sends_every_job_under_one_key_and_returns_them_in_order(
    kind: str,
) -> None:
    items = [{"id": f"j{n}", "state": "CREATED"} for n in range(3)]
    script = Script(httpx.Response(201, json={"items": items}))
    jobs = [{"type": "demo.echo", "payload": {"message": f"m{n}"}} for n in range(3)]

    assert script.run(kind, "submit_batch", jobs, idempotency_key="b-1") == items

    [request] = script.seen
    assert (request.method, request.url.path) == ("POST", "/jobs/batch")
    assert json.loads(request.content) == {"jobs": jobs}
    assert request.headers["idempotency-key"] == "b-1"


def test_a_batch_answer_without_its_list_of_jobs_is_an_error(kind: str) -> None:
    script = Script(httpx.Response(201, json={"items": "nope"}))
    with pytest.raises(ApiError, match="without its list of jobs"):
        script.run(kind, "submit_batch", [{"type": "demo.echo", "payload": {}}])
