"""Flow control in the browser: a finished job's re-run button, what holds a job back,
and a type's limits, its overrides and the pause and resume buttons."""

from __future__ import annotations

import re

from dashboard import KEY, Service, open_dashboard, screenshot
from playwright.sync_api import Page, expect

JOB_PAGE = re.compile(r"#/jobs/([0-9a-f-]{36})$")


def test_the_rerun_button_of_a_finished_job_opens_the_new_job(service: Service, page: Page) -> None:
    response = service.client.post(
        "/jobs",
        json={
            "type": "demo.echo",
            "payload": {"message": "again"},
            "priority": 3,
            "concurrency_key": "tenant-7",
        },
    )
    original = response.json()
    open_dashboard(page, service.url, f"#/jobs/{original['id']}", key=KEY)
    expect(page.locator("#job-priority")).to_have_text("3")
    expect(page.locator("#job-key")).to_have_text("tenant-7")
    expect(page.locator("#rerun-job")).to_be_hidden()  # not before it has finished

    page.click("#cancel-job")
    rerun = page.locator("#rerun-job")
    expect(rerun).to_be_visible()
    rerun.click()
    expect(page).not_to_have_url(re.compile(re.escape(original["id"]) + "$"))
    expect(page).to_have_url(JOB_PAGE)
    match = JOB_PAGE.search(page.url)
    assert match is not None
    new_id = match.group(1)
    expect(page.locator("#job-rerun-of")).to_have_text(original["id"])
    expect(page.locator("#job-priority")).to_have_text("3")
    expect(page.locator("#job-key")).to_have_text("tenant-7")
    expect(page.locator("#rerun-job")).to_be_hidden()
    fresh = service.client.get(f"/jobs/{new_id}").json()
    assert fresh["rerun_of"] == original["id"]
    assert (fresh["type"], fresh["payload"]) == ("demo.echo", original["payload"])
    assert fresh["state"] == "CREATED"
    screenshot(page, "rerun")

    # The link leads back to the original.
    page.click("#job-rerun-of")
    expect(page).to_have_url(re.compile(re.escape(original["id"]) + "$"))
    expect(page.locator("#rerun-job")).to_be_visible()


def test_a_delayed_job_shows_when_it_may_start_and_what_it_waits_for(
    service: Service, page: Page
) -> None:
    response = service.client.post(
        "/jobs", json={"type": "demo.echo", "payload": {"message": "later"}, "delay": 3600}
    )
    job = response.json()
    open_dashboard(page, service.url, f"#/jobs/{job['id']}", key=KEY)
    expect(page.locator("#job-not-before time")).to_have_attribute("datetime", job["not_before"])
    waiting = page.locator("#job-waiting")
    if job["waiting"] is None:
        expect(waiting).to_have_count(0)
    else:
        expect(waiting).to_have_attribute("data-waiting", job["waiting"])
    expect(page.locator("#job-rerun-of")).to_have_count(0)
    expect(page.locator("#job-schedule")).to_have_count(0)


def test_the_types_page_shows_overrides_and_pauses_and_resumes(
    service: Service, page: Page
) -> None:
    patched = service.client.patch(
        "/job-types/demo.echo", json={"concurrency": 3, "rate_limit": "5/s"}
    )
    assert patched.status_code == 200, patched.text
    open_dashboard(page, service.url, "#/types/demo.echo", key=KEY)
    limits = page.locator('section.flow-control[data-type="demo.echo"]')
    concurrency = limits.locator('dd[data-limit="concurrency"]')
    expect(concurrency).to_contain_text("3")
    expect(concurrency).to_have_attribute("data-overridden", "yes")
    expect(limits.locator('dd[data-limit="rate_limit"]')).to_contain_text("5/s")
    expect(limits.locator('dd[data-limit="concurrency_per_key"]')).to_have_text("no limit")
    expect(limits.locator('dd[data-limit="concurrency_per_key"]')).to_have_attribute(
        "data-overridden", "no"
    )
    paused = limits.locator('dd[data-limit="paused"]')
    expect(paused).to_have_text("no")

    limits.locator("button.pause-type").click()
    expect(paused).to_contain_text("yes")
    expect(paused).to_have_attribute("data-overridden", "yes")
    entry = service.client.get("/job-types/demo.echo").json()
    assert entry["paused"] is True
    assert entry["overrides"]["concurrency"] == 3, "the other overrides stay"
    screenshot(page, "type-paused")

    # After a reload, what is stored; and the list marks the paused type.
    page.reload()
    expect(paused).to_contain_text("yes")
    page.click("nav a[href='#/types']")
    expect(page.locator(".type-index li", has_text="demo.echo")).to_contain_text("paused")
    expect(page.locator(".type-index li", has_text="demo.sleep")).not_to_contain_text("paused")
    limits.locator("button.resume-type").click()
    expect(paused).to_have_text("no")
    assert service.client.get("/job-types/demo.echo").json()["paused"] is False
    expect(limits.locator("button.pause-type")).to_be_visible()
