"""The purchase-intent journey: a known person says on social media they want to buy, and gets the product.

End to end as in production: the post is heard through listening (`mentions_ingest`, linked to the
person by their Mastodon handle, the product found by its catalogue term), the sweep enrolls them,
the dispatcher checks consent and the exits and sends the e-mail; the team answering in the inbox,
an order or an unsubscribe ends it first.
"""

import re
from datetime import UTC, datetime, timedelta
from datetime import time as clock
from decimal import Decimal

import pytest
from dispatch_doubles import RecordingAdapter
from django.contrib.auth import get_user_model
from django.test import override_settings
from test_dashboard_journeys import form_of

from tertulia.catalog.services import products_upsert
from tertulia.channels.dispatch import dispatch_run
from tertulia.channels.models import DeliveryStatus
from tertulia.channels.rules import delivery_settings_update
from tertulia.core.errors import ApiError
from tertulia.core.services import membership_grant
from tertulia.inbox.models import Conversation
from tertulia.inbox.services import inbox_settings_update, note_add, reply_send
from tertulia.journeys.attribution import attribution_run, watermarks_forget
from tertulia.journeys.definitions import definition_validate, journey_update, journeys_ensure_defaults
from tertulia.journeys.models import Attribution, EnrollmentStatus, Journey, TriggerType
from tertulia.journeys.services import mention_excerpt
from tertulia.journeys.triggers import triggers_sweep
from tertulia.listening.connectors import Post
from tertulia.listening.models import Mention
from tertulia.listening.selectors import matchers_forget
from tertulia.listening.services import mentions_ingest, tracked_terms_sync_catalogue
from tertulia.listening.sources import source_set
from tests.test_journeys_support import NOW, deliveries, enrollments, fresh, order, subscribe

pytestmark = pytest.mark.django_db

WANTS = "¿Dónde puedo comprar el Aceite Picual? Lo quiero ya"
MARTA = "marta@social.example"
PRODUCT_URL = "https://tienda.example/p/aceite-picual"
HEARD = NOW  # when the post is heard; the e-mail is due 15 minutes later
DUE = HEARD + timedelta(minutes=15)
ADAPTERS = override_settings(
    TERTULIA_LISTENING_CONNECTORS={"mastodon": "listening_fake_connector"},
    TERTULIA_CHANNEL_ADAPTERS={"email": "dispatch_doubles.RecordingAdapter",
                               "mastodon": "dispatch_doubles.RecordingAdapter"},
)


@pytest.fixture(autouse=True)
def _setup(store):
    fresh()
    matchers_forget()
    watermarks_forget()
    RecordingAdapter.reset()
    store.website_url = "https://tienda.example"
    store.timezone = "UTC"
    store.save()
    # No quiet hours (start = end): the send moment is the journey's alone.
    delivery_settings_update(store=store, quiet_hours_start=clock(0, 0), quiet_hours_end=clock(0, 0))
    inbox_settings_update(store=store, changes={"business_hours": {}})
    products_upsert(store=store, products=[(NOW - timedelta(days=60), {
        "sku": "AOVE-PICUAL", "title": "Aceite Picual", "price": Decimal("12.50"), "currency": "EUR",
        "url": PRODUCT_URL})])
    tracked_terms_sync_catalogue(store=store)
    journeys_ensure_defaults(store=store)
    with ADAPTERS:
        yield
    RecordingAdapter.reset()


@pytest.fixture
def source(store):
    return source_set(store=store, network="mastodon", key="social", settings={}, secrets={"token": "t"})


@pytest.fixture
def marta(store):
    """A customer with e-mail consent whose profile knows her Mastodon handle."""
    return subscribe(store, "marta@example.com", first_name="Marta", handles={"mastodon": MARTA})


def hear(store, source, external_id: str, text: str = WANTS, *, handle: str = MARTA, at=HEARD) -> Mention:
    """A public Mastodon post, heard through the store's source at `at` (posted half a minute before)."""
    mentions_ingest(store_id=store.pk, source_id=source.pk, now=at, posts=[Post(
        network="mastodon", external_id=external_id, text=text, posted_at=at - timedelta(seconds=30),
        url=f"https://social.example/@{handle.split('@')[0]}/{external_id}", author_handle=handle,
        reply_ref={"visibility": "public", "acct": handle})])
    return Mention.objects.for_store(store).get(network="mastodon", external_id=external_id)


def sweep(store, now) -> int:
    return triggers_sweep(now=now, store=store, full=True)


def email_step(store):
    return deliveries(store, "purchase_intent").get(step_key="email_1")


def agent(store, name="ana"):
    user = get_user_model().objects.create_user(name, password="x", first_name=name.title())
    membership_grant(store=store, user=user, role="agent")
    return user


