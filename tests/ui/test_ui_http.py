"""The dashboard's files and the plugin report, over plain HTTP."""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from pathlib import Path

import httpx
import pytest
from apiserver import serve
from dashboard import KEY, Service

from orchestrator_core import Settings, load_plugins, load_settings

ROOT = Path(__file__).resolve().parent.parent.parent
UI = ROOT / "api" / "ui"
IMPORT = re.compile(r"""^import\s.*?\sfrom\s+"\./([\w.-]+)";""", re.MULTILINE | re.DOTALL)


def test_the_dashboard_is_served_without_a_key(service: Service) -> None:
    with httpx.Client(base_url=service.url, timeout=10) as anonymous:
        assert anonymous.get("/jobs").status_code == 401
        moved = anonymous.get("/ui")
        assert moved.status_code == 307
        assert moved.headers["location"] == "ui/"
        index = anonymous.get("/ui", follow_redirects=True)
        assert index.status_code == 200
        assert str(index.url).endswith("/ui/")
        assert index.headers["content-type"].startswith("text/html")
        csp = index.headers["content-security-policy"]
        assert "script-src 'self'" in csp
        assert "default-src 'none'" in csp
        assert '<script type="module" src="app.js"></script>' in index.text

        # Every module the page imports, and their imports, are served as JavaScript.
        pending, served = ["app.js"], set()
        while pending:
            name = pending.pop()
            if name in served:
                continue
            response = anonymous.get(f"/ui/{name}")
            assert response.status_code == 200, name
            assert response.headers["content-type"].startswith("text/javascript"), name
            served.add(name)
            pending += IMPORT.findall(response.text)
        assert {"app.js", "client.js", "sse.js", "schemaform.js", "jobs.js", "job.js"} <= served
        assert {path.name for path in UI.glob("*.js")} == served, "a module nothing imports"
        style = anonymous.get("/ui/style.css")
        assert style.status_code == 200
        assert style.headers["content-type"].startswith("text/css")


@pytest.mark.parametrize(
    "path", ["/ui/nope.js", "/ui/..%2Fmain.py", "/ui/%2e%2e%2fschemas.py", "/ui/__init__.py"]
)
def test_only_the_dashboard_files_are_served(service: Service, path: str) -> None:
    response = httpx.get(service.url + path, timeout=10)
    assert response.status_code == 404, response.text


def test_the_plugin_report_needs_the_key(service: Service) -> None:
    assert httpx.get(f"{service.url}/plugins", timeout=10).status_code == 401
    wrong = httpx.get(
        f"{service.url}/plugins", headers={"Authorization": "Bearer wrong"}, timeout=10
    )
    assert wrong.status_code == 401


def test_the_plugin_report_lists_plugins_types_and_skipped(service: Service) -> None:
    report = service.client.get("/plugins").json()
    installed = {info.name for info in load_plugins().report.loaded}
    assert report["ok"] is True
    assert report["failed"] == []
    [demo] = report["loaded"]
    assert demo["name"] == "demo"
    assert demo["distribution"] == "orchestrator-demo"
    assert demo["version"]
    assert demo["value"] == "orchestrator_demo.plugin"
    assert demo["job_types"] == ["demo.echo", "demo.fail", "demo.sleep"]
    assert set(report["skipped"]) == installed - {"demo"}


def test_the_plugin_report_names_what_failed(ui_settings: Settings) -> None:
    settings = load_settings(**{**ui_settings.model_dump(), "plugins": ("demo", "absent")})
    with serve(settings) as url:
        response = httpx.get(
            f"{url}/plugins", headers={"Authorization": f"Bearer {KEY}"}, timeout=10
        )
    report = response.json()
    assert report["ok"] is False
    assert [p["name"] for p in report["loaded"]] == ["demo"]
    [failure] = report["failed"]
    assert failure["plugin"] == "absent"
    assert failure["stage"] == "import"
    assert "allow-list" in failure["error"]


def test_the_wheel_ships_the_dashboard(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(tmp_path), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    [wheel] = tmp_path.glob("orchestrator-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    expected = {path.relative_to(ROOT).as_posix() for path in UI.iterdir() if path.is_file()}
    assert {"api/ui/index.html", "api/ui/app.js", "api/ui/style.css"} <= expected
    assert expected <= names
