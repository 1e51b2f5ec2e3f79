"""Several API server processes behind one scrape: prometheus_client's multiprocess mode."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from test_api_metrics import job_figures, scrape, series, submit, value

from orchestrator_core import Settings

ORCHESTRATOR = Path(sys.executable).parent / "orchestrator"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _environment(settings: Settings, directory: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATOR_")}
    env.update(
        ORCHESTRATOR_PREFIX=settings.prefix,
        ORCHESTRATOR_PLUGINS="demo",
        PROMETHEUS_MULTIPROC_DIR=str(directory),
    )
    return env


@pytest.fixture
def two_apis(api_settings: Settings, tmp_path: Path) -> Iterator[tuple[httpx.Client, httpx.Client]]:
    """Two ``orchestrator api`` processes on one prefix, sharing one multiprocess directory,
    as the server processes of one deployment would."""
    directory = tmp_path / "prometheus"
    directory.mkdir()
    processes: list[subprocess.Popen[bytes]] = []
    clients: list[httpx.Client] = []
    try:
        for index in range(2):
            port = _free_port()
            with (tmp_path / f"api-{index}.log").open("wb") as log:
                processes.append(
                    subprocess.Popen(
                        [str(ORCHESTRATOR), "api", "--port", str(port)],
                        env=_environment(api_settings, directory),
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )
                )
            clients.append(httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10))
        deadline = time.monotonic() + 30
        for process, client in zip(processes, clients, strict=True):
            while not _answers(client):
                assert process.poll() is None, "an API process exited at start"
                assert time.monotonic() < deadline, "an API process did not come up"
                time.sleep(0.05)
        yield clients[0], clients[1]
    finally:
        for client in clients:
            client.close()
        for process in processes:
            process.terminate()
            process.wait(15)
        for log in sorted(tmp_path.glob("api-*.log")):
            print(f"--- {log.name}\n{log.read_text()[-4000:]}")


def _answers(client: httpx.Client) -> bool:
    try:
        return client.get("/healthz").status_code == 200
    except httpx.TransportError:
        return False


def test_every_process_reports_all_requests_and_each_job_once(
    two_apis: tuple[httpx.Client, httpx.Client],
) -> None:
    first, second = two_apis
    job_ids = [submit(first, "demo.echo", {"message": str(n)}) for n in range(3)]
    for job_id in job_ids:
        assert second.get(f"/jobs/{job_id}").status_code == 200
    assert first.get(f"/jobs/{job_ids[0]}").status_code == 200
    assert second.delete(f"/jobs/{job_ids[1]}").status_code == 202

    from_first, from_second = scrape(first), scrape(second)

    for samples in (from_first, from_second):
        counts = series(samples, "orchestrator_http_request_duration_seconds_count")
        assert counts[(("method", "POST"), ("route", "/jobs"), ("status", "201"))] == 3
        assert counts[(("method", "GET"), ("route", "/jobs/{job_id}"), ("status", "200"))] == 4
        assert counts[(("method", "DELETE"), ("route", "/jobs/{job_id}"), ("status", "202"))] == 1
        assert value(samples, "orchestrator_jobs_submitted_total", type="demo.echo") == 3
        assert value(samples, "orchestrator_jobs", type="demo.echo", state="CREATED") == 2
        assert value(samples, "orchestrator_jobs", type="demo.echo", state="CANCELLED") == 1
        assert series(samples, "orchestrator_plugin_load_failures") == {(("process", "api"),): 0}
        assert series(samples, "orchestrator_store_up") == {(): 1}
    assert job_figures(from_first) == job_figures(from_second)


def test_a_missing_multiprocess_directory_stops_the_api_at_start(
    api_settings: Settings, tmp_path: Path
) -> None:
    result = subprocess.run(
        [str(ORCHESTRATOR), "api", "--port", str(_free_port())],
        env=_environment(api_settings, tmp_path / "missing"),
        capture_output=True,
        timeout=60,
        check=False,
    )

    assert result.returncode != 0
    assert b"PROMETHEUS_MULTIPROC_DIR" in result.stderr
    assert b"Traceback" not in result.stderr
