"""Triggers: who is enrolled when, once only, with deterministic holdout and variants and scheduled steps."""

from datetime import timedelta

import pytest

from tertulia.channels.models import DeliveryStatus
from tertulia.events.services import events_ingest
from tertulia.journeys.definitions import assignment_for, journey_update, journeys_ensure_defaults
from tertulia.journeys.models import EnrollmentStatus, Journey
from tertulia.journeys.services import journeys_trigger_review
from tertulia.journeys.triggers import triggers_sweep
from tests.conftest import make_event
from tests.test_journeys_support import NOW, cart, deliveries, enrollments, fresh, moment, order, subscribe


@pytest.fixture
def shop(store):
    fresh()
    journeys_ensure_defaults(store=store)
    # Nobody held out unless a test asks: the tests below are about who is enrolled and when.
    for key in ("abandoned_cart", "winback"):
        journey_update(store=store, key=key, changes={"holdout_share": 0})
    return store


def test_an_abandoned_cart_enrolls_after_the_delay_with_both_steps_scheduled(shop):
    subscribe(shop, "ana@example.com", first_name="Ana")
    cart(shop, "ana@example.com", "c1", at=NOW)
    assert triggers_sweep(now=NOW + timedelta(minutes=20), store=shop) == 0  # still within the delay
    assert triggers_sweep(now=NOW + timedelta(minutes=31), store=shop) == 1
    enrollment = enrollments(shop, "abandoned_cart").get()
    assert (enrollment.trigger_type, enrollment.trigger_id, enrollment.trigger_at) == ("cart", "c1", NOW)
    assert enrollment.status == EnrollmentStatus.ACTIVE and enrollment.journey_version == 2
    steps = list(deliveries(shop, "abandoned_cart").values_list("step_key", "channel", "due_at", "status"))
    assert steps == [("email_1", "email", NOW + timedelta(minutes=30), DeliveryStatus.SCHEDULED),
                     ("sms_1", "sms", NOW + timedelta(hours=24), DeliveryStatus.SCHEDULED)]


def test_enrollment_runs_a_few_seconds_ahead_so_the_step_waits_for_its_moment(shop):
    subscribe(shop, "ana@example.com")
    cart(shop, "ana@example.com", "c1", at=NOW)
    assert triggers_sweep(now=NOW + timedelta(minutes=30) - timedelta(seconds=2), store=shop) == 1
    assert deliveries(shop).first().due_at == NOW + timedelta(minutes=30)


def test_replayed_events_and_repeated_sweeps_enroll_once(shop):
    subscribe(shop, "ana@example.com")
    cart(shop, "ana@example.com", "c1", at=NOW, event_id="cart-event-1")
    assert triggers_sweep(now=NOW + timedelta(minutes=31), store=shop, full=True) == 1
    cart(shop, "ana@example.com", "c1", at=NOW, event_id="cart-event-1")  # the same event again
    fresh()  # a restarted worker: no memory of earlier sweeps
    assert triggers_sweep(now=NOW + timedelta(minutes=32), store=shop, full=True) == 0
    assert triggers_sweep(now=NOW + timedelta(minutes=40), store=shop) == 0
    assert enrollments(shop).count() == 1 and deliveries(shop).count() == 2


def test_who_is_not_enrolled(shop):
    subscribe(shop, "ana@example.com")
    cart(shop, "ana@example.com", "empty", at=NOW, items=[])  # nothing in it
    cart(shop, "nobody@example.com", "c-unreachable", at=NOW)  # no consent on any channel
    subscribe(shop, "old@example.com")
    cart(shop, "old@example.com", "c-old", at=NOW - timedelta(days=3))  # beyond the look-back
    subscribe(shop, "bought@example.com")
    cart(shop, "bought@example.com", "c-bought", at=NOW)
    order(shop, "bought@example.com", "o-elsewhere", at=NOW + timedelta(minutes=5))  # bought another way
    subscribe(shop, "converted@example.com")
    cart(shop, "converted@example.com", "c-conv", at=NOW)
    order(shop, "converted@example.com", "o-conv", at=NOW - timedelta(days=40), cart_id="c-conv")
    triggers_sweep(now=NOW + timedelta(hours=1), store=shop)
    assert not enrollments(shop, "abandoned_cart").exists()


