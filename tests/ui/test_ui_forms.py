"""The catalog's forms: generated from each type's schema, errors shown by their fields,
and whatever the API returns shown as text, never run."""

from __future__ import annotations

import re

from dashboard import KEY, Service, open_dashboard, screenshot
from playwright.sync_api import Page, expect

JOB_PAGE = re.compile(r"#/jobs/[0-9a-f-]{36}$")


def test_the_forms_follow_each_schema(service: Service, page: Page) -> None:
    open_dashboard(page, service.url, "#/types", key=KEY)
    for name in ("demo.echo", "demo.fail", "demo.sleep"):
        expect(page.locator(f'section.type-card[data-type="{name}"]')).to_be_visible()
    sleep = page.locator('form[data-type="demo.sleep"]')
    seconds = sleep.locator('[data-field="seconds"]')
    expect(seconds.locator("input")).to_have_attribute("type", "number")
    expect(seconds.locator("input")).to_have_attribute("step", "any")
    expect(seconds.locator("input")).to_have_value("")
    expect(seconds.locator(".required")).to_be_visible()
    steps = sleep.locator('[data-field="steps"]')
    expect(steps.locator("input")).to_have_attribute("step", "1")
    expect(steps.locator("input")).to_have_value("10")
    expect(steps.locator(".required")).to_have_count(0)
    fail = page.locator('form[data-type="demo.fail"]')
    expect(fail.locator('[data-field="permanent"] input')).to_have_attribute("type", "checkbox")
    expect(fail.locator('[data-field="permanent"] input')).not_to_be_checked()
    expect(fail.locator('[data-field="message"] input')).to_have_value("planned failure")
    # dict | None has no input of its own: it is written as JSON.
    expect(page.locator('form[data-type="demo.echo"] [data-field="data"] textarea')).to_be_visible()
    schema = page.locator('section[data-type="demo.sleep"] details.schema')
    schema.locator("summary").click()
    expect(schema.locator("pre")).to_contain_text('"seconds"')
    screenshot(page, "catalog")


def test_payload_errors_show_by_their_fields(service: Service, page: Page) -> None:
    open_dashboard(page, service.url, "#/types/demo.sleep", key=KEY)
    form = page.locator('form[data-type="demo.sleep"]')
    form.locator('[data-field="seconds"] input').fill("-1")
    form.locator('[data-field="steps"] input').fill("0")
    form.locator("button[type=submit]").click()
    expect(form.locator('[data-field="seconds"] .field-error')).to_contain_text(
        "greater than or equal to 0"
    )
    expect(form.locator('[data-field="steps"] .field-error')).to_contain_text(
        "greater than or equal to 1"
    )
    expect(form.locator(".form-errors")).to_contain_text("payload.seconds")
    expect(form.locator(".form-errors")).to_contain_text("payload.steps")
    screenshot(page, "form-errors")

    # A required field left empty: the server names it, by the field.
    form.locator('[data-field="seconds"] input').fill("")
    form.locator('[data-field="steps"] input').fill("2")
    form.locator("button[type=submit]").click()
    expect(form.locator('[data-field="seconds"] .field-error')).to_have_text("Field required")
    expect(form.locator('[data-field="steps"] .field-error')).to_be_empty()
    # So does an option out of the API's range.
    form.locator('[data-field="seconds"] input').fill("1")
    form.locator('[data-field="max_attempts"] input').fill("0")
    form.locator("button[type=submit]").click()
    expect(form.locator('[data-field="max_attempts"] .field-error')).to_contain_text(
        "greater than or equal to 1"
    )

    # JSON that does not parse never leaves the browser.
    page.goto(f"{service.url}/ui/#/types/demo.echo")
    echo = page.locator('form[data-type="demo.echo"]')
    echo.locator('[data-field="message"] input').fill("hi")
    echo.locator('[data-field="data"] textarea').fill("{not json")
    echo.locator("button[type=submit]").click()
    expect(echo.locator('[data-field="data"] .field-error')).to_contain_text("not valid JSON")

    assert service.client.get("/jobs").json()["items"] == []
    assert page.url.endswith("#/types/demo.echo")


def test_what_the_api_returns_is_shown_as_text(service: Service, page: Page) -> None:
    hostile = "<img src=x onerror=window.pwned=1><script>window.pwned=2</script>"
    open_dashboard(page, service.url, "#/types/demo.echo", key=KEY)
    form = page.locator('form[data-type="demo.echo"]')
    form.locator('[data-field="message"] input').fill(hostile)
    form.locator('[data-field="data"] textarea').fill('{"html": "<b>bold</b>", "n": [1, 2]}')
    form.locator('[data-field="max_attempts"] input').fill("1")
    form.locator("button[type=submit]").click()
    expect(page).to_have_url(JOB_PAGE)
    job_id = page.url.rsplit("/", 1)[1]

    payload = page.locator("#job-payload pre")
    expect(payload).to_contain_text(hostile)
    expect(payload).to_contain_text('"html": "<b>bold</b>"')
    assert page.locator("#view img, #view script, #view b").count() == 0
    assert page.evaluate("window.pwned") is None
    job = service.client.get(f"/jobs/{job_id}").json()
    assert job["payload"] == {"message": hostile, "data": {"html": "<b>bold</b>", "n": [1, 2]}}
    assert job["max_attempts"] == 1
