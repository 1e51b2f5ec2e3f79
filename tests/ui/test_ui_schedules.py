"""The schedules page in the browser: the list with next and last runs and a link to the
last job, pause and resume, and the form that adds a schedule."""

from __future__ import annotations

import re
from datetime import timedelta

import redis
from dashboard import KEY, Service, open_dashboard, screenshot
from playwright.sync_api import Locator, Page, expect

from orchestrator_core import Settings
from orchestrator_core.store.keys import Keys
from orchestrator_core.store.schedules import ScheduleStore

JOB_PAGE = re.compile(r"#/jobs/[0-9a-f-]{36}$")


def schedule_row(page: Page, name: str) -> Locator:
    return page.locator(f'#schedules-table tr[data-schedule="{name}"]')


def test_a_fired_schedule_links_to_its_job_and_pauses_and_resumes(
    system: Service, page: Page, ui_settings: Settings, redis_client: redis.Redis
) -> None:
    created = system.client.post(
        "/schedules",
        json={
            "name": "minutely",
            "cron": "* * * * *",
            "type": "demo.echo",
            "payload": {"message": "from the schedule"},
        },
    )
    assert created.status_code == 201, created.text
    # As if made a while ago: the minute just gone is due, and the worker fires it.
    store = ScheduleStore(redis_client, Keys(ui_settings.prefix))
    store.update(
        "minutely", lambda s: s.model_copy(update={"armed_at": store.now() - timedelta(minutes=5)})
    )
    open_dashboard(page, system.url, "#/schedules", key=KEY)
    row = schedule_row(page, "minutely")
    expect(row).to_contain_text("* * * * *")
    expect(row).to_contain_text("demo.echo")
    expect(row.locator(".status")).to_have_text("active")
    link = row.locator(".last-job a")
    expect(link).to_be_visible(timeout=20_000)  # shown by the page's own refresh
    job_id = link.inner_text()
    assert system.client.get("/schedules/minutely").json()["last_job_id"] == job_id
    expect(row.locator(".last-run time")).to_be_visible()
    expect(row.locator(".next-run time")).to_be_visible()
    screenshot(page, "schedules")

    row.locator("button.toggle-schedule").click()
    expect(row.locator(".status")).to_have_text("paused")
    expect(row.locator(".next-run")).to_have_text("paused")
    expect(row.locator("button.toggle-schedule")).to_have_text("Resume")
    assert system.client.get("/schedules/minutely").json()["enabled"] is False
    row.locator("button.toggle-schedule").click()
    expect(row.locator(".status")).to_have_text("active")
    expect(row.locator("button.toggle-schedule")).to_have_text("Pause")
    assert system.client.get("/schedules/minutely").json()["enabled"] is True

    link.click()
    expect(page).to_have_url(JOB_PAGE)
    assert page.url.endswith(job_id)
    job = system.wait(job_id, lambda j: j["state"] == "COMPLETED")
    assert job["schedule"] == "minutely"


def test_the_form_adds_a_schedule_and_shows_errors_by_their_fields(
    service: Service, page: Page
) -> None:
    open_dashboard(page, service.url, "#/schedules", key=KEY)
    expect(page.locator("#schedules-table")).to_contain_text("No schedules yet.")
    form = page.locator("#schedule-form")
    form.locator("#schedule-name").fill("nightly")
    form.locator("#schedule-cron").fill("0 3 * *")
    form.locator("#schedule-timezone").fill("Europe/Berlin")
    form.locator("#schedule-type").select_option("demo.echo")
    form.locator("#schedule-payload").fill('{"message": 5}')
    form.locator("button[type=submit]").click()
    expect(form.locator('[data-field="cron"] .field-error')).to_contain_text("5 fields")
    expect(form.locator('[data-field="payload"] .field-error')).to_have_count(1)
    expect(form.locator(".form-errors")).to_contain_text("cron")

    form.locator("#schedule-cron").fill("0 3 * * *")
    form.locator("button[type=submit]").click()
    expect(form.locator('[data-field="payload"] .field-error')).to_contain_text("valid string")
    expect(form.locator('[data-field="cron"] .field-error')).to_be_empty()

    form.locator("#schedule-payload").fill("{not json")
    form.locator("button[type=submit]").click()
    expect(form.locator('[data-field="payload"] .field-error')).to_contain_text("not valid JSON")

    form.locator("#schedule-payload").fill('{"message": "good night"}')
    form.locator("#schedule-priority").fill("5")
    form.locator("button[type=submit]").click()
    row = schedule_row(page, "nightly")
    expect(row).to_contain_text("0 3 * * *")
    expect(row).to_contain_text("Europe/Berlin")
    expect(row.locator(".next-run time")).to_be_visible()
    expect(row.locator(".last-job")).to_have_text("—")
    stored = service.client.get("/schedules/nightly").json()
    assert stored["payload"] == {"message": "good night", "data": None}
    assert (stored["timezone"], stored["priority"], stored["enabled"]) == ("Europe/Berlin", 5, True)
    expect(form.locator("#schedule-name")).to_have_value("")

    # A taken name: the API's answer, shown in the form.
    form.locator("#schedule-name").fill("nightly")
    form.locator("#schedule-cron").fill("0 4 * * *")
    form.locator("#schedule-payload").fill('{"message": "again"}')
    form.locator("button[type=submit]").click()
    expect(form.locator(".form-errors")).to_contain_text("409")
    expect(page.locator("#schedules-table tbody tr")).to_have_count(1)
