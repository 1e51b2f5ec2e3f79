"""``orchestrator api --workers 2``: one port, two server processes, one set of figures,
and a stop that ends every open stream."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from test_api_metrics import scrape, series

from orchestrator_core import Settings

ORCHESTRATOR = Path(sys.executable).parent / "orchestrator"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text().rpartition(")")[2].split()
            except OSError:
                continue
            if int(stat[1]) == pid:
                found.append(int(entry.name))
    return found


def requests_counted(url: str) -> dict[tuple[tuple[str, str], ...], float]:
    with httpx.Client(base_url=url, timeout=10) as client:
        return series(scrape(client), "orchestrator_http_request_duration_seconds_count")


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting to be reaped does not count)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.fixture
def served(api_settings: Settings, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    port = free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("ORCHESTRATOR_") and k != "PROMETHEUS_MULTIPROC_DIR"
    }
    env.update(ORCHESTRATOR_PREFIX=api_settings.prefix, ORCHESTRATOR_PLUGINS="demo")
    log = tmp_path / "api.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(ORCHESTRATOR), "api", "--port", str(port), "--workers", "2"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        assert process.poll() is None, log.read_text()
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "the API did not come up"
        time.sleep(0.1)
    try:
        yield process, url
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
        print(log.read_text()[-4000:])


def test_two_processes_serve_one_port_and_report_every_request(
    served: tuple[subprocess.Popen[bytes], str],
) -> None:
    process, url = served
    deadline = time.monotonic() + 30
    while len(children(process.pid)) < 2:  # the server processes, beside any helper
        assert time.monotonic() < deadline, "two server processes did not start"
        time.sleep(0.1)
    healthz = (("method", "GET"), ("route", "/healthz"), ("status", "200"))
    before = requests_counted(url).get(healthz, 0)  # the readiness probes
    for n in range(6):
        body = {"type": "demo.echo", "payload": {"message": str(n)}}
        assert httpx.post(f"{url}/jobs", json=body, timeout=10).status_code == 201
    for _ in range(40):  # a connection each, so both processes take some
        assert httpx.get(f"{url}/healthz", timeout=10).status_code == 200
    for _ in range(4):  # whichever process answers the scrape reports them all
        counts = requests_counted(url)
        assert counts[(("method", "POST"), ("route", "/jobs"), ("status", "201"))] == 6
        assert counts[healthz] == before + 40


def test_a_stop_ends_open_streams_and_every_process(
    served: tuple[subprocess.Popen[bytes], str],
) -> None:
    process, url = served
    ended = threading.Event()

    def follow() -> None:
        try:
            with httpx.stream("GET", f"{url}/events", timeout=30) as response:
                assert response.status_code == 200
                for _ in response.iter_lines():
                    pass
        except httpx.HTTPError:
            pass
        ended.set()

    reader = threading.Thread(target=follow, daemon=True)
    reader.start()
    time.sleep(1.0)  # the stream is open
    servers = children(process.pid)
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)

    assert process.wait(30) == 0
    assert ended.wait(10), "the open event stream was left hanging"
    assert time.monotonic() - started < 20
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in servers):
        assert time.monotonic() < deadline, "a server process outlived the stop"
        time.sleep(0.1)