# --- the journey end to end ------------------------------------------------------------------------

def test_a_known_person_who_wants_to_buy_gets_the_product_by_email(store, source, marta):
    mention = hear(store, source, "1001")
    assert (mention.intent, mention.customer_id) == ("purchase_intent", marta.pk)
    assert list(mention.products.values_list("sku", flat=True)) == ["AOVE-PICUAL"]

    assert sweep(store, HEARD + timedelta(minutes=1)) == 0  # the team has its quarter of an hour first
    assert sweep(store, DUE) == 1
    enrollment = enrollments(store, "purchase_intent").get()
    assert (enrollment.customer_id, enrollment.trigger_type, enrollment.trigger_id) == (
        marta.pk, TriggerType.MENTION, str(mention.pk))
    assert email_step(store).due_at == HEARD + timedelta(minutes=15)
    assert sweep(store, DUE + timedelta(minutes=1)) == 0  # one enrollment per mention

    dispatch_run(worker="t", now=DUE)
    delivery = email_step(store)
    assert delivery.status == DeliveryStatus.SENT, (delivery.reason, delivery.detail)
    assert delivery.to_address == "marta@example.com" and "Aceite Picual" in delivery.subject
    assert delivery.links[0] == PRODUCT_URL and "https://tienda.example" in delivery.links
    assert "12,50 €" in delivery.body_text and "Mastodon" in delivery.body_text
    assert "¿Dónde puedo comprar el Aceite Picual?" in delivery.body_text
    assert PRODUCT_URL not in delivery.body_text  # every link is the tracked redirect
    assert "/u/" in delivery.body_text and 'href="http' in delivery.body_html
    [sent] = RecordingAdapter.sent
    assert sent.to == "marta@example.com" and sent.headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert enrollments(store, "purchase_intent").get().status == EnrollmentStatus.COMPLETED


@pytest.mark.parametrize("last_look", [timedelta(minutes=16), timedelta(seconds=10)], ids=["full-look", "incremental"])
def test_the_workers_own_sweeps_find_it_when_its_moment_comes(store, source, marta, last_look):
    # The worker sweeps without `full`: after a long pause a full look at rows written since the last
    # one, otherwise only what became due since the last look.
    assert sweep(store, DUE - last_look) == 0
    hear(store, source, "1003")
    assert triggers_sweep(now=DUE, store=store) == 1
    assert triggers_sweep(now=DUE + timedelta(seconds=1), store=store) == 0


def test_an_order_after_the_click_is_credited_to_the_message(client, store, source, marta):
    hear(store, source, "1002")
    sweep(store, DUE)
    dispatch_run(worker="t", now=DUE)
    delivery = email_step(store)
    tracked = re.search(r"https?://\S+/r/\S+", delivery.body_text).group(0)
    response = client.get(tracked[tracked.index("/r/"):])
    assert response.status_code == 302 and response["Location"].startswith(PRODUCT_URL)
    order(store, "marta@example.com", "o-1", at=datetime.now(UTC), items=[
        {"sku": "AOVE-PICUAL", "quantity": 2, "price": "12.50"}])
    attribution_run(store=store, full=True)
    credit = Attribution.objects.for_store(store).get()
    assert (credit.journey_key, credit.step_key, credit.basis, credit.delivery_id) == (
        "purchase_intent", "email_1", "click", delivery.pk)


# --- who is not enrolled ---------------------------------------------------------------------------

def test_nobody_is_enrolled_for_an_author_the_store_does_not_know(store, source, marta):
    mention = hear(store, source, "2001", handle="desconocida@social.example")
    assert mention.intent == "purchase_intent" and mention.customer_id is None
    assert sweep(store, DUE) == 0
    assert not deliveries(store, "purchase_intent").exists()


def test_other_intents_do_not_enroll(store, source, marta):
    mention = hear(store, source, "2002", "Me encanta el Aceite Picual, ¡qué maravilla!")
    assert mention.customer_id == marta.pk and mention.intent != "purchase_intent"
    assert sweep(store, DUE) == 0


def test_a_toxic_post_does_not_enroll_even_with_purchase_intent(store, source, marta):
    mention = hear(store, source, "2003", "Quiero comprar el Aceite Picual, panda de idiotas de mierda")
    assert mention.intent == "purchase_intent" and mention.toxicity >= 0.5
    assert sweep(store, DUE) == 0


