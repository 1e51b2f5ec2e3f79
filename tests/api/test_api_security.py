"""The API's security defaults (DESIGN section 11), against a real server over the real
Redis and RabbitMQ: no open API by accident, read-only keys, the reference pages served
from here behind the key, bounded input, capped event streams, a cached readiness probe."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import fastapi_offline
import httpx
import pytest
import redis
from apiserver import ApiFactory, served
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from api.main import create_app
from api.nesting import nested_deeper_than
from orchestrator_core import Settings, load_settings

FULL, READ = "k-full", "k-read"
AS_FULL = {"Authorization": f"Bearer {FULL}"}
AS_READ = {"Authorization": f"Bearer {READ}"}
ECHO = {"type": "demo.echo", "payload": {"message": "hi"}}
JSON = {"content-type": "application/json"}
OPEN_ROUTES = {"/healthz", "/readyz"}
"""The documented routes that need no key; every other one does once keys are set."""


@pytest.fixture
def keyed(start_api: ApiFactory) -> httpx.Client:
    return start_api(api_keys=(FULL,), readonly_api_keys=(READ,))


def operations(client: httpx.Client) -> Iterator[tuple[str, str, str, dict[str, Any]]]:
    """Every (method, path template, path with its parameters filled in, operation) of
    the document."""
    document = client.get("/openapi.json", headers=AS_FULL).json()
    for template, item in document["paths"].items():
        path = re.sub(r"\{[^}]+\}", str(uuid.uuid4()), template)
        for method, operation in item.items():
            yield method.upper(), template, path, operation


# --- An open API only on loopback, checked before any socket exists -------------------

# Every socket the command makes is reported, and binding one fails: a refusal must come
# before either, and a start that gets past the check shows where it would have listened.
NO_SOCKETS = """
import sys
def audit(event, args):
    if event == "socket.__new__":
        print("AUDIT socket", file=sys.stderr, flush=True)
    elif event == "socket.bind":
        print(f"AUDIT bind {args[1]!r}", file=sys.stderr, flush=True)
        raise PermissionError("this test binds no socket")
