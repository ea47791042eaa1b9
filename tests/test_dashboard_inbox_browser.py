"""The inbox in a real browser: an e-mail heard, answered with the keyboard and a canned reply, received over SMTP.

The agent opens the inbox with j/o, picks a canned reply with c, sends it (Ctrl+Enter); the dispatcher
then sends the delivery to the aiosmtpd server of tests/fakes/smtp.py, which must receive it threaded
under the person's message (In-Reply-To). A second agent in another browser context sees the first one
viewing and writing; the conversation is resolved with e. The person's words carry <script> and onerror
payloads that must run nowhere.

Drives the system Chromium headless through Playwright against pytest-django's live server; skipped where
Playwright or /usr/bin/chromium is missing.
"""

import email
import email.policy
import os
import re
from datetime import timedelta
from pathlib import Path

import pytest
from browser_support import CHROMIUM, CHROMIUM_ARGS, require_browser

sync_api = require_browser()

from django.contrib.auth import get_user_model  # noqa: E402
from django.test import override_settings  # noqa: E402
from django.utils import timezone  # noqa: E402
from fakes.smtp import SmtpServer  # noqa: E402

from tertulia.channels.adapters.email import connections_close  # noqa: E402
from tertulia.channels.dispatch import dispatch_run  # noqa: E402
from tertulia.channels.models import Delivery  # noqa: E402
from tertulia.channels.registry import adapters_forget  # noqa: E402
from tertulia.core.services import membership_grant, store_create  # noqa: E402
from tertulia.inbox.models import Message  # noqa: E402
from tertulia.inbox.services import canned_reply_set  # noqa: E402
from tertulia.listening.connectors import Post  # noqa: E402
from tertulia.listening.selectors import matchers_forget  # noqa: E402
from tertulia.listening.services import mentions_ingest  # noqa: E402

pytestmark = pytest.mark.slow

PASSWORD = "a-long-staff-password"
# Each payload sets window.__pwned (and opens a dialog) if it ever runs.
SUBJECT = 'Mi pedido <img src=x onerror="window.__pwned=1;alert(1)">'
TEXT = ("Hola, ¿dónde está mi pedido? <script>window.__pwned=2;alert(2)</script>\n"
        'Lo pedí el lunes <img src=x onerror="window.__pwned=3"> y no ha llegado.')
CANNED = "Hola Ana García, soy Lucía de Cafetería La Tertulia: tu pedido ya está en camino."


