"""compose.ha.yml over compose.yml, validated by the real Compose v2 binary, and the
configuration files of deploy/ha read as the servers would read them.

No Docker engine is needed: `docker compose config` merges and checks the two files on
its own, as tests/test_compose.py does for compose.yml alone.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import test_compose
from test_compose import (
    API_KEY_SETTINGS,
    ENV_EXAMPLE,
    EXPECTED_SETTINGS,
    ROOT,
    orchestrator_settings,
)

from orchestrator_core.settings import load_settings

compose_binary = test_compose.compose_binary
"""The compose v2 executable, found as tests/test_compose.py finds it."""

HA_FILE = ROOT / "compose.ha.yml"
DEPLOY = ROOT / "deploy" / "ha"

REDIS_NODES = ("redis-1", "redis-2", "redis-3")
SENTINELS = ("sentinel-1", "sentinel-2", "sentinel-3")
RABBITMQ_NODES = ("rabbitmq-1", "rabbitmq-2", "rabbitmq-3")
ORCHESTRATOR_SERVICES = ("api", "worker")
SERVICES = {*REDIS_NODES, *SENTINELS, *RABBITMQ_NODES, *ORCHESTRATOR_SERVICES, "proxy"}

COOKIE_LINE = "RABBITMQ_ERLANG_COOKIE=test-cookie-value"
HAPROXY_CONFIG = "/usr/local/etc/haproxy/haproxy.cfg"


def ha_env_file(directory: Path, *, cookie: bool = True) -> Path:
    """.env.example, with an Erlang cookie (or without one), as an operator's .env."""
    lines = [
        line
        for line in ENV_EXAMPLE.read_text().splitlines()
        if not line.startswith("RABBITMQ_ERLANG_COOKIE=")
    ]
    if cookie:
        lines.append(COOKIE_LINE)
    path = directory / ("ha.env" if cookie else "ha-no-cookie.env")
    path.write_text("".join(line + "\n" for line in lines))
    return path


