"""Editing a journey in a real browser: the live preview follows the typing in both languages, shows the
same errors as saving, runs no script from a message, and a good edit is saved.

System Chromium through Playwright against the live server; skipped where either is missing.
"""

import os
import re
from pathlib import Path

import pytest
from browser_support import CHROMIUM, CHROMIUM_ARGS, require_browser

sync_api = require_browser()

from django.contrib.auth import get_user_model  # noqa: E402

from tertulia.core.services import membership_grant, store_create  # noqa: E402
from tertulia.journeys.models import Journey  # noqa: E402

pytestmark = pytest.mark.slow
PASSWORD = "a-long-staff-password"


@pytest.fixture
def shop(transactional_db, settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    store = store_create(slug="cafeteria", name="Cafetería La Tertulia")
    user = get_user_model().objects.create_user("lucia", "lucia@example.com", PASSWORD)
    membership_grant(store=store, user=user, role="manager")
    return store


@pytest.fixture
def page(live_server, shop, monkeypatch):
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        context = browser.new_context(locale="es-ES", viewport={"width": 1280, "height": 900})
        tab = context.new_page()
        tab.set_default_timeout(15_000)
        errors: list[str] = []
        tab.on("pageerror", lambda error: errors.append(str(error)))
        tab.errors = errors
        dialogs: list[str] = []
        tab.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
        tab.dialogs = dialogs
        yield tab
        context.close()
        browser.close()


def test_edit_with_live_preview(page, live_server, shop, tmp_path):
    expect = sync_api.expect
    page.goto(f"{live_server.url}/app/login/?next=/app/journeys/")
    page.fill("#id_username", "lucia")
    page.fill("#id_password", PASSWORD)
    page.click("form.stack button[type=submit]")
    expect(page.locator("h1")).to_have_text("Recorridos")
    page.click("a[href='/app/journeys/abandoned_cart/']")
    expect(page.locator("h1")).to_have_text("Carrito abandonado")

    english = page.locator('[data-preview="0-en"]')
    spanish = page.locator('[data-preview="0-es"]')
    # Typing in the English subject shows up in the English preview only, escaped, without saving.
    page.fill("input[name='step-0-en-subject']", "Still thinking, {{ first_name }}? <img src=x onerror=alert(1)>")
    expect(english.locator(".preview-subject")).to_contain_text("Still thinking", timeout=10_000)
    expect(english.locator(".preview-subject")).to_contain_text("<img src=x onerror=alert(1)>")
    expect(spanish.locator(".preview-subject")).not_to_contain_text("Still thinking")

    # A script in the HTML never runs inside the preview frame.
    html = page.locator("textarea[name='step-0-en-html']")
    html.fill(html.input_value() + "<script>alert('boom')</script>")
    frame = english.locator("iframe.preview-html")
    expect(frame).to_have_attribute("sandbox", "")
    expect(frame).to_have_attribute("srcdoc", re.compile("boom"))

    # An unknown variable in the Spanish text: the preview shows the problem, as saving would.
    page.fill("textarea[name='step-0-es-text']", "Hola {{ variable_desconocida }}")
    expect(spanish.locator(".preview-errors li")).to_have_count(1, timeout=10_000)
    expect(spanish.locator(".preview-errors")).to_contain_text("variable_desconocida")
    shots = Path(os.environ.get("DASHBOARD_SCREENSHOT_DIR", tmp_path))
    page.screenshot(path=str(shots / "journey-edit.png"), full_page=True)
    page.click("button[value=save]")
    expect(page.locator("#edit-errors")).to_contain_text("steps[0].templates")
    assert Journey.objects.get(store=shop, key="abandoned_cart").version == 1

    # Fixed: saved as version 2 with the new delay.
    page.fill("textarea[name='step-0-es-text']", "Hola {{ first_name }}, tu carrito te espera: {{ recovery_url }}\n"
                                                 "Darte de baja: {{ unsubscribe_url }}")
    page.fill("input[name='step-0-delay_value']", "45")
    page.select_option("select[name='step-0-delay_unit']", "minutes")
    page.click("button[value=save]")
    expect(page.locator(".notice-ok")).to_be_visible()
    saved = Journey.objects.get(store=shop, key="abandoned_cart")
    assert saved.version == 2 and saved.definition["steps"][0]["delay_seconds"] == 2700
    assert page.dialogs == []  # no alert() ever ran
    assert page.errors == []
