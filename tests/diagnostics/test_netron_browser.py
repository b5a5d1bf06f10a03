"""Netron reporter in a real browser: headless Chromium finds the flagged node by name.

Needs Debian's `chromium` (/usr/bin/chromium, or $CHROMIUM) and Playwright's Python package,
pointed at that browser (no `playwright install`). `SUBGRAFT_SCREENSHOT=docs/netron_frozen_
reshape.png` also writes the screenshot in docs/examples.md.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

import diagnostics
from diagnostics.view.netron import find_query, open_in_netron

CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
RENDER_TIMEOUT_MS = 60_000

sync_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright not installed (pip install playwright)"
)
pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).is_file(), reason=f"no chromium at {CHROMIUM} (apt-get install chromium)"
)


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield chromium
        chromium.close()


def _open(browser, url: str):
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    # Netron asks for cookie consent when it cannot tell the country (offline): pre-answer.
    context.add_cookies([{"name": "consent", "value": "1", "url": url}])
    page = context.new_page()
    page.goto(url)
    page.wait_for_selector("#canvas .graph-node", timeout=RENDER_TIMEOUT_MS)
    # Nodes are drawn before the view is ready for commands; then the body says 'default'.
    page.wait_for_selector("body.default", timeout=RENDER_TIMEOUT_MS)
    return page


def _find(page, name: str):
    """Netron's own find: Ctrl+F, type the quoted name, the matching entries of the list."""
    for _ in range(20):  # a keypress can land before the page has focus: try again
        page.keyboard.press("Control+F")
        if page.locator("#search").is_visible():
            break
        page.wait_for_timeout(250)
    page.wait_for_selector("#search", timeout=5_000)
    page.fill("#search", find_query(name))
    items = page.locator(".sidebar-find-content li")
    items.first.wait_for(timeout=5_000)
    # Netron replaces window.eval, which Playwright's all_* helpers use: read one by one.
    return [items.nth(i).inner_text() for i in range(items.count())], items


def test_browser_finds_the_flagged_node_and_shows_its_finding(browser, tiny, tmp_path):
    report = diagnostics.check(tiny("attention-ints"))
    node = report.findings[0].node
    with open_in_netron(report, browse=False, directory=tmp_path / "served") as view:
        page = _open(browser, view.url)
        assert page.locator("#canvas .graph-node").count() > 100
        found, items = _find(page, node)
        assert found == [node]  # the quoted name matches that node and nothing else
        items.first.click()  # select and scroll to it
        items.first.dblclick()  # open its properties
        text = _sidebar_text(page, "NODE PROPERTIES")
        assert node in text
        assert "subgraft finding #0: frozen-shape" in text  # the doc string
        assert "2 = export batch; 8 = export sequence" in text  # the metadata_props
        shot = tmp_path / "netron_frozen_node.png"
        page.screenshot(path=str(shot))
        assert shot.stat().st_size > 10_000
        if os.environ.get("SUBGRAFT_SCREENSHOT"):
            _save_docs_screenshot(page, Path(os.environ["SUBGRAFT_SCREENSHOT"]))
        page.context.close()


def test_browser_renders_the_neighbourhood_with_the_frozen_node(browser, tiny, tmp_path):
    report = diagnostics.check(tiny("attention-ints"))
    with open_in_netron(report, browse=False, directory=tmp_path / "served") as view:
        page = _open(browser, view.focus_url)
        # Netron draws a Constant inside the node that reads it (the frozen [2, 8, 4, 16]).
        drawn = view.neighbourhood_nodes - 1
        assert page.locator("#canvas .graph-node").count() == drawn
        found, _ = _find(page, view.focus)
        assert found == [view.focus]
        page.screenshot(path=str(tmp_path / "netron_neighbourhood.png"))
        page.context.close()


def _sidebar_text(page, title: str) -> str:
    for _ in range(50):
        text = page.locator(".sidebar").first.inner_text()
        if title in text:
            return text
        page.wait_for_timeout(100)
    raise AssertionError(f"the sidebar never showed {title!r}: {text[:200]!r}")


def _save_docs_screenshot(page, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path))
    try:  # palette PNG: the docs image stays well under 300 KB
        from PIL import Image
    except ImportError:
        return
    Image.open(path).convert("RGB").quantize(colors=64).save(path, optimize=True)