def compose_ha(
    binary: Path,
    *args: str,
    env_file: Path,
    home: Path,
    environment: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    # A clean environment: variables of the caller's shell would override the env file.
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home), **(environment or {})}
    files = ["-f", str(ROOT / "compose.yml"), "-f", str(HA_FILE)]
    return subprocess.run(
        [str(binary), *files, "--env-file", str(env_file), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def rendered(binary: Path, home: Path, environment: dict[str, str] | None = None) -> dict[str, Any]:
    env_file = ha_env_file(home)
    done = compose_ha(
        binary, "config", "--format", "json", env_file=env_file, home=home, environment=environment
    )
    assert done.returncode == 0, done.stderr
    config: dict[str, Any] = json.loads(done.stdout)
    return config


@pytest.fixture(scope="module")
def config(compose_binary: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return rendered(compose_binary, tmp_path_factory.mktemp("home"))


@pytest.fixture(scope="module")
def services(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = config["services"]
    return found


# Configuration files, read the way their servers read them.


def config_lines(text: str) -> list[list[str]]:
    """The directives of a Redis or HAProxy file: words of each line, comments left out."""
    lines = []
    for line in text.splitlines():
        words = shlex.split(line, comments=True)
        if words:
            lines.append(words)
    return lines


def written_config(service: dict[str, Any], template_target: str) -> list[list[str]]:
    """What a Redis or Sentinel container runs from: the template it mounts at
    ``template_target``, copied on the first start with the lines its command appends."""
    (script,) = service["command"][2:]
    assert service["command"][:2] == ["sh", "-c"]
    assert f"cp {template_target} /data/" in script, script
    template = mounted_source(service, template_target)
    appended = re.findall(r"echo '([^']*)' >> /data/", script)
    return config_lines(template.read_text()) + [shlex.split(line) for line in appended]


def mounted_source(service: dict[str, Any], target: str) -> Path:
    """The file of this checkout that the service mounts, read-only, at ``target``."""
    (mount,) = [volume for volume in service["volumes"] if volume["target"] == target]
    assert mount["type"] == "bind", mount
    assert mount.get("read_only") is True, mount
    source = Path(mount["source"])
    assert source.is_file(), f"{source} is mounted but does not exist"
    assert source.is_relative_to(DEPLOY), source
    return source


def directive(lines: list[list[str]], *words: str) -> list[list[str]]:
    """The lines that start with ``words``, each with those words taken off."""
    return [line[len(words) :] for line in lines if line[: len(words)] == list(words)]


def haproxy_sections(text: str) -> dict[tuple[str, str], list[list[str]]]:
    """Each section of an HAProxy file (``("backend", "api")``, ``("global", "")``) with
    the directives in it."""
    sections: dict[tuple[str, str], list[list[str]]] = {}
    current: list[list[str]] | None = None
    for line in text.splitlines():
        words = shlex.split(line, comments=True)
        if not words:
            continue
        if not line[0].isspace():
            key = (words[0], words[1] if len(words) > 1 else "")
            assert key not in sections, f"section {key} twice"
            current = sections[key] = []
            continue
        assert current is not None, f"a directive outside any section: {line!r}"
        current.append(words)
    return sections


@pytest.fixture(scope="module")
def haproxy(services: dict[str, dict[str, Any]]) -> dict[tuple[str, str], list[list[str]]]:
    return haproxy_sections(mounted_source(services["proxy"], HAPROXY_CONFIG).read_text())


# The stack as a whole.


def test_the_two_files_render_together(compose_binary: Path, tmp_path: Path) -> None:
    done = compose_ha(
        compose_binary, "config", "--quiet", env_file=ha_env_file(tmp_path), home=tmp_path
    )
    assert done.returncode == 0, done.stderr


def test_the_single_redis_and_rabbitmq_of_compose_yml_are_gone(config: dict[str, Any]) -> None:
    assert set(config["services"]) == SERVICES
    assert not {"redis-data", "rabbitmq-data"} & set(config.get("volumes", {}))
    for name, service in config["services"].items():
        assert not {"redis", "rabbitmq"} & set(service.get("depends_on", {})), name


def test_every_service_has_a_healthcheck_for_up_wait(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        healthcheck = service.get("healthcheck", {})
        assert not healthcheck.get("disable"), name
        assert healthcheck.get("test"), name


def test_every_node_keeps_its_data_on_a_volume_of_its_own(
    config: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    targets = dict.fromkeys((*REDIS_NODES, *SENTINELS), "/data")
    targets |= dict.fromkeys(RABBITMQ_NODES, "/var/lib/rabbitmq")
    sources = []
    for name, target in targets.items():
        (volume,) = [v for v in services[name]["volumes"] if v["type"] == "volume"]
        assert volume["target"] == target, name
        sources.append(volume["source"])
    assert len(set(sources)) == len(sources)
    assert set(sources) <= set(config["volumes"])


def test_no_service_uses_the_guest_account(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        assert "guest" not in json.dumps(service.get("environment", {})).lower(), name


# Only the proxy is reachable from outside, and it reaches only the API.


def test_only_the_proxy_publishes_a_port_and_on_loopback(
    services: dict[str, dict[str, Any]],
) -> None:
    publishing = {name for name, service in services.items() if service.get("ports")}
    assert publishing == {"proxy"}
    (port,) = services["proxy"]["ports"]
    assert (port["host_ip"], port["published"], port["target"]) == ("127.0.0.1", "8000", 8000)


def test_the_proxy_port_comes_from_api_bind_and_api_port(
    compose_binary: Path,
    tmp_path: Path,
) -> None:
    wider = rendered(compose_binary, tmp_path, {"API_BIND": "0.0.0.0", "API_PORT": "18000"})
    (port,) = wider["services"]["proxy"]["ports"]
    assert (port["host_ip"], port["published"], port["target"]) == ("0.0.0.0", "18000", 8000)
    assert not wider["services"]["api"].get("ports")


def test_the_proxy_reaches_the_api_and_nothing_behind_it(config: dict[str, Any]) -> None:
    services, networks = config["services"], config["networks"]
    proxy = set(services["proxy"]["networks"])
    assert proxy & set(services["api"]["networks"])
    for network in proxy:
        assert not networks[network].get("internal"), network
    for name in (*REDIS_NODES, *SENTINELS, *RABBITMQ_NODES):
        for network in services[name]["networks"]:
            assert networks[network].get("internal") is True, (name, network)
            assert network not in proxy, (name, network)


def test_the_proxy_listens_where_compose_publishes(
    services: dict[str, dict[str, Any]], haproxy: dict[tuple[str, str], list[list[str]]]
) -> None:
    frontends = [key for key in haproxy if key[0] == "frontend"]
    assert len(frontends) == 1, frontends
    (bind,) = directive(haproxy[frontends[0]], "bind")
    (port,) = services["proxy"]["ports"]
    assert bind[0].rpartition(":")[2] == str(port["target"])
    (backend,) = directive(haproxy[frontends[0]], "default_backend")
    assert ("backend", backend[0]) in haproxy


def test_the_proxy_is_healthy_through_readyz_on_its_own_port(
    services: dict[str, dict[str, Any]],
) -> None:
    check = " ".join(services["proxy"]["healthcheck"]["test"])
    (port,) = services["proxy"]["ports"]
    assert f"/dev/tcp/127.0.0.1/{port['target']}" in check
    assert "GET /readyz" in check
    assert "200" in check


# The API replicas behind the proxy.


def api_port(api: dict[str, Any]) -> int:
    command = api["command"]
    return int(command[command.index("--port") + 1])


def test_the_api_runs_two_replicas_reached_only_through_the_proxy(
    services: dict[str, dict[str, Any]],
) -> None:
    api = services["api"]
    assert api["deploy"]["replicas"] == 2
    assert "container_name" not in api
    assert not api.get("ports")
    assert services["proxy"]["depends_on"]["api"]["condition"] == "service_started"


def test_the_proxy_config_has_a_slot_for_every_api_replica(
    services: dict[str, dict[str, Any]], haproxy: dict[tuple[str, str], list[list[str]]]
) -> None:
    backend = haproxy[("backend", "api")]
    templates = directive(backend, "server-template")
    assert len(templates) == 1, "one server-template names the api service's replicas"
    _prefix, count, address = templates[0][:3]
    host, _, port = address.rpartition(":")
    assert host == "api"
    assert int(port) == api_port(services["api"])
    assert int(count) >= services["api"]["deploy"]["replicas"]
    # Found through Docker's DNS, which the resolvers section reads.
    (defaults,) = directive(backend, "default-server")
    resolvers = defaults[defaults.index("resolvers") + 1]
    assert ["parse-resolv-conf"] in haproxy[("resolvers", resolvers)]


def test_the_proxy_sends_requests_only_to_ready_replicas(
    haproxy: dict[tuple[str, str], list[list[str]]],
) -> None:
    backend = haproxy[("backend", "api")]
    assert ["option", "httpchk"] in backend
    (send,) = directive(backend, "http-check", "send")
    assert send[send.index("meth") + 1] == "GET"
    assert send[send.index("uri") + 1] == "/readyz"
    assert ["status", "200"] in directive(backend, "http-check", "expect")
    (defaults,) = directive(backend, "default-server")
    assert "check" in defaults
    for server in directive(backend, "server"):
        assert "check" in server, server


def test_event_streams_outlive_the_proxy_timeouts(
    haproxy: dict[tuple[str, str], list[list[str]]],
) -> None:
    """The API sends a keepalive on every open event stream each 15 seconds."""
    timeouts = {line[0]: line[1] for line in directive(haproxy[("defaults", "")], "timeout")}
    for side in ("client", "server"):
        match = re.fullmatch(r"(\d+)([ms]?)", timeouts[side])
        assert match, timeouts[side]
        seconds = int(match[1]) * {"": 0.001, "s": 1, "m": 60}[match[2]]
        assert seconds > 15, side


# The API and the workers: Sentinel, quorum queues, every broker node.


def ha_settings(service: dict[str, Any]) -> dict[str, str]:
    """The ORCHESTRATOR_* variables the service's container gets (unset ones left out)."""
    environment = service["environment"]
    return {
        name: value
        for name, value in environment.items()
        if name.startswith("ORCHESTRATOR_") and value is not None
    }


def test_the_workers_scale(services: dict[str, dict[str, Any]]) -> None:
    worker = services["worker"]
    assert worker["deploy"]["replicas"] >= 2
    assert "container_name" not in worker
    assert not worker.get("ports")
    assert worker["image"] == services["api"]["image"]


@pytest.mark.parametrize("name", ORCHESTRATOR_SERVICES)
def test_each_service_gets_the_settings_compose_yml_gives_it(
    services: dict[str, dict[str, Any]], name: str
) -> None:
    assert orchestrator_settings(services[name]) == EXPECTED_SETTINGS[name]


def test_the_workers_still_get_no_api_key(services: dict[str, dict[str, Any]]) -> None:
    worker = services["worker"]["environment"]
    assert not API_KEY_SETTINGS & set(worker)
    assert "dev-key-change-me" not in json.dumps(worker)


@pytest.mark.parametrize("name", ORCHESTRATOR_SERVICES)
def test_the_settings_name_the_sentinels_and_quorum_queues(
    services: dict[str, dict[str, Any]], name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    environment = ha_settings(services[name])
    assert environment["ORCHESTRATOR_QUEUE_TYPE"] == "quorum"
    assert environment["ORCHESTRATOR_REDIS_WAIT_REPLICAS"] == "1"
    sentinel_port = int(
        directive(config_lines((DEPLOY / "sentinel.conf").read_text()), "port")[0][0]
    )
    assert environment["ORCHESTRATOR_REDIS_SENTINELS"].split(",") == [
        f"{sentinel}:{sentinel_port}" for sentinel in SENTINELS
    ]
    # .env's values for everything else still arrive.
    assert environment["ORCHESTRATOR_PREFIX"] == "orch"
    assert environment["ORCHESTRATOR_LEASE_SECONDS"] == "30"
    # The program reads them as meant.
    for variable in list(os.environ):
        if variable.startswith("ORCHESTRATOR_"):
            monkeypatch.delenv(variable)
    for variable, value in environment.items():
        monkeypatch.setenv(variable, value)
    settings = load_settings()
    assert settings.queue_type == "quorum"
    assert settings.redis_sentinels == tuple(environment["ORCHESTRATOR_REDIS_SENTINELS"].split(","))
    assert settings.redis_sentinel_master == environment["ORCHESTRATOR_REDIS_SENTINEL_MASTER"]


@pytest.mark.parametrize("name", ORCHESTRATOR_SERVICES)
def test_the_broker_url_names_every_rabbitmq_node(
    services: dict[str, dict[str, Any]], name: str
) -> None:
    broker = ha_settings(services[name])["ORCHESTRATOR_BROKER_URL"]
    urls = [urlsplit(url) for url in broker.split(",")]
    assert [url.hostname for url in urls] == [services[node]["hostname"] for node in RABBITMQ_NODES]
    rabbitmq = services["rabbitmq-1"]["environment"]
    for url in urls:
        assert url.scheme == "amqp"
        assert url.port == 5672
        assert url.username == rabbitmq["RABBITMQ_DEFAULT_USER"]
        assert url.password == rabbitmq["RABBITMQ_DEFAULT_PASS"]
        assert url.path == "//"


@pytest.mark.parametrize("name", ORCHESTRATOR_SERVICES)
def test_the_orchestrator_waits_for_every_sentinel_and_broker_node(
    services: dict[str, dict[str, Any]], name: str
) -> None:
    depends_on = services[name]["depends_on"]
    assert set(depends_on) == {*SENTINELS, *RABBITMQ_NODES}
    for dependency in depends_on.values():
        assert dependency["condition"] == "service_healthy", name
        # A node that is down must not keep `up` from adding a worker.
        assert dependency["required"] is False, name


# Redis: one primary, two replicas of it, three Sentinels that agree on its name.


def redis_configs(services: dict[str, dict[str, Any]]) -> dict[str, list[list[str]]]:
    return {name: written_config(services[name], "/etc/redis/ha.conf") for name in REDIS_NODES}


def test_the_redis_replicas_point_at_the_primary(services: dict[str, dict[str, Any]]) -> None:
    configs = redis_configs(services)
    primaries = [name for name, lines in configs.items() if not directive(lines, "replicaof")]
    assert primaries == ["redis-1"]
    for name in REDIS_NODES[1:]:
        assert directive(configs[name], "replicaof") == [["redis-1", "6379"]], name
    for name, lines in configs.items():
        # Sentinel and clients are told the node's service name, which Docker resolves.
        assert directive(lines, "replica-announce-ip") == [[name]], name


def test_every_redis_node_persists_and_runs_from_its_writable_copy(
    services: dict[str, dict[str, Any]],
) -> None:
    for name in REDIS_NODES:
        script = services[name]["command"][2]
        assert script.startswith("test -f /data/redis.conf || "), name
        assert script.endswith("exec docker-entrypoint.sh redis-server /data/redis.conf"), name
        lines = redis_configs(services)[name]
        assert directive(lines, "appendonly") == [["yes"]], name
        assert directive(lines, "appendfsync") == [["everysec"]], name
        assert directive(lines, "dir") == [["/data"]], name
        assert directive(lines, "min-replicas-to-write") == [["1"]], name


def test_the_sentinels_monitor_the_primary_by_the_name_the_services_use(
    services: dict[str, dict[str, Any]],
) -> None:
    masters = {
        ha_settings(services[name])["ORCHESTRATOR_REDIS_SENTINEL_MASTER"]
        for name in ORCHESTRATOR_SERVICES
    }
    assert len(masters) == 1
    (master,) = masters
    for name in SENTINELS:
        service = services[name]
        lines = written_config(service, "/etc/redis/sentinel.conf")
        (monitor,) = directive(lines, "sentinel", "monitor")
        assert monitor[:3] == [master, "redis-1", "6379"], name
        # A majority of the Sentinels must see the primary down.
        assert int(monitor[3]) == len(SENTINELS) // 2 + 1, name
        assert directive(lines, "sentinel", "announce-ip") == [[name]], name
        assert ["sentinel", "resolve-hostnames", "yes"] in lines, name
        assert ["sentinel", "announce-hostnames", "yes"] in lines, name
        assert service["command"][2].endswith(
            "exec docker-entrypoint.sh redis-server /data/sentinel.conf --sentinel"
        ), name
        check = " ".join(service["healthcheck"]["test"])
        assert f"sentinel ckquorum {master}" in check, name


def test_the_redis_template_itself_names_no_primary() -> None:
    """A node's role is written into its own copy: a template with one would make every
    node created from it a replica of redis-1, the primary too."""
    lines = config_lines((DEPLOY / "redis.conf").read_text())
    assert not directive(lines, "replicaof")
    assert not directive(lines, "slaveof")
    assert not directive(lines, "replica-announce-ip")


# RabbitMQ: three nodes of one cluster.


def test_the_rabbitmq_nodes_form_the_cluster_their_config_lists(
    services: dict[str, dict[str, Any]],
) -> None:
    settings: dict[str, list[str]] = {}
    for name in RABBITMQ_NODES:
        source = mounted_source(services[name], "/etc/rabbitmq/conf.d/20-cluster.conf")
        assert source == DEPLOY / "rabbitmq.conf"
    for line in (DEPLOY / "rabbitmq.conf").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            settings.setdefault(key.strip(), []).append(value.strip())
    assert settings["cluster_formation.peer_discovery_backend"] == ["classic_config"]
    listed = [
        values[0]
        for key, values in sorted(settings.items())
        if key.startswith("cluster_formation.classic_config.nodes.")
    ]
    hostnames = [services[name]["hostname"] for name in RABBITMQ_NODES]
    assert len(set(hostnames)) == len(hostnames)
    assert listed == [f"rabbit@{hostname}" for hostname in hostnames]
    assert settings["cluster_partition_handling"] == ["pause_minority"]


def test_the_rabbitmq_nodes_share_one_erlang_cookie_from_the_env_file(
    services: dict[str, dict[str, Any]],
) -> None:
    cookie = COOKIE_LINE.partition("=")[2]
    for name in RABBITMQ_NODES:
        environment = services[name]["environment"]
        assert environment["RABBITMQ_ERLANG_COOKIE"] == cookie, name
        assert environment["RABBITMQ_DEFAULT_USER"] == "orchestrator", name
        check = services[name]["healthcheck"]["test"]
        assert check[:2] == ["CMD", "rabbitmq-diagnostics"], name


def test_a_missing_erlang_cookie_fails_validation_naming_it(
    compose_binary: Path,
    tmp_path: Path,
) -> None:
    env_file = ha_env_file(tmp_path, cookie=False)
    done = compose_ha(compose_binary, "config", "--quiet", env_file=env_file, home=tmp_path)
    assert done.returncode != 0
    assert "set RABBITMQ_ERLANG_COOKIE (see .env.example)" in done.stderr


def test_the_images_come_from_the_environment(compose_binary: Path, tmp_path: Path) -> None:
    config = rendered(
        compose_binary,
        tmp_path,
        {
            "REDIS_IMAGE": "localhost/x:1",
            "RABBITMQ_IMAGE": "localhost/y:2",
            "HAPROXY_IMAGE": "localhost/z:3",
        },
    )
    services = config["services"]
    for name in (*REDIS_NODES, *SENTINELS):
        assert services[name]["image"] == "localhost/x:1", name
    for name in RABBITMQ_NODES:
        assert services[name]["image"] == "localhost/y:2", name
    assert services["proxy"]["image"] == "localhost/z:3"
