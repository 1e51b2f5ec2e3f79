"""The plugin load report in the browser."""

from __future__ import annotations

from dashboard import KEY, Service, open_dashboard, screenshot
from playwright.sync_api import Page, expect

from orchestrator_core import load_plugins


def test_the_plugin_report_lists_demo_and_its_types(service: Service, page: Page) -> None:
    skipped = sorted(info.name for info in load_plugins().report.loaded if info.name != "demo")
    open_dashboard(page, service.url, "#/plugins", key=KEY)
    demo = page.locator('#plugins-loaded tr[data-plugin="demo"]')
    expect(demo).to_contain_text("orchestrator-demo")
    expect(demo).to_contain_text("orchestrator_demo.plugin")
    for name in ("demo.echo", "demo.fail", "demo.sleep"):
        expect(demo.get_by_role("link", name=name)).to_be_visible()
    expect(page.locator("#plugin-counts")).to_have_text(
        f"1 loaded, 0 failed, {len(skipped)} skipped"
    )
    for name in skipped:
        expect(page.locator("#plugins-skipped")).to_contain_text(name)
    screenshot(page, "plugins")

    demo.get_by_role("link", name="demo.sleep").click()
    expect(page.locator('form[data-type="demo.sleep"]')).to_be_visible()
    expect(page.locator("section.type-card")).to_have_count(1)
