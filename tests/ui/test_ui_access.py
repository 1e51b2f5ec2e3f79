"""A read-only key in the browser: the dashboard asks ``GET /auth`` what the key may do
and offers no action it may not (cancel, submit); a full key gets them back."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from apiserver import serve
from dashboard import KEY, Service, enter_key, open_dashboard
from playwright.sync_api import Page, expect

from orchestrator_core import Settings, load_settings

READ_KEY = "ui-read-key"


@pytest.fixture
def keyed_service(ui_settings: Settings) -> Iterator[Service]:
    """The API with a full key (``KEY``) and a read-only one (``READ_KEY``)."""
    settings = load_settings(**{**ui_settings.model_dump(), "readonly_api_keys": READ_KEY})
    with (
        serve(settings) as url,
        httpx.Client(
            base_url=url, timeout=15, headers={"Authorization": f"Bearer {KEY}"}
        ) as client,
    ):
        yield Service(url, client)


def test_a_read_only_key_sees_no_cancel_and_no_submit(keyed_service: Service, page: Page) -> None:
    service = keyed_service
    job = service.submit("demo.echo", {"message": "look, don't touch"})

    open_dashboard(page, service.url, f"#/jobs/{job['id']}", key=READ_KEY)
    expect(page.locator("#job-summary")).to_contain_text("CREATED")
    expect(page.locator("#cancel-job")).to_be_hidden()
    expect(page.locator("#read-only")).to_be_visible()

    page.click("nav a[href='#/types']")
    echo = page.locator('section[data-type="demo.echo"]')
    expect(echo.locator(".read-only-notice")).to_contain_text("may only read")
    expect(echo.locator("form")).to_have_count(0)
    expect(page.locator("details.schema").first).to_be_visible()  # reading is all there

    # Another key, another role: the page asks again and offers everything.
    page.click("#forget-key")
    enter_key(page, KEY, expect_message="needs a key")
    expect(page.locator('form[data-type="demo.echo"]')).to_be_visible()
    expect(page.locator("#read-only")).to_be_hidden()
    page.goto(f"{service.url}/ui/#/jobs/{job['id']}")
    cancel = page.locator("#cancel-job")
    expect(cancel).to_be_visible()
    cancel.click()
    expect(page.locator("#job-summary")).to_contain_text("CANCELLED")
    assert service.client.get(f"/jobs/{job['id']}").json()["state"] == "CANCELLED"
