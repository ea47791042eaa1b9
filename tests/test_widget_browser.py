"""The reviews widget and the moderation queue in a real browser, against the real app on a live server.

- Hostile reviews (`<script>`, `onerror=`, `javascript:` in title, text and name) never run, in the
  widget or in the queue, and show as the literal text they are.
- The walk: a verified buyer writes a review through the signed review link, sees it held with its
  reason (the default policy, a coarse word), a moderator approves it in the queue with the keyboard,
  and it shows in the widget with the verified badge.
- The review form can be filled and sent with the keyboard only.
- A page on the store's own site (another origin) embeds the widget with one script tag; a review
  with a photo goes through CORS and comes back with the photo and its alt text.
- Rating filter, sort and "show more" follow the API's aggregate and cursor.

Drives /usr/bin/chromium headless through Playwright; skipped where either is missing.
"""

import io
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from browser_support import CHROMIUM, CHROMIUM_ARGS, require_browser

sync_api = require_browser()

from django.contrib.auth import get_user_model  # noqa: E402
from django.core.cache import cache  # noqa: E402

from tertulia.commerce.models import Order  # noqa: E402
from tertulia.core.services import membership_grant, store_create  # noqa: E402
from tertulia.events.services import events_ingest  # noqa: E402
from tertulia.journeys.links import review_token_make  # noqa: E402
from tertulia.moderation.services import policy_update, reason_message  # noqa: E402

pytestmark = pytest.mark.slow

PASSWORD = "a-long-staff-password"
SKU = "CAFE-1KG"

# Each payload sets window.__pwned and opens a dialog if it ever runs.
PAYLOADS = [
    {"title": "<script>window.__pwned=1;alert('t')</script>",
     "text": "Buen café <script>window.__pwned=2;alert('x')</script> de verdad, muy aromático",
     "name": "<script>window.__pwned=3</script>"},
    {"title": "<img src=x onerror=\"window.__pwned=4;alert(1)\">",
     "text": "Tostado medio <img src=x onerror=\"window.__pwned=5;alert(2)\"> y buen aroma para el desayuno",
     "name": "<svg onload=\"window.__pwned=6\">"},
    {"title": "<a href=\"javascript:window.__pwned=7\">clic</a>",
     "text": "El café llegó bien. javascript:window.__pwned=8 <a href=\"javascript:alert(3)\">mira</a>",
     "name": "javascript:alert(4)"},
]


def _hold_for_people(store) -> None:
    """Make the store's policy send every submission to a person, so the queue has something to decide."""
    policy_update(store=store, changes={"premoderate": True}, changed_by="widget tests")