def test_sms_consent_alone_makes_a_cart_reachable(shop):
    subscribe(shop, "ana@example.com", channel="sms", phone="+34600111222")
    cart(shop, "ana@example.com", "c1", at=NOW)
    assert triggers_sweep(now=NOW + timedelta(hours=1), store=shop) == 1


def test_a_switched_off_journey_enrolls_nobody(shop):
    journey_update(store=shop, key="abandoned_cart", changes={"enabled": False})
    subscribe(shop, "ana@example.com")
    cart(shop, "ana@example.com", "c1", at=NOW)
    assert triggers_sweep(now=NOW + timedelta(hours=1), store=shop) == 0


def test_holdout_enrollments_get_no_deliveries_and_assignment_is_the_hash(shop):
    journey_update(store=shop, key="abandoned_cart", changes={
        "holdout_share": 0.5, "trigger": {"delay_seconds": 900},
        "steps": [{"key": "email_1", "delay_seconds": 900}, {"key": "sms_1"}],
        "variants": [{"key": "15m", "weight": 1}, {"key": "1h", "weight": 1, "steps": {"email_1": {"delay_seconds": 3600}}}]})
    # Enough people that every group (holdout and both variants) gets someone whatever the ids the database
    # hands out: the assignment is a hash of them, and with 16 one group could stay empty (chance ~1/256).
    for number in range(64):
        email = f"p{number}@example.com"
        subscribe(shop, email)
        cart(shop, email, f"c{number}", at=NOW)
    assert triggers_sweep(now=NOW + timedelta(hours=2), store=shop) == 64
    journey = Journey.objects.for_store(shop).get(key="abandoned_cart")
    seen = set()
    for enrollment in enrollments(shop, "abandoned_cart"):
        expected = assignment_for(store_id=shop.pk, journey_key="abandoned_cart", customer_id=enrollment.customer_id,
                                  definition=journey.definition)
        assert (enrollment.holdout, enrollment.variant) == (expected.holdout, expected.variant)
        steps = list(deliveries(shop).filter(enrollment=enrollment).values_list("step_key", "due_at", "variant"))
        if enrollment.holdout:
            assert enrollment.status == EnrollmentStatus.HOLDOUT and steps == []
        else:
            first = timedelta(hours=1) if enrollment.variant == "1h" else timedelta(minutes=15)
            assert steps[0] == ("email_1", NOW + first, enrollment.variant)
        seen.add("holdout" if enrollment.holdout else enrollment.variant)
    assert seen == {"holdout", "15m", "1h"}


def test_activity_after_enrollment_moves_the_steps(shop):
    journey_update(store=shop, key="abandoned_cart", changes={
        "trigger": {"delay_seconds": 600}, "steps": [{"key": "email_1", "delay_seconds": 3600}, {"key": "sms_1"}]})
    subscribe(shop, "ana@example.com")
    cart(shop, "ana@example.com", "c1", at=NOW)
    assert triggers_sweep(now=NOW + timedelta(minutes=11), store=shop) == 1
    cart(shop, "ana@example.com", "c1", at=NOW + timedelta(minutes=20),
         items=[{"sku": "ACE-1", "quantity": 2, "price": "12.50"}])
    triggers_sweep(now=NOW + timedelta(minutes=21), store=shop)
    assert enrollments(shop).get().trigger_at == NOW + timedelta(minutes=20)
    assert [d.due_at for d in deliveries(shop)] == [NOW + timedelta(minutes=80), NOW + timedelta(hours=24, minutes=20)]


def test_thank_you_after_an_order(shop):
    subscribe(shop, "ana@example.com")
    order(shop, "ana@example.com", "o1", at=NOW)
    assert triggers_sweep(now=NOW + timedelta(seconds=1), store=shop) == 1
    assert enrollments(shop, "thank_you").get().trigger_id == "o1"
    assert deliveries(shop, "thank_you").get().due_at == NOW + timedelta(minutes=10)
    order(shop, "ana@example.com", "o1", at=NOW)  # replayed (another event id): still one
    assert triggers_sweep(now=NOW + timedelta(minutes=2), store=shop, full=True) == 0


