"""Live updates in the browser: rows and job pages follow the /events streams as jobs
run on a real worker, without a reload, and resume after the connection drops."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from dashboard import (
    KEY,
    Service,
    assert_not_reloaded,
    job_row,
    listed_ids,
    mark_page,
    open_dashboard,
    screenshot,
)
from netfaults import TcpProxy
from playwright.sync_api import Page, expect

JOB_PAGE = re.compile(r"#/jobs/[0-9a-f-]{36}$")
RUN_TIMEOUT_MS = 30_000


def history(page: Page) -> list[str]:
    states: list[str] = page.locator("#job-history li").evaluate_all(
        "items => items.map(item => item.dataset.state)"
    )
    return states


def test_the_list_shows_new_jobs_and_their_states_live(system: Service, page: Page) -> None:
    open_dashboard(page, system.url, "#/jobs", key=KEY)
    expect(page.locator("#jobs-table tr.empty")).to_be_visible()
    expect(page.locator("#live")).to_have_attribute("data-status", "live")
    mark_page(page)

    sleeper = system.submit("demo.sleep", {"seconds": 1.5, "steps": 3})
    echo = system.submit("demo.echo", {"message": "hello"})
    failing = system.submit("demo.fail", {"times": 0, "permanent": True})
    for job, state in ((sleeper, "COMPLETED"), (echo, "COMPLETED"), (failing, "FAILED")):
        expect(job_row(page, job["id"]).locator(".state")).to_have_text(
            state, timeout=RUN_TIMEOUT_MS
        )
    assert listed_ids(page) == [failing["id"], echo["id"], sleeper["id"]]
    expect(job_row(page, sleeper["id"])).to_contain_text("1/3")
    expect(page.locator("#job-count")).to_have_text("3 shown")
    expect(page.locator("#jobs-table tr.empty")).to_have_count(0)
    assert_not_reloaded(page)
    screenshot(page, "jobs-list")


def test_a_job_submitted_from_the_catalog_completes_live(system: Service, page: Page) -> None:
    open_dashboard(page, system.url, "#/types", key=KEY)
    form = page.locator('form[data-type="demo.sleep"]')
    form.locator('[data-field="seconds"] input').fill("3")
    form.locator('[data-field="steps"] input').fill("3")
    mark_page(page)
    form.locator("button[type=submit]").click()

    expect(page).to_have_url(JOB_PAGE)
    job_id = page.url.rsplit("/", 1)[1]
    state = page.locator("#job-summary .state")
    expect(page.locator("#live")).to_have_attribute("data-status", "live")
    expect(state).to_have_text("COMPLETED", timeout=RUN_TIMEOUT_MS)
    expect(page.locator("#live")).to_have_attribute("data-status", "ended")
    assert history(page) == ["CREATED", "RUNNING", "COMPLETED"]
    expect(page.locator("#job-result pre")).to_contain_text('"slept": 3')
    expect(page.locator("#job-attempts")).to_have_text("1 of 3")
    expect(page.locator("#cancel-job")).to_be_hidden()
    assert_not_reloaded(page)
    job = system.client.get(f"/jobs/{job_id}").json()
    assert job["payload"] == {"seconds": 3, "steps": 3}
    assert job["state"] == "COMPLETED"
    screenshot(page, "job-completed")


def test_a_running_job_is_cancelled_from_its_page(system: Service, page: Page) -> None:
    job = system.submit("demo.sleep", {"seconds": 60, "steps": 60})
    open_dashboard(page, system.url, f"#/jobs/{job['id']}", key=KEY)
    state = page.locator("#job-summary .state")
    expect(state).to_have_text("RUNNING", timeout=RUN_TIMEOUT_MS)
    mark_page(page)
    # Progress moves between transitions too: one step a second.
    progress = page.locator("#job-summary .progress-message")
    expect(progress).to_contain_text(re.compile(r"step \d+/60"), timeout=RUN_TIMEOUT_MS)
    step = progress.inner_text()
    expect(progress).not_to_have_text(step, timeout=RUN_TIMEOUT_MS)
    page.click("#cancel-job")
    expect(state).to_have_text("CANCELLED", timeout=RUN_TIMEOUT_MS)
    expect(page.locator("#cancel-job")).to_be_hidden()
    expect(page.locator("#job-notice")).to_be_empty()  # "cancel requested" is over
    assert history(page) == ["CREATED", "RUNNING", "CANCELLED"]
    expect(page.locator("#job-history li").last).to_contain_text("cancelled")
    assert_not_reloaded(page)
    assert system.client.get(f"/jobs/{job['id']}").json()["state"] == "CANCELLED"
    screenshot(page, "job-cancelled")


@pytest.fixture
def proxy(service: Service) -> Iterator[TcpProxy]:
    """The browser's way to the API, to be cut and restored."""
    port = int(service.url.rsplit(":", 1)[1])
    forwarding = TcpProxy(("127.0.0.1", port))
    yield forwarding
    forwarding.close()


def test_the_list_resumes_after_the_connection_drops(
    service: Service, proxy: TcpProxy, page: Page
) -> None:
    first = service.submit("demo.echo", {"message": "before"})
    open_dashboard(page, f"http://127.0.0.1:{proxy.port}", "#/jobs", key=KEY)
    live = page.locator("#live")
    expect(live).to_have_attribute("data-status", "live")
    mark_page(page)
    seen = service.submit("demo.echo", {"message": "seen live"})
    expect(job_row(page, seen["id"])).to_be_visible()  # so the stream has an event id

    proxy.set_mode("refuse")
    expect(live).to_have_attribute("data-status", "retrying")
    assert service.client.delete(f"/jobs/{first['id']}").status_code == 202
    missed = service.submit("demo.echo", {"message": "while away"})
    proxy.set_mode("forward")

    expect(live).to_have_attribute("data-status", "live", timeout=RUN_TIMEOUT_MS)
    expect(job_row(page, first["id"]).locator(".state")).to_have_text("CANCELLED")
    expect(job_row(page, missed["id"])).to_be_visible()
    assert listed_ids(page) == [missed["id"], seen["id"], first["id"]]
    assert_not_reloaded(page)


def test_a_job_page_resumes_after_the_connection_drops(
    service: Service, proxy: TcpProxy, page: Page
) -> None:
    job = service.submit("demo.echo", {"message": "waiting"})
    open_dashboard(page, f"http://127.0.0.1:{proxy.port}", f"#/jobs/{job['id']}", key=KEY)
    live = page.locator("#live")
    expect(live).to_have_attribute("data-status", "live")
    mark_page(page)

    proxy.set_mode("refuse")
    expect(live).to_have_attribute("data-status", "retrying")
    assert service.client.delete(f"/jobs/{job['id']}").status_code == 202
    proxy.set_mode("forward")

    expect(page.locator("#job-summary .state")).to_have_text("CANCELLED", timeout=RUN_TIMEOUT_MS)
    expect(live).to_have_attribute("data-status", "ended")
    assert history(page) == ["CREATED", "CANCELLED"]
    assert_not_reloaded(page)
