"""The example project's landing page in a real browser: two users in two
browser contexts edit the demo document through docsync (uvicorn, SQLite).

Uses Debian's chromium through playwright's Python driver (never a browser
download of its own); skips without them, fails in CI.
"""

from __future__ import annotations

import os
import shutil

import pytest

from tests.liveserver import LiveServer, manage
from tests.services import _skip_or_fail

pytestmark = [pytest.mark.e2e]

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
TEXT = "[data-text]"
READY = "[data-text]:not([disabled])"


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _skip_or_fail("playwright (pip) is needed to drive chromium")
    if not shutil.which(CHROMIUM):
        _skip_or_fail(f"chromium is needed at {CHROMIUM} (apt-get install chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    db = tmp_path_factory.mktemp("demo") / "db.sqlite3"
    env = {"DATABASE_URL": f"sqlite:///{db}", "DJANGO_DEBUG": "1"}
    settings = "docsync_project.settings"
    manage("migrate", "-v", "0", env=env, settings=settings)
    server = LiveServer(
        env=env, server="uvicorn", app="docsync_project.asgi:application", settings=settings
    ).start()
    yield server
    server.stop()


def open_page(browser, url):
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    page = context.new_page()
    page.errors = []
    page.on("pageerror", lambda error: page.errors.append(str(error)))
    page.goto(url)
    return page


def join(page, name):
    page.fill("#guest-name", name)
    page.click("text=Join the demo as a guest")
    page.wait_for_selector(READY, timeout=10_000)


def wait_text(page, text):
    page.wait_for_function(
        "text => document.querySelector('[data-text]').value === text", arg=text, timeout=10_000
    )


def test_two_windows_edit_one_document(browser, site):
    alice = open_page(browser, f"{site.url}/")
    # Not signed in: the demo's connection is refused with the server's message.
    alice.wait_for_selector("[data-status][data-kind=error]")
    assert alice.inner_text("[data-status]") == (
        "connection refused: Authentication failed: invalid credentials"
    )
    assert alice.is_disabled(TEXT)
    for link in ("/admin/", "/docs/"):
        assert alice.locator(f"header a[href='{link}']").count() == 1
    assert "docsync is running" in alice.inner_text("h1")

    join(alice, "alice")
    bob = open_page(browser, f"{site.url}/")
    join(bob, "bob")
    assert alice.inner_text("[data-status]").startswith("connected as alice")
    assert bob.inner_text("[data-status]").startswith("connected as bob")

    alice.click(TEXT)
    alice.keyboard.type("Hello from Alice.")
    wait_text(bob, "Hello from Alice.")
    bob.click(TEXT)
    bob.keyboard.press("End")
    bob.keyboard.type(" And Bob.")
    wait_text(alice, "Hello from Alice. And Bob.")

    # Presence: each sees the other by name, with a caret in the text.
    bob_item = alice.locator("[data-peers] li[data-peer]", has_text="bob")
    bob_item.wait_for(timeout=10_000)
    alice.wait_for_function(
        "() => document.querySelector('[data-peers]').innerText.includes('bob is editing at"
        " character 26')",
        timeout=10_000,
    )
    assert alice.locator("[data-mirror] .caret .label", has_text="bob").count() == 1
    bob.locator("[data-peers] li[data-peer]", has_text="alice").wait_for(timeout=10_000)

    # A reload brings the text back from the server, and presence comes back.
    alice.reload()
    alice.wait_for_selector(READY, timeout=10_000)
    wait_text(alice, "Hello from Alice. And Bob.")
    bob.locator("[data-peers] li[data-peer]", has_text="alice").wait_for(timeout=10_000)
    alice.locator("[data-peers] li[data-peer]", has_text="bob").wait_for(timeout=10_000)
    # Closing a window removes its presence from the other.
    alice.context.close()
    bob.locator("[data-peers] li[data-peer]").wait_for(state="detached", timeout=10_000)
    bob.click(TEXT)
    bob.keyboard.press("End")
    bob.keyboard.type("!")
    bob.wait_for_selector("[data-sync-state=saved]", timeout=10_000)
    assert bob.inner_text("[data-saved]") == "saved"
    assert bob.errors == []
    bob.context.close()

    # The text is stored: a third user opens the page later and reads it.
    carol = open_page(browser, f"{site.url}/")
    join(carol, "carol")
    wait_text(carol, "Hello from Alice. And Bob.!")
    assert carol.inner_text("[data-clock]") != "0"
    carol.context.close()


def test_guest_names_are_new_accounts_only(browser, site):
    page = open_page(browser, f"{site.url}/")
    join(page, "dora")
    page.context.close()
    again = open_page(browser, f"{site.url}/")
    again.fill("#guest-name", "dora")
    again.click("text=Join the demo as a guest")
    assert again.inner_text(".join .error") == "'dora' is taken: pick another name."
    assert again.locator("header .who").count() == 0  # not signed in as dora
    again.context.close()


def test_docs_pages_render(browser, site):
    page = open_page(browser, f"{site.url}/")
    page.click("text=Read the docs")
    assert page.url == f"{site.url}/docs/"
    assert page.locator("article.markdown h1").count() == 1
    page.context.close()