def _catalogue(store):
    events_ingest(store=store, events=[
        make_event("category_upserted", {"id": "despensa", "name": "Despensa"}),
        make_event("category_upserted", {"id": "aceites", "name": "Aceites", "parent_id": "despensa"}),
        make_event("category_upserted", {"id": "vinos", "name": "Vinos"}),
        make_event("product_upserted", {"sku": "ACE-1", "title": "Aceite", "category_id": "aceites", "price": "12.50"}),
        make_event("product_upserted", {"sku": "VIN-1", "title": "Rioja", "category_id": "vinos", "price": "13.90"}),
    ])


def test_review_request_waits_for_the_category_delay(shop):
    _catalogue(shop)
    journey_update(store=shop, key="review_request", changes={"trigger": {"category_delays": {"despensa": 14 * 86400}}})
    subscribe(shop, "ana@example.com")
    subscribe(shop, "bea@example.com")
    delivered = NOW - timedelta(days=8)
    order(shop, "ana@example.com", "o-oil", at=delivered - timedelta(days=2))  # aceites is under despensa: 14 days
    order(shop, "bea@example.com", "o-wine", at=delivered - timedelta(days=2),
          items=[{"sku": "VIN-1", "quantity": 1, "price": "13.90"}])  # vinos: the default 7 days
    moment(shop, "order_delivered", "o-oil", at=delivered)
    moment(shop, "order_delivered", "o-wine", at=delivered)
    triggers_sweep(now=NOW, store=shop)
    wine = enrollments(shop, "review_request").get()
    assert wine.trigger_id == "o-wine" and wine.trigger_at == delivered
    assert [d.due_at for d in deliveries(shop, "review_request")] == [delivered + timedelta(days=7),
                                                                       delivered + timedelta(days=11)]
    triggers_sweep(now=delivered + timedelta(days=14), store=shop)
    oil = enrollments(shop, "review_request").get(trigger_id="o-oil")
    assert [d.due_at for d in deliveries(shop, "review_request").filter(enrollment=oil)] == [
        delivered + timedelta(days=14), delivered + timedelta(days=18)]


def test_referral_request_after_a_good_review_once_per_cooldown(shop):
    ana = subscribe(shop, "ana@example.com")
    assert not journeys_trigger_review(store=shop, customer_id=ana.pk, review_id=1, rating=3, at=NOW, now=NOW)
    assert journeys_trigger_review(store=shop, customer_id=ana.pk, review_id=2, rating=5, at=NOW, now=NOW)
    assert not journeys_trigger_review(store=shop, customer_id=ana.pk, review_id=2, rating=5, at=NOW, now=NOW)
    assert not journeys_trigger_review(store=shop, customer_id=ana.pk, review_id=3, rating=4, at=NOW, now=NOW)
    enrollment = enrollments(shop, "referral_request").get()
    assert (enrollment.trigger_type, enrollment.trigger_id) == ("review", "2")
    assert deliveries(shop, "referral_request").get().due_at == NOW + timedelta(hours=1)


def test_referral_request_a_set_time_after_delivery(shop):
    subscribe(shop, "ana@example.com")
    delivered = NOW - timedelta(days=21, hours=1)
    order(shop, "ana@example.com", "o1", at=delivered - timedelta(days=2))
    moment(shop, "order_delivered", "o1", at=delivered)
    triggers_sweep(now=NOW, store=shop)
    enrollment = enrollments(shop, "referral_request").get()
    assert enrollment.trigger_id == "o1"
    assert deliveries(shop, "referral_request").get().due_at == delivered + timedelta(days=21, hours=1)


def test_welcome_on_subscription_once(shop):
    start = NOW - timedelta(days=3)
    subscribe(shop, "ana@example.com", at=start)
    assert triggers_sweep(now=start + timedelta(seconds=3), store=shop) >= 1
    assert enrollments(shop, "welcome").get().trigger_id.startswith("email:")
    subscribe(shop, "ana@example.com", at=start + timedelta(days=1), status="unsubscribed")
    subscribe(shop, "ana@example.com", at=start + timedelta(days=2))
    triggers_sweep(now=start + timedelta(days=2, seconds=3), store=shop, full=True)
    assert enrollments(shop, "welcome").count() == 1


