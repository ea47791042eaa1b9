"""The dashboard in a real browser: sign in, live figures, language switch, a customer's page.

Drives the system Chromium headless through Playwright against pytest-django's live server.
Skipped where Playwright or /usr/bin/chromium is not installed, so the suite runs anywhere.
"""

import json
import os
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from browser_support import CHROMIUM, CHROMIUM_ARGS, require_browser

sync_api = require_browser()

from django.contrib.auth import get_user_model  # noqa: E402

from tertulia.core.services import api_key_create, membership_grant, store_create  # noqa: E402
from tertulia.events.services import events_ingest  # noqa: E402

pytestmark = pytest.mark.slow

PASSWORD = "a-long-staff-password"


@pytest.fixture
def shop(transactional_db, settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    store = store_create(slug="cafeteria", name="Cafetería La Tertulia")
    store_create(slug="ajena", name="Tienda Ajena")  # must never show up for this user
    user = get_user_model().objects.create_user("lucia", "lucia@example.com", PASSWORD)
    membership_grant(store=store, user=user, role="owner")
    start = datetime.now(UTC) - timedelta(hours=2)
    events = [
        {"id": "b-profile", "type": "customer_upserted", "occurred_at": start.isoformat(),
         "data": {"customer": {"email": "ana@example.com", "phone": "+34612345678", "first_name": "Ana",
                               "last_name": "García <b>VIP</b>"}}},
        {"id": "b-consent", "type": "consent_changed", "occurred_at": (start + timedelta(minutes=5)).isoformat(),
         "data": {"customer": {"email": "ana@example.com"}, "channel": "email", "status": "subscribed"}},
        {"id": "b-cart", "type": "cart_updated", "occurred_at": (start + timedelta(minutes=10)).isoformat(),
         "data": {"cart_id": "c-1", "customer": {"email": "ana@example.com"}, "currency": "EUR", "total": "24.50",
                  "items": [{"sku": "CAFE-1KG", "quantity": 1, "price": "24.50"}]}},
    ]
    for number in range(6):
        events.append({"id": f"b-other-{number}", "type": "cart_updated", "occurred_at": start.isoformat(),
                       "data": {"cart_id": f"c-o{number}", "customer": {"email": f"p{number}@example.com"},
                                "currency": "EUR", "total": "10.00", "items": [{"sku": "TAZA", "quantity": 1}]}})
    assert events_ingest(store=store, events=events).accepted == len(events)
    return {"store": store, "key": api_key_create(store=store, name="browser test").secret}


@pytest.fixture
def page(live_server, shop, monkeypatch):
    # Playwright's sync API runs an event loop in this thread; the ORM is only used before it starts.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        context = browser.new_context(locale="es-ES", viewport={"width": 1280, "height": 900})
        tab = context.new_page()
        tab.set_default_timeout(15_000)
        errors: list[str] = []
        tab.on("pageerror", lambda error: errors.append(str(error)))
        tab.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
        tab.errors = errors
        yield tab
        context.close()
        browser.close()


def post_event(base_url: str, key: str, event: dict) -> None:
    request = urllib.request.Request(
        f"{base_url}/api/v1/events", data=json.dumps(event).encode(), method="POST",
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200


def test_sign_in_live_overview_language_and_customer_page(page, live_server, shop, tmp_path):
    expect = sync_api.expect
    page.goto(f"{live_server.url}/app/")
    expect(page).to_have_url(f"{live_server.url}/app/login/?next=/app/")
    expect(page.locator("h1")).to_have_text("Inicia sesión en Tertulia")
    shots = Path(os.environ.get("DASHBOARD_SCREENSHOT_DIR", tmp_path))
    page.screenshot(path=str(shots / "login.png"))

    page.fill("#id_username", "lucia")
    page.fill("#id_password", PASSWORD)
    page.click("form.stack button[type=submit]")
    expect(page.locator("h1")).to_have_text("Resumen")
    expect(page.locator("html")).to_have_attribute("lang", "es")
    expect(page.locator("[data-figure=open_carts]")).to_have_text("7")
    expect(page.locator("[data-figure=open_carts_value]")).to_have_text("84,50\u00a0€")
    expect(page.locator("#store-select option")).to_have_count(1)  # only the user's own store
    page.screenshot(path=str(shots / "overview.png"), full_page=True)

    # Live figures: an event posted now appears without reloading the page.
    post_event(live_server.url, shop["key"], {
        "id": "b-live", "type": "cart_updated", "occurred_at": datetime.now(UTC).isoformat(),
        "data": {"cart_id": "c-live", "customer": {"email": "nuevo@example.com"}, "currency": "EUR", "total": "5.00",
                 "items": [{"sku": "TAZA", "quantity": 1}]},
    })
    expect(page.locator("[data-figure=open_carts]")).to_have_text("8", timeout=25_000)
    expect(page.locator("[data-figure=open_carts_value]")).to_have_text("89,50\u00a0€")

    # Language switch.
    page.click(".lang-switch button[value=en]")
    expect(page.locator("h1")).to_have_text("Overview")
    expect(page.locator("html")).to_have_attribute("lang", "en")
    expect(page.locator("[data-figure=open_carts_value]")).to_have_text("€89.50")

    # The customers list, a search, and one person's page with the timeline newest first.
    page.click("nav.mainnav >> text=Customers")
    page.screenshot(path=str(shots / "customers.png"), full_page=True)
    page.fill("#customer-search", "612 345")
    page.click("form.search button")
    person = page.locator("table.table tbody tr")
    expect(person).to_have_count(1)
    person.locator("a").click()
    expect(page.locator("h1")).to_contain_text("Ana García <b>VIP</b>")  # shown as text, not markup
    expect(page.locator("h1 b")).to_have_count(0)
    expect(page.locator(".timeline-item").nth(0)).to_contain_text("Cart updated")
    expect(page.locator(".timeline-item").nth(1)).to_contain_text("Cart c-1")
    events = page.locator(".timeline-item.kind-event")
    expect(events).to_have_count(3)
    expect(events.nth(0)).to_contain_text("Cart updated")
    expect(events.nth(2)).to_contain_text("Profile updated")
    expect(page.locator(".facts").nth(1)).to_contain_text("Subscribed")
    page.screenshot(path=str(shots / "customer.png"), full_page=True)
    page.set_viewport_size({"width": 390, "height": 844})
    page.screenshot(path=str(shots / "customer-narrow.png"), full_page=True)

    # Sign out (a POST form) and land back on the login page.
    page.click("form.signout button")
    expect(page).to_have_url(f"{live_server.url}/app/login/")
    assert page.errors == []