@pytest.fixture
def shop(transactional_db, settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    cache.clear()  # rate-limit windows and cached reviews outlive a test's database
    store = store_create(slug="cafeteria", name="Cafetería La Tertulia")
    moment = datetime.now(UTC) - timedelta(days=10)
    events = [
        {"id": "p1", "type": "product_upserted", "occurred_at": moment.isoformat(),
         "data": {"sku": SKU, "title": "Café de Colombia en grano 1 kg", "price": "24.50", "currency": "EUR",
                  "description": "Tueste medio, notas de chocolate."}},
        {"id": "o1", "type": "order_placed", "occurred_at": (moment + timedelta(hours=1)).isoformat(),
         "data": {"order_id": "A-100", "customer": {"email": "ana@example.com", "first_name": "Ana"},
                  "items": [{"sku": SKU, "quantity": 1, "price": "24.50"}], "total": "24.50", "currency": "EUR"}},
        {"id": "o1-d", "type": "order_delivered", "occurred_at": (moment + timedelta(days=3)).isoformat(),
         "data": {"order_id": "A-100"}},
    ]
    assert events_ingest(store=store, events=events).accepted == len(events)
    user = get_user_model().objects.create_user("moderadora", "mod@example.com", PASSWORD)
    membership_grant(store=store, user=user, role="moderator")
    order = Order.objects.for_store(store).get(external_id="A-100")
    token = review_token_make(store_id=store.pk, order_id=order.pk, customer_id=order.customer_id)
    yield {"store": store, "token": token}
    cache.clear()


@pytest.fixture
def premoderated(shop):
    # Everything that would publish goes to a person first, so every payload reaches the queue.
    _hold_for_people(shop["store"])
    return shop


@pytest.fixture
def browser(live_server, shop, monkeypatch):
    # Playwright's sync API runs an event loop in this thread; the ORM is only used before it starts
    # (a connection opened inside it is never closed), so data fixtures come before this one.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


def new_page(browser, locale="es-ES"):
    context = browser.new_context(locale=locale, viewport={"width": 1100, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15_000)
    page.dialogs = []
    page.errors = []

    def on_dialog(dialog):
        page.dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    page.on("pageerror", lambda error: page.errors.append(str(error)))
    page.add_init_script("window.__pwned = 0;")
    return page


def assert_nothing_ran(page):
    assert page.evaluate("window.__pwned") == 0
    assert page.dialogs == []


def write_review(page, *, rating: int, title: str, text: str, name: str):
    widget = page.locator("tertulia-reviews")
    widget.get_by_role("button", name="Escribe una opinión").click()
    form = widget.locator("form.write")
    form.locator(".rate label").nth(rating - 1).click()  # the stars are the labels of hidden radios
    form.locator("input[name=title]").fill(title)
    form.locator("textarea[name=text]").fill(text)
    form.locator("input[name=display_name]").fill(name)
    widget.get_by_role("button", name="Enviar opinión").click()


def sign_in(page, base_url):
    page.goto(f"{base_url}/app/moderation/")
    page.fill("#id_username", "moderadora")
    page.fill("#id_password", PASSWORD)
    page.click("form.stack button[type=submit]")
    sync_api.expect(page.locator("h1")).to_have_text("Moderación")


def test_hostile_reviews_never_run_in_the_widget_or_the_queue(premoderated, browser, live_server):
    expect = sync_api.expect
    shopper = new_page(browser)
    shopper.goto(f"{live_server.url}/shop/cafeteria/{SKU}/")
    widget = shopper.locator("tertulia-reviews")
    expect(widget.locator("h2").first).to_have_text("Opiniones")
    for payload in PAYLOADS:
        write_review(shopper, rating=4, **payload)
        expect(widget.locator(".msg.hold")).to_be_visible()
        expect(widget.locator(".msg.hold")).to_be_focused()
        shopper.evaluate("localStorage.clear()")  # a new device each time, as three people would be
        assert_nothing_ran(shopper)

    # The queue shows every payload as text; nothing in it became an element.
    staff = new_page(browser)
    sign_in(staff, live_server.url)
    items = staff.locator(".mod-item")
    expect(items).to_have_count(len(PAYLOADS))
    page_text = staff.locator(".mod-list").inner_text()
    for payload in PAYLOADS:
        assert payload["title"] in page_text
        assert payload["name"] in page_text
    assert "<script>window.__pwned=2;alert('x')</script>" in page_text
    assert staff.locator(".mod-list script, .mod-list img, .mod-list svg, .mod-list a").count() == 0
    assert_nothing_ran(staff)

    # Approve them all with the bulk controls; the widget then shows them literally too.
    staff.check("[data-select-all]")
    staff.get_by_role("button", name="Aprobar selección").click()
    expect(staff.locator("#mod-status")).to_contain_text("3 elementos aprobados")
    expect(items).to_have_count(0)
    assert_nothing_ran(staff)

    shopper.reload()
    reviews = widget.locator(".rv")
    expect(reviews).to_have_count(len(PAYLOADS))
    shown = widget.locator(".list").inner_text()
    for payload in PAYLOADS:
        assert payload["title"] in shown
        assert payload["name"] in shown
        assert payload["text"] in shown
    # Nothing but our own elements: no script, svg or image from content, no javascript: link.
    assert widget.locator(".list script, .list svg, .list img, .list a").count() == 0
    assert shopper.locator("script").count() == 1  # the page's own widget.js only
    assert_nothing_ran(shopper)
    assert shopper.errors == [] and staff.errors == []


def test_the_walk_held_approved_by_keyboard_then_shown_verified(browser, live_server, shop):
    # The store's default policy: a buyer's coarse word holds the review for a person, with that reason.
    expect = sync_api.expect
    shopper = new_page(browser)
    shopper.goto(f"{live_server.url}/shop/cafeteria/{SKU}/?token={shop['token']}")
    widget = shopper.locator("tertulia-reviews")
    expect(widget.locator(".list")).to_contain_text("Todavía no hay opiniones")
    write_review(shopper, rating=5, title="El mejor café del barrio",
                 text="Aroma intenso y tueste medio, joder qué bueno está. Llegó en dos días.", name="Ana")
    result = widget.locator(".msg.hold")
    expect(result).to_be_visible()
    expect(result).to_be_focused()
    expect(result).to_contain_text(reason_message("rudeness", "es"))
    expect(widget.locator(".rv")).to_have_count(0)  # not shown while it waits

    staff = new_page(browser)
    sign_in(staff, live_server.url)
    item = staff.locator(".mod-item")
    expect(item).to_have_count(1)
    expect(item).to_contain_text("El mejor café del barrio")
    expect(item).to_contain_text("Compra verificada")
    expect(item.locator(".reason[data-code=rudeness]")).to_be_visible()
    expect(item.locator(".mod-text mark")).to_have_text("joder")
    staff.locator("body").press("?")
    expect(staff.locator("#mod-help")).to_be_visible()
    staff.keyboard.press("Escape")
    expect(staff.locator("#mod-help")).to_be_hidden()
    staff.keyboard.press("j")
    expect(item).to_be_focused()
    staff.keyboard.press("a")
    expect(staff.locator("#mod-status")).to_contain_text("1 elemento aprobado")
    expect(item).to_have_count(0)

    shopper.reload()
    review = widget.locator(".rv")
    expect(review).to_have_count(1)
    expect(review).to_contain_text("El mejor café del barrio")
    expect(review.locator(".badge")).to_have_text("✓ Compra verificada")
    expect(widget.locator(".sum")).to_contain_text("1 opinión")
    assert shopper.errors == [] and staff.errors == []


def test_review_form_works_with_the_keyboard_only(browser, live_server, shop):
    expect = sync_api.expect
    page = new_page(browser, locale="en-GB")
    page.goto(f"{live_server.url}/shop/cafeteria/{SKU}/?lang=en")
    widget = page.locator("tertulia-reviews")
    write = widget.get_by_role("button", name="Write a review")
    expect(write).to_be_visible()
    for _ in range(40):  # Tab through the page until the button has focus
        page.keyboard.press("Tab")
        if write.evaluate("b => b.getRootNode().activeElement === b"):
            break
    else:
        pytest.fail("Write a review is not reachable with Tab")
    page.keyboard.press("Enter")
    first_star = widget.locator("input[name=rating][value='1']")
    expect(first_star).to_be_focused()
    page.keyboard.press("Space")
    for _ in range(3):
        page.keyboard.press("ArrowRight")
    expect(widget.locator("input[name=rating][value='4']")).to_be_checked()
    page.keyboard.press("Tab")
    page.keyboard.type("Good beans")
    page.keyboard.press("Tab")
    page.keyboard.type("Medium roast, chocolate notes, arrived quickly and well packed.")
    page.keyboard.press("Tab")
    page.keyboard.type("Sam")
    page.keyboard.press("Tab")  # e-mail, left empty
    page.keyboard.press("Tab")  # photos, none
    page.keyboard.press("Tab")
    expect(widget.get_by_role("button", name="Send review")).to_be_focused()
    page.keyboard.press("Enter")
    result = widget.locator(".msg.ok, .msg.hold")  # published or held: the policy decides, not the keyboard
    expect(result).to_be_visible()
    expect(result).to_be_focused()
    expect(widget.locator("form.write")).to_be_hidden()
    # The write button says the form is closed again.
    expect(write).to_have_attribute("aria-expanded", "false")
    assert page.errors == []


@pytest.fixture
def store_site(shop):
    """The merchant's own site: another origin whose page includes widget.js from the Tertulia server."""
    page = {"html": b""}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.end_headers()
            self.wfile.write(page["html"])

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    origin = f"http://127.0.0.1:{server.server_address[1]}"
    from tertulia.ugc.services import store_origin_add

    store_origin_add(store=shop["store"], origin=origin)
    yield {"origin": origin, "page": page}
    server.shutdown()
    server.server_close()


def test_embedded_on_another_origin_with_a_photo(store_site, browser, live_server, shop, tmp_path):
    from PIL import Image

    expect = sync_api.expect
    store_site["page"]["html"] = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Beans</title>'
        '<link rel="icon" href="data:,"></head><body><h1>Colombian beans</h1>'
        f'<tertulia-reviews store="cafeteria" product="{SKU}"></tertulia-reviews>'
        f'<script src="{live_server.url}/widget.js" defer></script></body></html>'
    ).encode()
    photo = tmp_path / "cup.png"
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (120, 70, 30)).save(buffer, "PNG")
    photo.write_bytes(buffer.getvalue())

    page = new_page(browser, locale="en-GB")
    page.goto(store_site["origin"] + "/")
    widget = page.locator("tertulia-reviews")
    widget.get_by_role("button", name="Write a review").click()
    form = widget.locator("form.write")
    form.locator(".rate label").nth(4).click()
    form.locator("input[name=title]").fill("Lovely morning coffee")
    form.locator("textarea[name=text]").fill("Medium roast with chocolate notes; the beans arrived fresh.")
    form.locator("input[name=display_name]").fill("Sam")
    form.locator("input[name=photos]").set_input_files(str(photo))
    widget.get_by_role("button", name="Send review").click()
    expect(widget.locator(".msg.ok")).to_contain_text("Thank you")
    review = widget.locator(".rv")
    expect(review).to_have_count(1)
    image = review.locator(".ph img")
    expect(image).to_have_attribute("alt", "Photo 1 from Sam")
    assert image.get_attribute("src").startswith(live_server.url + "/")
    expect(review.locator(".ph a")).to_have_attribute("href", image.get_attribute("src"))
    page.wait_for_function(  # the re-encoded photo really loads from the Tertulia server
        "() => { const i = document.querySelector('tertulia-reviews').shadowRoot.querySelector('.ph img');"
        " return i && i.complete && i.naturalWidth > 0; }")
    assert page.evaluate(f"fetch({live_server.url!r} + '/widget.js').then(r => r.ok)")
    assert page.errors == []


