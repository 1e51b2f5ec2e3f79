"""compose.yml end to end under a real dockerd: the API's published port, two workers, Redis's AOF.

Each scenario makes its own jobs; the stack (conftest.py) is shared by the module.
"""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest
import requests
from compose_stack import READONLY_API_KEY, Stack, timed

# Cold (debootstrap, wheels, the image build) takes a few minutes on two cores.
pytestmark = pytest.mark.timeout(900)

TERMINAL = {"COMPLETED", "FAILED", "CANCELLED"}
API_KEY_SETTINGS = (
    "ORCHESTRATOR_API_KEYS",
    "ORCHESTRATOR_READONLY_API_KEYS",
    "ORCHESTRATOR_API_KEY",
)
BARE_EXIT_SECONDS = 60
"""Generous: the refusal comes before any connection, but two cores are busy with the stack."""


def terminal(job: dict[str, Any]) -> bool:
    return job["state"] in TERMINAL


def steps(job: dict[str, Any]) -> list[tuple[str, int, str | None]]:
    return [(entry["state"], entry["attempt"], entry.get("reason")) for entry in job["history"]]


def all_jobs(stack: Stack) -> list[dict[str, Any]]:
    jobs: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        params = {"limit": "100", **({"cursor": cursor} if cursor else {})}
        response = stack.api.get("/jobs", params=params)
        assert response.status_code == 200, response.text
        page = response.json()
        jobs += page["items"]
        cursor = page["next_cursor"]
        if not cursor:
            return jobs


