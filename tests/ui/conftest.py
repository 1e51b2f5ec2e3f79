"""The dashboard driven in Debian's Chromium over a real API (API keys on) and real
worker processes, each test under its own Redis prefix and queue names."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest
import redis
from cleanup import delete_broker_objects, job_queues
from playwright.sync_api import Browser, ConsoleMessage, Page, Playwright, sync_playwright

from orchestrator_core import Settings, load_plugins, load_settings

TESTS = Path(__file__).resolve().parent.parent
# The API server and the worker processes are run exactly as their own suites run them.
for shared in (TESTS / "api", TESTS / "worker"):
    if str(shared) not in sys.path:
        sys.path.append(str(shared))

from apiserver import serve  # noqa: E402
from dashboard import KEY, Service  # noqa: E402
from harness import ALLOWED, FIXTURES, Workers  # noqa: E402

CHROMIUM = Path("/usr/bin/chromium")


# Module-scoped, not session-scoped: the sync API keeps an event loop running in the
# main thread while it is open, which would break later tests that call asyncio.run().
@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: the dashboard tests drive Debian's chromium package "
            "(apt-get install chromium); no browser is downloaded"
        )
    browser = playwright.chromium.launch(
        executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-dev-shm-usage"]
    )
    yield browser
    browser.close()


@pytest.fixture
def ui_settings(
    settings: Settings, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Settings]:
    monkeypatch.syspath_prepend(str(FIXTURES))  # the worker harness's job types, by entry point
    configured = load_settings(
        prefix=settings.prefix,
        plugins="demo",
        api_keys=KEY,
        lease_seconds=5.0,
        cancel_grace_seconds=2.0,
        sweep_interval_seconds=0.2,
    )
    yield configured
    queues = job_queues(configured.prefix, load_plugins(allow=list(ALLOWED)))
    delete_broker_objects(configured.broker_url, configured.prefix, queues)


@pytest.fixture
def service(ui_settings: Settings) -> Iterator[Service]:
    """The API alone: jobs are accepted and stay CREATED until cancelled."""
    with ExitStack() as stack:
        url = stack.enter_context(serve(ui_settings))
        client = stack.enter_context(
            httpx.Client(base_url=url, timeout=15, headers={"Authorization": f"Bearer {KEY}"})
        )
        yield Service(url, client)


@pytest.fixture
def system(service: Service, ui_settings: Settings, tmp_path: Path) -> Iterator[Service]:
    """The API and a worker process: jobs run."""
    workers = Workers(ui_settings, tmp_path)
    try:
        workers.start(concurrency=2)
        yield service
    finally:
        workers.stop_all()
        for worker in workers.started:
            print(f"--- {worker.log.name}\n{worker.text()[-6000:]}")


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh tab (its own session storage, so its own key prompt); fails the test on
    any uncaught error in the page's scripts."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(15_000)
    tab = context.new_page()
    problems: list[str] = []
    tab.on("pageerror", lambda error: problems.append(f"uncaught: {error}"))

    def console(message: ConsoleMessage) -> None:
        # A refused call shows as a console error too; those are expected (401 first).
        if message.type == "error" and "Failed to load resource" not in message.text:
            problems.append(f"console: {message.text}")

    tab.on("console", console)
    yield tab
    context.close()
    assert not problems, "\n".join(problems)
