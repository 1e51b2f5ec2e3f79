"""Driving the dashboard: opening it, answering its key prompt, keeping screenshots."""

from __future__ import annotations

import os
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import Locator, Page, expect

ROOT = Path(__file__).resolve().parent.parent.parent
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
KEY = "ui-test-key"
"""The API key the tests' API accepts."""


@dataclass
class Service:
    """A running API: its base URL and a client that sends the key."""

    url: str
    client: httpx.Client

    def submit(self, job_type: str, payload: dict[str, Any]) -> dict[str, Any]:
        response = self.client.post("/jobs", json={"type": job_type, "payload": payload})
        assert response.status_code == 201, response.text
        job: dict[str, Any] = response.json()
        return job

    def wait(
        self, job_id: str, until: Callable[[dict[str, Any]], bool], *, timeout: float = 30
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            job: dict[str, Any] = self.client.get(f"/jobs/{job_id}").json()
            if until(job):
                return job
            assert time.monotonic() < deadline, f"job never got there: {job}"
            time.sleep(0.05)


def artifacts_dir() -> Path:
    """Where screenshots go: ``$ORCHESTRATOR_ARTIFACTS``, else ``build/artifacts/ui``."""
    configured = os.environ.get("ORCHESTRATOR_ARTIFACTS")
    directory = Path(configured) if configured else ROOT / "build" / "artifacts" / "ui"
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def open_dashboard(page: Page, url: str, route: str, *, key: str) -> None:
    """Navigate to ``/ui`` at ``route`` (``#/...``) and give the key when it is asked for."""
    page.goto(f"{url}/ui{route}")
    enter_key(page, key)


def enter_key(page: Page, key: str, *, expect_message: str | None = None) -> None:
    dialog = page.locator("#key-dialog")
    expect(dialog).to_be_visible()
    if expect_message is not None:
        expect(page.locator("#key-message")).to_contain_text(expect_message)
    page.fill("#key-input", key)
    page.click("#key-form button[type=submit]")


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from a PNG's header; fails unless the file is a PNG."""
    head = path.read_bytes()[:24]
    assert head[:8] == PNG_SIGNATURE, f"{path} is not a PNG"
    assert head[12:16] == b"IHDR", f"{path} has no PNG header chunk"
    width, height = struct.unpack(">II", head[16:24])
    return width, height


def screenshot(page: Page, name: str) -> Path:
    """Save the whole page as ``<artifacts>/<name>.png``, and check that it is a real picture."""
    path = artifacts_dir() / f"{name}.png"
    path.unlink(missing_ok=True)
    page.evaluate("window.scrollTo(0, 0)")  # a sticky header draws where the scroll left it
    page.screenshot(path=str(path), full_page=True)
    assert path.is_file(), f"no screenshot at {path}"
    width, height = png_size(path)
    assert width >= 1000, (width, height)
    assert height >= 600, (width, height)
    # A blank page compresses to a few hundred bytes; a rendered one is far larger.
    assert path.stat().st_size > 10_000, f"{path} is {path.stat().st_size} bytes: a blank page?"
    return path


def job_row(page: Page, job_id: str) -> Locator:
    """The list row of one job."""
    return page.locator(f'#jobs-table tr[data-job-id="{job_id}"]')


def listed_ids(page: Page) -> list[str]:
    """The job ids the list shows, top to bottom."""
    ids: list[str] = page.locator("#jobs-table tbody tr[data-job-id]").evaluate_all(
        "rows => rows.map(row => row.dataset.jobId)"
    )
    return ids


def mark_page(page: Page) -> None:
    """Leave a mark in the page's window, which a reload would wipe out."""
    page.evaluate("window.notReloaded = true")


def assert_not_reloaded(page: Page) -> None:
    assert page.evaluate("window.notReloaded") is True, "the page was reloaded"