sys.addaudithook(audit)
from cli.main import main
sys.exit(main(sys.argv[1:]))
"""


def api_command(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATOR_")}
    prefix = f"test-{uuid.uuid4().hex[:12]}"  # nothing is written under it: no request is served
    return subprocess.run(
        [sys.executable, "-c", NO_SOCKETS, "api", "--port", "18999", *args],
        env={**clean, "ORCHESTRATOR_PLUGINS": "demo", "ORCHESTRATOR_PREFIX": prefix, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("host", ["0.0.0.0", "10.1.2.3", "::", "api.example.internal"])
@pytest.mark.parametrize("workers", ["1", "2"])
def test_an_open_api_on_another_address_is_refused_before_any_socket(
    host: str, workers: str
) -> None:
    result = api_command("--host", host, "--workers", workers)
    assert result.returncode == 2, result.stderr
    [line] = result.stderr.splitlines()  # no socket made, so no host name looked up either
    assert line.startswith(f"orchestrator: error: refusing to serve on {host} with no API keys")
    assert "ORCHESTRATOR_API_KEYS" in line
    assert "ORCHESTRATOR_ALLOW_ANONYMOUS" in line


@pytest.mark.parametrize(
    ("host", "env", "warned"),
    [
        ("127.0.0.1", {}, "serving an open API on 127.0.0.1"),
        ("127.8.9.10", {}, "serving an open API on 127.8.9.10"),
        ("localhost", {}, "serving an open API on localhost"),
        ("::1", {}, "serving an open API on ::1"),
        ("0.0.0.0", {"ORCHESTRATOR_ALLOW_ANONYMOUS": "true"}, "ALLOW_ANONYMOUS=true"),
        ("0.0.0.0", {"ORCHESTRATOR_API_KEYS": "k"}, None),
        ("10.1.2.3", {"ORCHESTRATOR_READONLY_API_KEYS": "r"}, None),
    ],
)
def test_an_allowed_start_warns_when_open_and_gets_to_binding(
    host: str, env: dict[str, str], warned: str | None
) -> None:
    result = api_command("--host", host, "--workers", "2", **env)
    assert result.returncode != 0  # the bind was refused by the audit hook
    assert "AUDIT bind" in result.stderr, result.stderr
    warnings = [line for line in result.stderr.splitlines() if " WARNING " in line]
    if warned is None:
        assert warnings == []
    else:
        [warning] = warnings
        assert warned in warning
        assert "no API keys are set" in warning


# --- Read-only keys ----------------------------------------------------------------------


def test_auth_tells_the_role_of_the_key(keyed: httpx.Client, api: httpx.Client) -> None:
    assert keyed.get("/auth", headers=AS_FULL).json() == {"role": "admin"}
    assert keyed.get("/auth", headers=AS_READ).json() == {"role": "read"}
    for headers in ({}, {"Authorization": "Bearer k-wrong"}, {"Authorization": f"Basic {FULL}"}):
        refused = keyed.get("/auth", headers=headers)
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"] == "Bearer"
    assert api.get("/auth").json() == {"role": "admin"}, "an open API: everyone may do all"


def test_a_read_only_key_reads_and_follows_but_never_writes(keyed: httpx.Client) -> None:
    job = keyed.post("/jobs", json=ECHO, headers=AS_FULL).json()
    for path in (
        "/jobs",
        f"/jobs/{job['id']}",
        "/job-types",
        "/job-types/demo.echo",
        "/states",
        "/plugins",
        "/metrics",
        "/openapi.json",
    ):
        assert keyed.get(path, headers=AS_READ).status_code == 200, path
    for path in ("/events", f"/jobs/{job['id']}/events"):
        with keyed.stream("GET", path, headers=AS_READ) as stream:
            assert stream.status_code == 200, path
            assert stream.headers["content-type"].startswith("text/event-stream")

    refused = keyed.delete(f"/jobs/{job['id']}", headers=AS_READ)
    assert refused.status_code == 403
    assert refused.json()["detail"] == (
        f"this API key may only read: DELETE /jobs/{job['id']} needs a key from "
        "ORCHESTRATOR_API_KEYS"
    )
    for path, body in (("/jobs", ECHO), ("/jobs/batch", {"jobs": [ECHO]})):
        assert keyed.post(path, json=body, headers=AS_READ).status_code == 403, path
    assert keyed.get(f"/jobs/{job['id']}", headers=AS_READ).json()["state"] == "CREATED"
    assert len(keyed.get("/jobs", headers=AS_READ).json()["items"]) == 1, "nothing was made"

    # Every route that writes, today's and any added later, refuses the key.
    writes = [(m, t, p) for m, t, p, _ in operations(keyed) if m not in {"GET", "HEAD"}]
    assert {("POST", "/jobs"), ("POST", "/jobs/batch"), ("DELETE", "/jobs/{job_id}")} <= {
        (method, template) for method, template, _ in writes
    }
    for method, _, path in writes:
        response = keyed.request(method, path, headers={**AS_READ, **JSON}, content=b"{}")
        assert response.status_code == 403, (method, path, response.text)

    cancelled = keyed.delete(f"/jobs/{job['id']}", headers=AS_FULL)
    assert cancelled.status_code == 202
    assert cancelled.json()["state"] == "CANCELLED"


def test_every_route_that_needs_a_key_still_needs_one(keyed: httpx.Client) -> None:
    checked = 0
    for method, _, path, operation in operations(keyed):
        open_route = not operation.get("security")
        assert open_route == (path in OPEN_ROUTES), (method, path)
        if open_route:
            continue
        for headers in ({}, {"Authorization": "Bearer k-wrong"}):
            response = keyed.request(method, path, headers={**headers, **JSON}, content=b"{}")
            assert response.status_code == 401, (method, path, headers)
            checked += 1
    assert checked >= 2 * 12
    assert keyed.get("/openapi.json").status_code == 401
    for path in ("/healthz", "/readyz", "/ui/", "/docs", "/redoc"):
        assert keyed.get(path).status_code == 200, path


# --- The reference pages: behind the key, served from here ----------------------------


def test_the_document_needs_a_key_and_declares_it(keyed: httpx.Client) -> None:
    refused = keyed.get("/openapi.json")
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"] == "Bearer"
    document = keyed.get("/openapi.json", headers=AS_READ).json()
    assert document["components"]["securitySchemes"]["apiKey"]["scheme"] == "bearer"
    assert document["paths"]["/auth"]["get"]["security"] == [{"apiKey": []}]
    role = document["components"]["schemas"]["AuthPublic"]["properties"]["role"]
    assert document["components"]["schemas"][role["$ref"].rsplit("/", 1)[1]]["enum"] == [
        "admin",
        "read",
    ]


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_the_pages_load_nothing_but_our_own_files(keyed: httpx.Client, page: str) -> None:
    html = keyed.get(page)  # no key: a browser navigating here sends none
    assert html.status_code == 200
    assert html.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in html.headers["content-security-policy"]
    assert "://" not in html.text.replace('href="openapi.json"', ""), "nothing from elsewhere"
    assert "openapi" not in html.text.split("<noscript>")[0], "the document is not inlined"
    loaded = re.findall(r'(?:src|href)="([^"]+)"', html.text)
    assets = [name for name in loaded if name.startswith("docs/assets/")]
    assert len(assets) >= 3, loaded
    shipped = Path(fastapi_offline.__file__).parent / "static"
    for name in assets:
        response = keyed.get(f"/{name}")
        assert response.status_code == 200, name
        assert response.headers["x-content-type-options"] == "nosniff"
        assert b"cdn." not in response.content, name
        bundled = shipped / name.rsplit("/", 1)[1]
        if bundled.exists():  # the package's file; ReDoc's with its logo made local
            logo = b"https://cdn.redoc.ly/redoc/logo-mini.svg"
            assert response.content == bundled.read_bytes().replace(logo, b"data:,"), name
        again = keyed.get(f"/{name}", headers={"If-None-Match": response.headers["etag"]})
        assert again.status_code == 304, name
    viewer = "redoc.standalone.js" if page == "/redoc" else "swagger-ui-bundle.js"
    assert f"docs/assets/{viewer}" in assets


@pytest.mark.parametrize(
    "path", ["/docs/assets/nope.js", "/docs/assets/..%2Fswagger.html", "/docs/assets/core.py"]
)
def test_only_the_reference_files_are_served(keyed: httpx.Client, path: str) -> None:
    assert keyed.get(path).status_code == 404


# --- Bounded input -----------------------------------------------------------------------


def nested(depth: int) -> Any:
    """A list ``depth`` levels deep."""
    value: Any = []
    for _ in range(depth - 1):
        value = [value]
    return value


def reference_depth(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max((reference_depth(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((reference_depth(v) for v in value.values()), default=0)
    return 0


TRICKY_TEXT = st.text(alphabet='[]{}"\\\n\t/a\u00e9\U0001f600', max_size=12)
DOCUMENTS = st.recursive(
    st.none() | st.integers() | TRICKY_TEXT,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(TRICKY_TEXT, children, max_size=3)
    ),
    max_leaves=40,
)


@hypothesis_settings(max_examples=300, deadline=None)
@given(document=DOCUMENTS, limit=st.integers(1, 8), ascii_only=st.booleans())
def test_the_depth_scan_agrees_with_the_parsed_depth(
    document: Any, limit: int, ascii_only: bool
) -> None:
    raw = json.dumps(document, ensure_ascii=ascii_only).encode()
    assert nested_deeper_than(raw, limit) == (reference_depth(document) > limit)


def test_the_depth_scan_ignores_brackets_in_strings_even_unterminated_ones() -> None:
    assert not nested_deeper_than(json.dumps({"a": '\\"[[[[[' * 50}).encode(), 2)
    assert nested_deeper_than(b"[" * 3 + b'"\\"]]]]"' + b"[", 3)
    assert not nested_deeper_than(b'"' + b'\\"[' * 100_000, 1), "one unclosed string"
    assert nested_deeper_than(b"[{" * 40 + b"}]" * 40, 64)
    assert not nested_deeper_than(b"[]" * 500_000, 1)


def test_json_nested_too_deep_is_400_before_parsing(start_api: ApiFactory) -> None:
    client = start_api(max_body_bytes=1024 * 1024)
    attack = b"[" * 100_000
    for path in ("/jobs", "/jobs/batch"):
        response = client.post(path, content=attack, headers=JSON)
        assert response.status_code == 400, response.text
        assert response.json() == {
            "detail": "the JSON body nests deeper than 64 levels of arrays and objects"
        }
    chunked = client.post("/jobs", content=iter([b"[" * 40, b"[" * 40, b"{}" * 10]), headers=JSON)
    assert chunked.status_code == 400
    assert "64 levels" in chunked.json()["detail"]

    def echo(data_depth: int) -> dict[str, Any]:  # the body, payload, data: three levels
        return {"type": "demo.echo", "payload": {"message": "x", "data": {"a": nested(data_depth)}}}

    assert client.post("/jobs", json=echo(61)).status_code == 201, "64 levels are allowed"
    assert client.post("/jobs", json=echo(62)).status_code == 400
    message = '\\"' + "[" * 300 + "{" * 300 + '"'
    kept = client.post("/jobs", json={"type": "demo.echo", "payload": {"message": message}})
    assert kept.status_code == 201, "brackets inside a string are text"
    assert kept.json()["payload"]["message"] == message


def test_the_depth_limit_is_a_setting(start_api: ApiFactory) -> None:
    client = start_api(max_json_depth=3)
    assert client.post("/jobs", json=ECHO).status_code == 201
    deep = {"type": "demo.echo", "payload": {"message": "x", "data": {"a": []}}}
    response = client.post("/jobs", json=deep)
    assert response.status_code == 400
    assert "deeper than 3 levels" in response.json()["detail"]


def test_numbers_too_long_to_convert_are_400(start_api: ApiFactory) -> None:
    client = start_api(max_body_bytes=64 * 1024)
    digits = "9" * 5000
    bodies = [
        f'{{"type": "demo.echo", "payload": {{"message": "x"}}, "max_attempts": {digits}}}',
        f'{{"type": "demo.echo", "payload": {{"message": "x", "data": {{"n": -{digits}}}}}}}',
        f'{{"jobs": [{{"type": "demo.echo", "payload": {{"message": "x"}}}}, {digits}]}}',
    ]
    for body in bodies:
        path = "/jobs/batch" if body.startswith('{"jobs"') else "/jobs"
        response = client.post(path, content=body.encode(), headers=JSON)
        assert response.status_code == 400, response.text
        assert response.json() == {"detail": "a number in the body has more than 4300 digits"}
    long_but_legal = (
        f'{{"type": "demo.echo", "payload": {{"message": "x"}}, "max_attempts": {"9" * 4000}}}'
    )
    assert client.post("/jobs", content=long_but_legal.encode(), headers=JSON).status_code == 422
    assert client.get("/jobs", params={"limit": digits}).status_code == 422
    assert client.get("/jobs", params={"limit": "1" + "0" * 400}).status_code == 422
    assert client.get("/jobs").json()["items"] == []


# --- Event streams, capped per key (or address) and per process ------------------------


@contextmanager
def stream(client: httpx.Client, path: str, **headers: str) -> Iterator[httpx.Response]:
    with client.stream("GET", path, headers=headers) as response:
        if response.status_code != 200:
            response.read()
        yield response


def eventually(condition: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "never happened"
        time.sleep(0.05)


def test_streams_are_capped_per_key_and_per_process(start_api: ApiFactory) -> None:
    client = start_api(
        api_keys=(FULL, "k-other"),
        readonly_api_keys=(READ,),
        max_streams_per_key=2,
        max_streams=3,
    )
    with ExitStack() as held:
        first = held.enter_context(stream(client, "/events", **AS_FULL))
        held.enter_context(stream(client, "/events?type=demo.echo", **AS_FULL))
        assert first.status_code == 200
        with stream(client, "/events", **AS_FULL) as third:
            assert third.status_code == 429
            assert third.headers["retry-after"] == "5"
            assert third.json()["detail"] == (
                "API key #0 already holds 2 open event streams, its limit; "
                "close one, or try again later"
            )
        held.enter_context(stream(client, "/events", **AS_READ))  # a key of its own: 3 in all
        with stream(client, "/events", Authorization="Bearer k-other") as past_process_cap:
            assert past_process_cap.status_code == 429
            assert "this API process serves 3 event streams" in past_process_cap.json()["detail"]
        assert client.get("/jobs", headers=AS_FULL).status_code == 200, "only streams are capped"

        first.close()  # the client goes away: its slot comes back

        def reopened() -> bool:
            with stream(client, "/events", **AS_FULL) as again:
                return again.status_code == 200

        eventually(reopened)


def test_a_stream_that_ends_frees_its_slot(start_api: ApiFactory) -> None:
    client = start_api(api_keys=(FULL,), max_streams_per_key=1)
    job = client.post("/jobs", json=ECHO, headers=AS_FULL).json()
    client.delete(f"/jobs/{job['id']}", headers=AS_FULL)
    for _ in range(5):  # the history of a finished job, then the end, each time
        with stream(client, f"/jobs/{job['id']}/events", **AS_FULL) as ended:
            assert ended.status_code == 200
            assert "CANCELLED" in ended.read().decode()


def test_without_keys_streams_are_capped_per_client_address(start_api: ApiFactory) -> None:
    client = start_api(max_streams_per_key=1)
    other_address = httpx.Client(
        base_url=client.base_url, transport=httpx.HTTPTransport(local_address="127.0.0.2")
    )
    with other_address, stream(client, "/events") as mine:
        assert mine.status_code == 200
        with stream(client, "/events") as again:
            assert again.status_code == 429
            assert again.json()["detail"].startswith("client 127.0.0.1 already holds 1")
        with stream(other_address, "/events") as theirs:
            assert theirs.status_code == 200


# --- /readyz from a cached probe --------------------------------------------------------


class CountedProbes:
    """Wraps an app's probes: counts them, notes their thread, and slows them so that
    concurrent callers overlap one."""

    def __init__(self, app: Any, *, delay: float = 0.3) -> None:
        readiness = app.state.api.readiness
        self.calls = {"redis": 0, "broker": 0}
        self.threads: set[str] = set()
        self._lock = threading.Lock()

        def counted(name: str, probe: Callable[[], Any]) -> Callable[[], Any]:
            def run() -> Any:
                with self._lock:
                    self.calls[name] += 1
                    self.threads.add(threading.current_thread().name)
                time.sleep(delay)
                return probe()

            return run

        readiness.redis_probe = counted("redis", readiness.redis_probe)
        readiness.broker_probe = counted("broker", readiness.broker_probe)


def concurrent_readyz(url: str, count: int) -> list[httpx.Response]:
    async def all_at_once() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=count)
        async with httpx.AsyncClient(base_url=url, timeout=15, limits=limits) as client:
            return await asyncio.gather(*(client.get("/readyz") for _ in range(count)))

    return asyncio.run(all_at_once())


@pytest.mark.parametrize("interval", [30.0, 0.0])
def test_concurrent_readiness_checks_share_one_probe(
    api_settings: Settings, interval: float
) -> None:
    app = create_app(
        load_settings(**{**api_settings.model_dump(), "readiness_cache_seconds": interval})
    )
    probes = CountedProbes(app)
    with served(app) as server:
        answers = concurrent_readyz(server.url, 50)
        assert {a.status_code for a in answers} == {200}
        assert {a.json()["broker"] for a in answers} == {"ok"}
        assert probes.calls == {"redis": 1, "broker": 1}
        assert all(name.startswith("readiness") for name in probes.threads), probes.threads
        httpx.get(f"{server.url}/readyz", timeout=15)
        expected = 1 if interval else 2  # cached, or probed afresh once the last one is done
        assert probes.calls == {"redis": expected, "broker": expected}


def test_readiness_warns_of_an_evicting_redis_and_stays_200(
    start_api: ApiFactory, redis_client: redis.Redis
) -> None:
    client = start_api(readiness_cache_seconds=0)
    assert "warnings" not in client.get("/readyz").json()
    redis_client.config_set("maxmemory-policy", "allkeys-lru")
    try:
        ready = client.get("/readyz")
    finally:
        redis_client.config_set("maxmemory-policy", "noeviction")
    assert ready.status_code == 200
    [warning] = ready.json()["warnings"]
    assert "'allkeys-lru'" in warning
    assert "noeviction" in warning
    assert "warnings" not in client.get("/readyz").json()
