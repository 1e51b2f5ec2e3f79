"""The API reference pages in the browser: ``/docs`` and ``/redoc`` ask for the key the
document needs (or use the tab's), render it, and load nothing from anywhere else."""

from __future__ import annotations

from dashboard import KEY, Service, open_dashboard
from playwright.sync_api import Page, Request, expect


def local(service: Service, url: str) -> bool:
    """From the API, or made in the page itself (ReDoc's search worker is a blob)."""
    return url.startswith((f"{service.url}/", f"blob:{service.url}/", "data:"))


def test_swagger_asks_for_the_key_renders_and_calls_with_it(service: Service, page: Page) -> None:
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.goto(f"{service.url}/docs")
    form = page.locator("#key-form")
    expect(form).to_be_visible()
    expect(page.locator("#key-message")).to_contain_text("needs a key")
    page.fill("#key-input", "not-the-key")
    page.click("#key-form button[type=submit]")
    expect(page.locator("#key-message")).to_contain_text("refused")
    page.fill("#key-input", KEY)
    page.click("#key-form button[type=submit]")
    expect(form).to_be_hidden()

    operation = page.locator("#operations-auth-auth_auth_get")
    expect(operation).to_be_visible()
    expect(page.locator("#operations-jobs-create_job_jobs_post")).to_be_visible()
    # "Try it out" sends the key the page was given.
    operation.locator(".opblock-summary").click()
    operation.locator("button.try-out__btn").click()
    operation.locator("button.execute").click()
    expect(
        operation.locator(".live-responses-table tbody .response-col_status").first
    ).to_have_text("200")
    expect(operation.locator(".live-responses-table")).to_contain_text('"role": "admin"')

    assert requested, "the page made requests"
    elsewhere = [url for url in requested if not local(service, url)]
    assert elsewhere == [], "everything comes from the API itself"


def test_the_dashboard_s_key_opens_both_pages(service: Service, page: Page) -> None:
    requests: list[Request] = []
    page.on("request", lambda request: requests.append(request))
    open_dashboard(page, service.url, "#/jobs", key=KEY)
    expect(page.locator("#jobs-table")).to_be_visible()
    page.click("nav a[href='../docs']")
    expect(page.locator("#operations-jobs-create_job_jobs_post")).to_be_visible()
    expect(page.locator("#key-form")).to_be_hidden()

    page.goto(f"{service.url}/redoc")
    expect(page.locator("#viewer h1").first).to_contain_text("orchestrator")
    expect(page.locator("#viewer")).to_contain_text("/jobs/batch")
    expect(page.locator("#key-form")).to_be_hidden()
    document_fetches = [r for r in requests if r.url.endswith("/openapi.json")]
    assert len(document_fetches) == 2
    assert all(r.headers.get("authorization") == f"Bearer {KEY}" for r in document_fetches)
    elsewhere = [r.url for r in requests if not local(service, r.url)]
    assert elsewhere == [], "everything comes from the API itself"
