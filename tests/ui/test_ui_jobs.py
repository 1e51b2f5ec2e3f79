"""The job list in the browser: the key prompt, filters, paging, live rows under a filter."""

from __future__ import annotations

import re

from dashboard import (
    KEY,
    Service,
    assert_not_reloaded,
    enter_key,
    job_row,
    listed_ids,
    mark_page,
    open_dashboard,
)
from playwright.sync_api import Page, expect


def test_the_key_is_asked_for_and_kept_then_the_list_loads(service: Service, page: Page) -> None:
    job = service.submit("demo.echo", {"message": "hello"})
    page.goto(f"{service.url}/ui")
    assert page.url.endswith("/ui/")
    enter_key(page, "not-the-key", expect_message="needs a key")
    enter_key(page, KEY, expect_message="refused")
    expect(page.locator("#key-dialog")).to_be_hidden()
    row = job_row(page, job["id"])
    expect(row).to_contain_text("demo.echo")
    expect(row.locator(".state")).to_have_text("CREATED")
    expect(row).to_contain_text("0/1")
    assert page.evaluate("sessionStorage.getItem('orchestrator.apiKey')") == KEY

    # Kept for the tab: another page asks for nothing.
    page.click("nav a[href='#/types']")
    expect(page.locator('form[data-type="demo.echo"]')).to_be_visible()
    expect(page.locator("#key-dialog")).to_be_hidden()
    # Forgotten on request: the next call asks again.
    page.click("#forget-key")
    enter_key(page, KEY, expect_message="needs a key")
    expect(page.locator('form[data-type="demo.echo"]')).to_be_visible()


def test_filters_and_pages_follow_the_api(service: Service, page: Page) -> None:
    echoes = [service.submit("demo.echo", {"message": f"m{i}"}) for i in range(8)]
    fails = [service.submit("demo.fail", {"times": 0, "permanent": True}) for _ in range(4)]
    for job in echoes[:3]:
        assert service.client.delete(f"/jobs/{job['id']}").status_code == 202
    newest_first = [job["id"] for job in reversed(echoes + fails)]
    rows = page.locator("#jobs-table tbody tr[data-job-id]")

    open_dashboard(page, service.url, "#/jobs?limit=10", key=KEY)
    expect(rows).to_have_count(10)
    assert listed_ids(page) == newest_first[:10]
    expect(page.locator("#page-newer")).to_have_count(0)
    page.click("#page-older")
    expect(page.locator(".page-number")).to_have_text("page 2")
    expect(rows).to_have_count(2)
    assert listed_ids(page) == newest_first[10:]
    expect(page.locator("#page-older")).to_have_count(0)
    page.click("#page-newer")
    expect(page.locator(".page-number")).to_have_text("page 1")
    expect(rows).to_have_count(10)
    assert listed_ids(page) == newest_first[:10]

    page.select_option("#filter-type", "demo.fail")
    expect(page).to_have_url(re.compile(r"#/jobs\?type=demo\.fail&limit=10$"))
    expect(rows).to_have_count(4)
    assert listed_ids(page) == [job["id"] for job in reversed(fails)]
    page.select_option("#filter-state", "CANCELLED")
    expect(page.locator("#jobs-table tr.empty")).to_have_text("No jobs match.")
    page.select_option("#filter-type", "")
    expect(rows).to_have_count(3)
    assert listed_ids(page) == [job["id"] for job in reversed(echoes[:3])]

    # Live under a filter: a row that leaves the state is updated in place and marked,
    # a new job that enters it shows up at the top, all without a reload.
    page.select_option("#filter-state", "CREATED")
    expect(rows).to_have_count(9)
    expect(page.locator("#live")).to_have_attribute("data-status", "live")
    mark_page(page)
    leaving = echoes[5]["id"]
    assert service.client.delete(f"/jobs/{leaving}").status_code == 202
    expect(job_row(page, leaving).locator(".state")).to_have_text("CANCELLED")
    expect(job_row(page, leaving)).to_have_class(re.compile(r"\bstale\b"))
    newcomer = service.submit("demo.echo", {"message": "new"})
    expect(rows).to_have_count(10)
    assert listed_ids(page)[0] == newcomer["id"]
    expect(job_row(page, newcomer["id"]).locator(".state")).to_have_text("CREATED")
    assert_not_reloaded(page)


def test_a_filter_the_api_refuses_is_reported(service: Service, page: Page) -> None:
    open_dashboard(page, service.url, "#/jobs?type=Not%20a%20type", key=KEY)
    expect(page.locator("#view .notice.error")).to_contain_text("422")
    expect(page.locator("#live")).to_have_attribute("data-status", "failed")
    expect(page.locator("#live")).to_contain_text("no live updates")