@pytest.fixture
def twelve_reviews(shop):
    from tertulia.catalog.models import Product
    from tertulia.ugc.services import Author, review_submit

    product = Product.objects.for_store(shop["store"]).get(sku=SKU)
    words = ["aroma", "tueste", "envío", "precio", "sabor", "molienda", "frescura", "acidez", "cuerpo", "final",
             "envase", "origen"]
    for number, word in enumerate(words):
        done = review_submit(store=shop["store"], product=product, rating=5 if number % 3 else 2,
                             title=f"Sobre el {word}", text=f"Opinión número {number + 1}: me fijé sobre todo en el {word}.",
                             author=Author(display_name=f"Cliente {number + 1}", device_id=f"device-{number:04d}-list"))
        assert done.status == "published", done
    return shop


def test_filter_sort_and_show_more_follow_the_api(twelve_reviews, browser, live_server):
    expect = sync_api.expect
    page = new_page(browser)
    page.goto(f"{live_server.url}/shop/cafeteria/{SKU}/")
    widget = page.locator("tertulia-reviews")
    reviews = widget.locator(".rv")
    expect(reviews).to_have_count(10)
    expect(widget.locator(".sum")).to_contain_text("12 opiniones")
    widget.get_by_role("button", name="Ver más opiniones").click()
    expect(reviews).to_have_count(12)
    expect(reviews.nth(10).locator("h3")).to_be_focused()  # focus on the first review just loaded
    expect(widget.get_by_role("button", name="Ver más opiniones")).to_be_hidden()

    widget.get_by_role("button", name="2 estrellas: 4 opiniones (33 %)").click()
    expect(reviews).to_have_count(4)
    expect(widget.get_by_role("button", name="2 estrellas: 4 opiniones (33 %)")).to_have_attribute("aria-pressed", "true")
    widget.get_by_label("Ordenar por").select_option("oldest")
    expect(reviews.first.locator("h3")).to_have_text("Sobre el aroma")
    widget.get_by_label("Puntuación", exact=True).select_option("")
    expect(reviews).to_have_count(10)
    expect(reviews.first.locator("h3")).to_have_text("Sobre el aroma")

    # A helpful vote counts once per device, and the count survives a reload.
    helpful = reviews.first.get_by_role("button", name="Útil (0)")
    helpful.click()
    expect(reviews.first.get_by_role("button", name="Útil (1)")).to_have_attribute("aria-pressed", "true")
    page.reload()
    widget.get_by_label("Ordenar por").select_option("oldest")
    expect(reviews.first.locator("h3")).to_have_text("Sobre el aroma")
    reviews.first.get_by_role("button", name="Útil (1)").click()
    expect(reviews.first.get_by_role("button", name="Útil (1)")).to_have_attribute("aria-pressed", "true")
    assert page.errors == []