def test_only_the_api_publishes_a_port_and_only_on_loopback(stack: Stack) -> None:
    project = stack.compose.project
    published: dict[str, dict[str, Any]] = {}
    for container in stack.engine.containers.list(
        filters={"label": f"com.docker.compose.project={project}"}
    ):
        ports = container.attrs["NetworkSettings"]["Ports"] or {}
        bindings = {port: hosts for port, hosts in ports.items() if hosts}
        if bindings:
            published[container.labels["com.docker.compose.service"]] = bindings
    assert published == {
        "api": {"8000/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(stack.api_port)}]}
    }
    assert len(stack.compose.container_ids("worker")) == 2


def test_the_api_refuses_a_request_without_a_key(stack: Stack) -> None:
    with httpx.Client(base_url=f"http://127.0.0.1:{stack.api_port}", timeout=10) as anonymous:
        response = anonymous.get("/jobs")
        health = anonymous.get("/healthz")
    assert response.status_code == 401, response.text
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert health.status_code == 200, health.text


def test_the_api_keys_reach_the_api_and_no_worker(stack: Stack) -> None:
    (api_id,) = stack.compose.container_ids("api")
    api = stack.process_environment(api_id)
    assert api["ORCHESTRATOR_API_KEYS"] == stack.api_key
    assert api["ORCHESTRATOR_READONLY_API_KEYS"] == READONLY_API_KEY
    workers = stack.compose.container_ids("worker")
    assert len(workers) == 2
    for worker_id in workers:
        worker = stack.process_environment(worker_id)
        assert not set(API_KEY_SETTINGS) & set(worker), worker_id
        for key in (stack.api_key, READONLY_API_KEY):
            assert key not in "\0".join(worker.values()), worker_id
        # What both need does reach a worker: secret payload fields are decrypted there.
        assert worker["ORCHESTRATOR_PAYLOAD_KEY"] == api["ORCHESTRATOR_PAYLOAD_KEY"]
        assert worker["ORCHESTRATOR_PREFIX"] == api["ORCHESTRATOR_PREFIX"] == "stack"


def test_the_image_run_without_keys_refuses_to_serve_anonymously(stack: Stack) -> None:
    image = stack.engine.images.get(stack.image)
    assert "ORCHESTRATOR_PLUGINS=demo,http" in image.attrs["Config"]["Env"]
    # The image's own command, nothing else: as `docker run <image>` would start it.
    container = stack.engine.containers.run(stack.image, detach=True, network_mode="none")
    try:
        try:
            status = container.wait(timeout=BARE_EXIT_SECONDS)
        except requests.exceptions.RequestException:
            logs = container.logs().decode(errors="replace")
            pytest.fail(
                f"the image with no keys was still serving after {BARE_EXIT_SECONDS} s:\n{logs}"
            )
        logs = container.logs().decode(errors="replace")
    finally:
        container.remove(force=True)
    assert status["StatusCode"] != 0, logs
    assert "ORCHESTRATOR_ALLOW_ANONYMOUS" in logs


def test_the_api_and_the_workers_run_as_the_image_s_own_user(stack: Stack) -> None:
    ids = stack.compose.container_ids("api") + stack.compose.container_ids("worker")
    for container_id in ids:
        code, output = stack.engine.containers.get(container_id).exec_run(["id"])
        assert code == 0, output
        # A named group too: Celery takes a nameless gid for a sign of running as root.
        assert output.decode().split() == [
            "uid=10001(orchestrator)",
            "gid=10001(orchestrator)",
            "groups=10001(orchestrator)",
        ]


def test_a_demo_job_submitted_through_the_published_port_completes(stack: Stack) -> None:
    with timed("scenario: demo.echo submitted and COMPLETED"):
        response = stack.api.get("/job-types")
        assert response.status_code == 200, response.text
        names = {job_type["name"] for job_type in response.json()}
        job = stack.submit("demo.echo", {"message": "through compose", "data": {"answer": 42}})
        done = stack.wait(job["id"], terminal, timeout=60)
        # The image's own command-line client, as the README shows it: its key is
        # ORCHESTRATOR_API_KEY from .env, which compose gives the API's container.
        command = ["orchestrator", "get", job["id"], "--json"]
        printed = stack.compose.run("exec", "-T", "api", *command).stdout
    # ORCHESTRATOR_PLUGINS=demo reached the API through compose.yml.
    assert {"demo.echo", "demo.sleep", "demo.fail"} <= names
    assert all(name.startswith("demo.") for name in names), names
    assert done["state"] == "COMPLETED", done
    assert done["result"] == {"message": "through compose", "data": {"answer": 42}}
    assert [state for state, _, _ in steps(done)] == ["CREATED", "RUNNING", "COMPLETED"]
    assert json.loads(printed) == done


def test_a_killed_worker_s_job_is_completed_by_the_other_worker(stack: Stack) -> None:
    hostnames = stack.hostnames("worker")
    assert len(hostnames) == 2, hostnames
    with timed("scenario: worker killed mid-job, taken over"):
        job = stack.submit("demo.sleep", {"seconds": 6, "steps": 6})
        stack.wait(job["id"], lambda job: job["state"] == "RUNNING", timeout=60)
        # The lease owner is <hostname>:<pid>:<token>; a container's hostname is its id's start.
        holder = stack.lease_owner(job["id"]).split(":")[0]
        (victim,) = [cid for cid, hostname in hostnames.items() if hostname == holder]
        (survivor,) = [hostname for hostname in hostnames.values() if hostname != holder]
        stack.engine.containers.get(victim).kill()

        takeover: list[str] = []

        def note_the_new_holder(job: dict[str, Any]) -> None:
            if job["state"] == "RUNNING" and job["attempts"] == 2 and not takeover:
                owner = stack.lease_owner(job["id"])  # empty if it has just finished
                if owner:
                    takeover.append(owner.split(":")[0])

        done = stack.wait(job["id"], terminal, timeout=120, each=note_the_new_holder)
    assert done["state"] == "COMPLETED", done
    assert done["attempts"] == 2
    assert steps(done) == [
        ("CREATED", 0, None),
        ("RUNNING", 1, None),
        ("RETRYING", 1, "worker lost"),
        ("RUNNING", 2, None),
        ("COMPLETED", 2, None),
    ]
    assert done["result"] == {"slept": 6}
    assert takeover == [survivor]
    assert victim not in stack.compose.container_ids("worker")


def test_jobs_and_their_histories_survive_redis_being_killed(stack: Stack) -> None:
    with timed("scenario: Redis killed and started, jobs kept"):
        submitted = [
            stack.submit("demo.echo", {"message": "kept"}),
            stack.submit("demo.fail", {"times": 1}),
            stack.submit("demo.fail", {"times": 0, "permanent": True}),
        ]
        before = {job["id"]: stack.wait(job["id"], terminal) for job in submitted}
        listed_before = all_jobs(stack)
        # appendfsync everysec: within a second every write is in the AOF.
        time.sleep(2)
        # SIGKILL: Redis writes nothing on the way down; all it has afterwards is the AOF.
        stack.compose.run("kill", "redis")
        # Generous: this engine's DNS forwards the vanished name to servers it cannot
        # reach, so the API learns that Redis is gone only after resolver timeouts.
        down = stack.api.get(f"/jobs/{submitted[0]['id']}", timeout=60)
        stack.compose.run("start", "redis")
        ready = stack.wait_ready(timeout=60)
        after = {job_id: stack.job(job_id) for job_id in before}
        listed_after = all_jobs(stack)
        again = stack.wait(stack.submit("demo.echo", {"message": "again"})["id"], terminal)
    assert [job["state"] for job in before.values()] == ["COMPLETED", "COMPLETED", "FAILED"]
    assert [state for state, _, _ in steps(list(before.values())[1])].count("RUNNING") == 2
    assert down.status_code == 503, down.text
    assert "Retry-After" in down.headers
    assert ready["redis"] == ready["broker"] == "ok"
    assert after == before
    assert listed_after == listed_before
    assert again["state"] == "COMPLETED", again
    assert stack.compose.redis("CONFIG", "GET", "appendonly").split() == ["appendonly", "yes"]