@pytest.fixture
def shop(transactional_db, settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    matchers_forget()
    adapters_forget()
    store = store_create(slug="cafeteria", name="Cafetería La Tertulia")
    for username, first_name in (("lucia", "Lucía"), ("marta", "Marta")):
        user = get_user_model().objects.create_user(username, f"{username}@tienda.example", PASSWORD,
                                                    first_name=first_name)
        membership_grant(store=store, user=user, role="agent")
    canned_reply_set(store=store, shortcut="pedido", title="Pedido en camino",
                     body_es="Hola {{ customer_name }}, soy {{ agent_name }} de {{ store_name }}: tu pedido ya está "
                             "en camino.",
                     body_en="Hi {{ customer_name }}, this is {{ agent_name }} from {{ store_name }}: your order is "
                             "on its way.")
    result = mentions_ingest(store_id=store.pk, posts=[Post(
        network="email", kind="direct", external_id="<m1@example.com>", author_handle="ana@example.com",
        author_name="Ana García", title=SUBJECT, text=TEXT, posted_at=timezone.now() - timedelta(minutes=5))])
    assert result.stored == 1
    conversation = Message.objects.for_store(store).get(external_id="<m1@example.com>").conversation
    yield {"store": store, "conversation": conversation}
    connections_close()
    adapters_forget()
    matchers_forget()


@pytest.fixture
def browser(live_server, shop, monkeypatch):
    # Playwright's sync API runs an event loop in this thread; Django's ORM may still be used between steps.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


def open_tab(browser, base_url: str, username: str):
    context = browser.new_context(locale="es-ES", viewport={"width": 1280, "height": 900})
    tab = context.new_page()
    tab.set_default_timeout(15_000)
    tab.errors, tab.dialogs = [], []
    tab.on("pageerror", lambda error: tab.errors.append(str(error)))
    tab.on("console", lambda message: tab.errors.append(message.text) if message.type == "error" else None)

    def on_dialog(dialog):
        tab.dialogs.append(dialog.message)
        dialog.dismiss()

    tab.on("dialog", on_dialog)
    tab.add_init_script("window.__pwned = 0;")
    tab.goto(f"{base_url}/app/login/?next=/app/inbox/")
    tab.fill("#id_username", username)
    tab.fill("#id_password", PASSWORD)
    tab.click("form.stack button[type=submit]")
    sync_api.expect(tab.locator("h1")).to_have_text("Bandeja de entrada")
    return context, tab


def untouched(tab) -> None:
    assert tab.evaluate("window.__pwned") == 0
    assert tab.dialogs == []
    assert tab.locator('main img, main script:not([type="application/json"])').count() == 0


def test_an_email_answered_with_the_keyboard_and_a_canned_reply_arrives_over_smtp(browser, live_server, shop, tmp_path):
    expect = sync_api.expect
    shots = Path(os.environ.get("DASHBOARD_SCREENSHOT_DIR", tmp_path))
    conversation = shop["conversation"]
    url = f"{live_server.url}/app/inbox/{conversation.pk}/"
    first_context, lucia = open_tab(browser, live_server.url, "lucia")

    # The list: the hostile subject is text; j shows the current row, o opens it.
    row = lucia.locator(f'.inbox-row[data-conversation="{conversation.pk}"]')
    expect(row.locator(".inbox-open")).to_have_text(SUBJECT)
    untouched(lucia)
    lucia.keyboard.press("j")
    expect(row).to_have_class(re.compile(r"\bis-current\b"))
    lucia.keyboard.press("o")
    expect(lucia).to_have_url(f"{url}?back=view%3Dopen")  # the list it came from, for u
    expect(lucia.locator("#conv-title")).to_have_text(SUBJECT)
    expect(lucia.locator(".msg-inbound .msg-text")).to_have_text(TEXT)
    untouched(lucia)

    # A second agent opens it too: each is told about the other.
    second_context, marta = open_tab(browser, live_server.url, "marta")
    marta.goto(url)
    expect(marta.locator("#inbox-presence")).to_have_text("Lucía también está viendo esta conversación")
    expect(lucia.locator("#inbox-presence")).to_have_text("Marta también está viendo esta conversación",
                                                          timeout=25_000)
    expect(lucia.locator("#inbox-presence")).to_have_attribute("aria-live", "polite")

    # c opens the canned replies; Enter takes the first, written for this conversation in its language.
    lucia.keyboard.press("c")
    expect(lucia.locator("#inbox-canned")).to_be_visible()
    expect(lucia.locator("#canned-filter")).to_be_focused()
    lucia.keyboard.type("pedido")
    lucia.keyboard.press("Enter")
    expect(lucia.locator("#inbox-canned")).to_be_hidden()
    expect(lucia.locator("#reply-text")).to_have_value(CANNED)
    expect(lucia.locator("#reply-text")).to_be_focused()
    expect(lucia.locator("#reply-count")).to_have_text(f"{len(CANNED)} / 20000")
    expect(marta.locator("#inbox-presence")).to_have_text("Lucía está escribiendo una respuesta", timeout=25_000)
    lucia.screenshot(path=str(shots / "inbox-conversation.png"), full_page=True)
    untouched(marta)
    assert marta.errors == []
    second_context.close()

    # Ctrl+Enter sends; the reply waits for the dispatcher.
    lucia.keyboard.press("Control+Enter")
    expect(lucia.locator(".notice-ok")).to_have_text("Respuesta en camino.")
    expect(lucia.locator(".msg-outbound .msg-text")).to_have_text(CANNED)
    expect(lucia.locator(".msg-outbound [data-delivery]")).to_have_attribute("data-delivery", "scheduled")
    lucia.goto("about:blank")  # no request in flight while this thread uses the database

    with SmtpServer() as smtp, override_settings(EMAIL_URL=f"smtp://127.0.0.1:{smtp.port}",
                                                 DEFAULT_FROM_EMAIL="Cafetería <hola@tienda.example>"):
        assert dispatch_run(worker="t") == 1
        received = list(smtp.handler.messages)
    assert len(received) == 1 and received[0]["rcpt_tos"] == ["ana@example.com"]
    got = email.message_from_bytes(received[0]["data"], policy=email.policy.default)
    assert got["In-Reply-To"] == "<m1@example.com>"
    assert "<m1@example.com>" in got["References"]
    assert got["Subject"] == f"Re: {SUBJECT}"
    assert got.get_body(("plain",)).get_content().strip() == CANNED
    assert Delivery.objects.for_store(shop["store"]).get().status == "sent"

    # Back on the page: sent; e resolves.
    lucia.goto(url)
    expect(lucia.locator(".msg-outbound [data-delivery]")).to_have_attribute("data-delivery", "sent")
    lucia.keyboard.press("e")
    expect(lucia.locator(".conv-status")).to_have_attribute("data-status", "resolved")
    expect(lucia.locator(".notice-ok")).to_have_text("Conversación resuelta.")
    lucia.keyboard.press("?")
    expect(lucia.locator("#inbox-help")).to_be_visible()
    lucia.keyboard.press("?")
    expect(lucia.locator("#inbox-help")).to_be_hidden()
    lucia.keyboard.press("u")
    expect(lucia.locator("h1")).to_have_text("Bandeja de entrada")
    untouched(lucia)
    assert lucia.errors == []
    first_context.close()