def test_once_per_mention_and_at_most_once_a_week_per_person(store, source, marta):
    start = NOW - timedelta(days=9)
    first = hear(store, source, "3001", at=start)
    # Two posts in one look: the first one heard wins.
    hear(store, source, "3002", "Quiero comprar el Aceite Picual para regalar", at=start + timedelta(seconds=5))
    assert sweep(store, start + timedelta(minutes=16)) == 1
    assert enrollments(store, "purchase_intent").get().trigger_id == str(first.pk)

    hear(store, source, "3003", at=start + timedelta(days=1))
    assert sweep(store, start + timedelta(days=1, minutes=15)) == 0  # within the 7-day cooldown
    latest = hear(store, source, "3004", at=start + timedelta(days=8))
    assert sweep(store, start + timedelta(days=8, minutes=15)) == 1
    assert set(enrollments(store, "purchase_intent").values_list("trigger_id", flat=True)) == {
        str(first.pk), str(latest.pk)}


def test_a_post_heard_long_after_it_was_written_enrolls_nobody(store, source, marta):
    # A new source catching up on old posts: posted more than the look-back (1 day) before it was heard.
    mentions_ingest(store_id=store.pk, source_id=source.pk, now=HEARD, posts=[Post(
        network="mastodon", external_id="3100", text=WANTS, posted_at=HEARD - timedelta(days=3), author_handle=MARTA)])
    assert sweep(store, DUE) == 0


def test_a_person_without_email_consent_is_not_enrolled(store, source):
    # Reachable by SMS only; the journey writes by e-mail, so she is nobody it could write to.
    subscribe(store, "rosa@example.com", channel="sms", phone="+34600111333", handles={"mastodon": "rosa@social.example"})
    mention = hear(store, source, "4001", handle="rosa@social.example")
    assert mention.customer_id is not None
    assert sweep(store, DUE) == 0
    dispatch_run(worker="t", now=DUE)
    assert not deliveries(store, "purchase_intent").exists() and RecordingAdapter.sent == []


def test_email_consent_withdrawn_before_the_send_skips_it(store, source, marta):
    hear(store, source, "4002")
    assert sweep(store, DUE) == 1
    subscribe(store, "marta@example.com", status="unsubscribed", at=HEARD + timedelta(minutes=5))
    dispatch_run(worker="t", now=DUE)
    delivery = email_step(store)
    assert (delivery.status, delivery.reason) == (DeliveryStatus.SKIPPED, "no_consent")
    assert RecordingAdapter.sent == []


# --- exits at send time ----------------------------------------------------------------------------

def assert_exited(store, reason: str) -> None:
    delivery = email_step(store)
    assert (delivery.status, delivery.reason) == (DeliveryStatus.SKIPPED, reason), delivery.detail
    enrollment = enrollments(store, "purchase_intent").get()
    assert (enrollment.status, enrollment.exit_reason) == (EnrollmentStatus.EXITED, reason)
    assert not [m for m in RecordingAdapter.sent if m.channel == "email"]


def test_exit_when_an_order_is_placed_since_the_post(store, source, marta):
    hear(store, source, "5001")
    sweep(store, DUE)
    order(store, "marta@example.com", "o-5", at=HEARD + timedelta(minutes=3))
    dispatch_run(worker="t", now=DUE)
    assert_exited(store, "order_placed")


def test_an_order_from_before_the_post_does_not_end_it(store, source, marta):
    order(store, "marta@example.com", "o-old", at=HEARD - timedelta(days=2))
    hear(store, source, "5002")
    sweep(store, DUE)
    dispatch_run(worker="t", now=DUE)
    assert email_step(store).status == DeliveryStatus.SENT


def test_exit_when_the_team_answered_in_the_inbox(store, source, marta):
    mention = hear(store, source, "5003")
    conversation = Conversation.objects.for_store(store).get(messages__mention=mention)
    reply_send(store=store, conversation_id=conversation.pk, user=agent(store),
               text="¡Hola Marta! Lo tienes aquí: https://tienda.example/p/aceite-picual", now=HEARD + timedelta(minutes=4))
    sweep(store, DUE)
    dispatch_run(worker="t", now=DUE)
    assert_exited(store, "answered")
    # The team's own answer went out, on Mastodon, as a reply to her post.
    [answer] = RecordingAdapter.sent
    assert (answer.channel, answer.in_reply_to) == ("mastodon", "5003")


def test_a_private_note_is_not_an_answer(store, source, marta):
    mention = hear(store, source, "5004")
    conversation = Conversation.objects.for_store(store).get(messages__mention=mention)
    note_add(store=store, conversation_id=conversation.pk, user=agent(store), text="Le escribe el recorrido",
             now=HEARD + timedelta(minutes=2))
    sweep(store, DUE)
    dispatch_run(worker="t", now=DUE)
    assert email_step(store).status == DeliveryStatus.SENT


