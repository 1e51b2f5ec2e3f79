"""The installed ``orchestrator`` console script, run as a subprocess on the fixture plugins."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ORCHESTRATOR = Path(sys.executable).parent / "orchestrator"
DISTS = Path(__file__).resolve().parent.parent / "fixtures" / "dists"


def run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATOR_")}
    clean["PYTHONPATH"] = str(DISTS)
    return subprocess.run(
        [str(ORCHESTRATOR), *args],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_plugins_with_allow_list_shows_the_plugin_and_its_types() -> None:
    result = run("plugins", ORCHESTRATOR_PLUGINS="testplugin")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "  testplugin  (orchestrator-testplugin 1.0.0, orchestrator_testplugin.plugin)" in lines
    assert "    testplugin.echo  queue=(default)  max_attempts=3  timeout=none" in lines
    assert "    testplugin.sleep  queue=slow  max_attempts=5  timeout=30s" in lines
    assert "Failures:" not in lines
    assert "  brokenimport" in lines[lines.index("Skipped (not in ORCHESTRATOR_PLUGINS):") :]
    assert result.stderr == ""


def test_plugins_without_allow_list_lists_failures_and_exits_1() -> None:
    result = run("plugins")
    assert result.returncode == 1
    failures = result.stdout.partition("Failures:\n")[2]
    assert (
        "  brokenimport  (orchestrator-brokenimport 0.1.0)  [import]  "
        "RuntimeError: brokenimport cannot start: missing ACME_TOKEN"
    ) in failures
    assert "  garbage  (orchestrator-garbage 0.2.0)  [job_types]  " in failures
    assert "  misspelt  (orchestrator-misspelt 0.3.0)  [hooks]  " in failures
    assert "  dupa  (orchestrator-dupa 1.1.0)  [duplicate]  " in failures
    # The operator also gets the traceback of the import error on stderr.
    assert "RuntimeError: brokenimport cannot start" in result.stderr


def test_plugins_json() -> None:
    result = run("plugins", "--json", ORCHESTRATOR_PLUGINS="testplugin,brokenimport")
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert set(report) == {"plugins", "failures", "skipped"}
    [plugin] = report["plugins"]
    assert plugin["name"] == "testplugin"
    assert (plugin["distribution"], plugin["version"]) == ("orchestrator-testplugin", "1.0.0")
    assert plugin["job_types"] == [
        {
            "name": "testplugin.echo",
            "description": "Return the payload unchanged.",
            "queue": None,
            "max_attempts": 3,
            "timeout": None,
        },
        {
            "name": "testplugin.sleep",
            "description": "Sleep for the given seconds, stopping early when cancelled.",
            "queue": "slow",
            "max_attempts": 5,
            "timeout": 30.0,
        },
    ]
    assert report["failures"] == [
        {
            "plugin": "brokenimport",
            "distribution": "orchestrator-brokenimport",
            "version": "0.1.0",
            "stage": "import",
            "error": "RuntimeError: brokenimport cannot start: missing ACME_TOKEN",
        }
    ]
    assert "dupa" in report["skipped"]
    assert "testplugin" not in report["skipped"]


def test_bad_setting_exits_2_with_one_line_and_no_traceback() -> None:
    result = run("plugins", ORCHESTRATOR_PREFIX="bad prefix!")
    assert result.returncode == 2
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith("orchestrator: error: invalid settings: ORCHESTRATOR_PREFIX")
    assert "Traceback" not in result.stderr


def test_a_bad_network_in_the_http_allow_list_stops_the_command_at_start() -> None:
    result = run("plugins", ORCHESTRATOR_HTTP_ALLOW_NETWORKS="10.0.0.0/8,10.0.0.1/8")
    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert "ORCHESTRATOR_HTTP_ALLOW_NETWORKS" in line
    assert "'10.0.0.1/8' is not a network" in line


def test_missing_command_is_a_usage_error() -> None:
    result = run()
    assert result.returncode == 2
    assert "required: COMMAND" in result.stderr


def test_a_reader_that_goes_away_ends_the_output_quietly() -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATOR_")}
    process = subprocess.Popen(
        [str(ORCHESTRATOR), "plugins", "--json"],
        env={**clean, "PYTHONPATH": str(DISTS), "ORCHESTRATOR_PLUGINS": "testplugin"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None
    process.stdout.close()  # like `| head` having read all it wanted
    _, stderr = process.communicate(timeout=60)
    assert "Traceback" not in stderr.decode()
    assert "BrokenPipeError" not in stderr.decode()