def test_double_opt_in_sends_a_confirmation_then_the_welcome(shop):
    journey_update(store=shop, key="welcome", changes={"trigger": {"double_opt_in": True}})
    subscribe(shop, "ana@example.com", at=NOW, status="pending_confirmation")
    triggers_sweep(now=NOW + timedelta(seconds=3), store=shop)
    confirm = enrollments(shop, "welcome").get()
    assert confirm.trigger_id.startswith("confirm:") and not confirm.holdout
    assert list(deliveries(shop, "welcome").values_list("step_key", flat=True)) == ["confirm"]
    subscribe(shop, "ana@example.com", at=NOW + timedelta(minutes=5))  # followed the link
    triggers_sweep(now=NOW + timedelta(minutes=5, seconds=3), store=shop)
    assert sorted(enrollments(shop, "welcome").values_list("trigger_id", flat=True))[1].startswith("email:")


def test_winback_a_set_time_after_the_last_order(shop):
    subscribe(shop, "ana@example.com")
    subscribe(shop, "bea@example.com")
    last = NOW - timedelta(days=91)
    order(shop, "ana@example.com", "o-old", at=last - timedelta(days=30))
    order(shop, "ana@example.com", "o-last", at=last)
    order(shop, "bea@example.com", "o-bea-old", at=last)
    order(shop, "bea@example.com", "o-bea-new", at=NOW - timedelta(days=10))  # bought again since
    triggers_sweep(now=NOW, store=shop)
    enrollment = enrollments(shop, "winback").get()
    assert (enrollment.customer.identities.get().value, enrollment.trigger_id) == ("ana@example.com", "o-last")
    assert deliveries(shop, "winback").get().due_at == last + timedelta(days=90)


def test_one_store_never_enrolls_another_stores_people(shop, other_store):
    journeys_ensure_defaults(store=other_store)
    subscribe(shop, "ana@example.com")
    cart(shop, "ana@example.com", "c1", at=NOW)
    assert triggers_sweep(now=NOW + timedelta(hours=1), store=other_store) == 0
    assert triggers_sweep(now=NOW + timedelta(hours=1)) == 1
    assert enrollments(other_store).count() == 0


def test_merging_two_welcomed_people_keeps_their_enrollments(shop):
    start = NOW - timedelta(days=2)
    subscribe(shop, "ana@example.com", at=start)
    subscribe(shop, "ana.trabajo@example.com", at=start, phone="+34600111222")
    triggers_sweep(now=start + timedelta(seconds=3), store=shop)
    assert enrollments(shop, "welcome").count() == 2
    # One event names both: the two profiles are one person.
    events_ingest(store=shop, events=[make_event("customer_upserted", {
        "customer": {"email": "ana@example.com", "phone": "+34600111222"}}, at=start + timedelta(hours=1))])
    assert len({e.customer_id for e in enrollments(shop, "welcome")}) == 1
    triggers_sweep(now=start + timedelta(hours=1, seconds=3), store=shop, full=True)
    assert enrollments(shop, "welcome").count() == 2


def test_a_cart_that_changes_hands_is_enrolled_once(shop):
    subscribe(shop, "ana@example.com")
    subscribe(shop, "bea@example.com")
    cart(shop, "ana@example.com", "c1", at=NOW)
    assert triggers_sweep(now=NOW + timedelta(minutes=31), store=shop) == 1
    cart(shop, "bea@example.com", "c1", at=NOW + timedelta(minutes=32))  # Bea logs in on the same cart
    triggers_sweep(now=NOW + timedelta(hours=2), store=shop, full=True)
    assert enrollments(shop, "abandoned_cart").count() == 1


def test_a_cart_that_arrives_after_its_moment_is_found_by_the_next_full_look(shop):
    subscribe(shop, "ana@example.com")
    assert triggers_sweep(now=NOW, store=shop) == 0  # the first look is whole; nothing yet
    cart(shop, "ana@example.com", "late", at=NOW - timedelta(hours=2))  # reported two hours late
    triggers_sweep(now=NOW + timedelta(seconds=2), store=shop)  # incremental: only what fell due since
    assert not enrollments(shop, "abandoned_cart").exists()
    triggers_sweep(now=NOW + timedelta(minutes=6), store=shop)  # the full look: rows written since the last
    assert enrollments(shop, "abandoned_cart").get().trigger_id == "late"