def test_exit_when_unsubscribed_from_anything_since_the_post(store, source, marta):
    subscribe(store, "marta@example.com", channel="sms", phone="+34600111444")
    hear(store, source, "5005")
    sweep(store, DUE)
    # SMS only: e-mail consent still allows the message, but "stop" on any channel ends the journey.
    subscribe(store, "marta@example.com", channel="sms", status="unsubscribed", at=HEARD + timedelta(minutes=5))
    dispatch_run(worker="t", now=DUE)
    assert_exited(store, "unsubscribed")


def test_exit_when_the_journey_is_switched_off(store, source, marta):
    hear(store, source, "5006")
    sweep(store, DUE)
    journey_update(store=store, key="purchase_intent", changes={"enabled": False})
    dispatch_run(worker="t", now=DUE)
    assert_exited(store, "journey_disabled")


# --- the definition, the API and the dashboard -------------------------------------------------------

def test_every_store_gets_the_journey_on_including_stores_made_before_it(store, other_store):
    assert Journey.objects.get(store=store, key="purchase_intent").enabled
    journeys_ensure_defaults(store=other_store)
    Journey.objects.filter(store=other_store, key="purchase_intent").delete()  # a store from before the journey
    fresh()
    triggers_sweep(now=NOW)
    assert Journey.objects.filter(store=other_store, key="purchase_intent", enabled=True).count() == 1


@pytest.mark.parametrize(("trigger", "field", "code"), [
    ({"cooldown_seconds": -1}, "trigger.cooldown_seconds", "out_of_range"),
    ({"cooldown_seconds": "7d"}, "trigger.cooldown_seconds", "invalid_type"),
    ({"min_rating": 4}, "trigger.min_rating", "unknown_field"),
])
def test_trigger_fields_are_checked(store, trigger, field, code):
    with pytest.raises(ApiError) as raised:
        journey_update(store=store, key="purchase_intent", changes={"trigger": trigger})
    assert (field, code) in [(d.field, d.code) for d in raised.value.details]
    clean, errors = definition_validate("purchase_intent", Journey.objects.get(store=store, key="purchase_intent").definition)
    assert errors == [] and clean["trigger"]["cooldown_seconds"] == 7 * 86400


def test_a_shorter_cooldown_lets_the_person_in_again(store, source, marta):
    journey_update(store=store, key="purchase_intent", changes={"trigger": {"cooldown_seconds": 3600}})
    start = NOW - timedelta(days=2)
    hear(store, source, "6001", at=start)
    assert sweep(store, start + timedelta(minutes=15)) == 1
    hear(store, source, "6002", at=start + timedelta(hours=2))
    assert sweep(store, start + timedelta(hours=2, minutes=15)) == 1


def test_the_api_lists_and_edits_it(api, store):
    keys = [j["key"] for j in api.get("/api/v1/journeys").json()["data"]]
    assert keys[-1] == "purchase_intent"
    one = api.get("/api/v1/journeys/purchase_intent").json()
    assert one["definition"]["trigger"] == {"delay_seconds": 900, "cooldown_seconds": 604800, "lookback_seconds": 86400}
    response = api.patch("/api/v1/journeys/purchase_intent", {"trigger": {"delay_seconds": 600},
                                                              "steps": [{"key": "email_1", "delay_seconds": 600}]})
    assert response.status_code == 200 and response.json()["version"] == 2
    assert api.get("/api/v1/journeys/purchase_intent/stats").json()["enrollments"] == 0


def test_the_dashboard_shows_edits_and_previews_it(client, store, settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    manager = get_user_model().objects.create_user("gestora", password="x")
    membership_grant(store=store, user=manager, role="manager")
    client.force_login(manager)
    assert "Intención de compra en redes sociales" in client.get("/app/journeys/").content.decode()
    page = client.get("/app/journeys/purchase_intent/").content.decode()
    assert "Aceite Picual" in page  # the preview names the store's own product
    previews = client.post("/app/journeys/purchase_intent/preview/", form_of(page)).json()["previews"]
    assert {(p["language"], p["errors"] == []) for p in previews} == {("es", True), ("en", True)}
    data = form_of(page) | {"step-0-delay_value": "30", "step-0-delay_unit": "minutes", "action": "save"}
    assert client.post("/app/journeys/purchase_intent/", data).status_code == 302
    assert Journey.objects.get(store=store, key="purchase_intent").definition["steps"][0]["delay_seconds"] == 1800


def test_the_quoted_post_is_one_line_without_links_and_cut_at_a_word():
    assert mention_excerpt("Quiero   el\nAceite https://x.example/a?b=1 Picual") == "Quiero el Aceite Picual"
    long = mention_excerpt("palabra " * 40)
    assert len(long) <= 140 and long.endswith("palabra…")
