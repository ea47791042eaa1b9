"""Attribution of orders to messages (last touch within the window) and conversions of enrollments.

Orders and people enter through events_ingest, as a shop sends them; journeys, enrollments and their
messages are written as rows (what the engine and the dispatcher leave behind), with explicit times.
"""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from tertulia.channels.models import Delivery, DeliveryStatus
from tertulia.commerce.models import Order
from tertulia.customers.models import Customer
from tertulia.events.services import events_ingest
from tertulia.journeys.attribution import attribution_run, orders_attribute, watermarks_forget
from tertulia.journeys.models import Attribution, DiscountCode, Enrollment, Journey, Referral, ReferralCode

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
_ids = iter(range(1, 1_000_000))


@pytest.fixture(autouse=True)
def _fresh_watermark():
    watermarks_forget()
    yield
    watermarks_forget()


def ingest(store, *events):
    result = events_ingest(store=store, events=[
        {"id": f"a-{next(_ids)}", "type": type_, "occurred_at": at.isoformat(), "data": data}
        for type_, data, at in events
    ])
    assert result.accepted == len(events)


def person(store, email):
    ingest(store, ("customer_upserted", {"customer": {"email": email, "first_name": email.split("@")[0]}}, T0))
    return Customer.objects.for_store(store).get(identities__kind="email", identities__value=email)


def place(store, order_id, email, at, total="40.00", **extra):
    data = {"order_id": order_id, "customer": {"email": email}, "items": [{"sku": "TAZA", "quantity": 1}],
            "total": total, "currency": "EUR", **extra}
    ingest(store, ("order_placed", data, at))
    return Order.objects.for_store(store).get(external_id=order_id)


def journey(store, key="abandoned_cart", *, window=5 * 24 * 3600, basis="click"):
    found, _ = Journey.objects.update_or_create(store=store, key=key, defaults={"definition": {
        "trigger": {"delay_seconds": 1800},
        "steps": [{"key": "email_1", "channel": "email", "delay_seconds": 1800},
                  {"key": "sms_1", "channel": "sms", "delay_seconds": 86400}],
        "holdout_share": 0.1,
        "variants": [{"key": "15m", "weight": 1, "steps": {"email_1": {"delay_seconds": 900}}},
                     {"key": "1h", "weight": 1, "steps": {"email_1": {"delay_seconds": 3600}}}],
        "attribution": {"window_seconds": window, "basis": basis},
    }})
    return found


def enroll(store, customer, the_journey, *, at=T0, holdout=False, variant="15m", trigger_id=None,
           trigger_type="cart"):
    return Enrollment.objects.create(
        store=store, journey=the_journey, journey_key=the_journey.key, customer=customer, trigger_type=trigger_type,
        trigger_id=trigger_id or f"t-{next(_ids)}", trigger_at=at, journey_version=1, variant=variant,
        holdout=holdout, status="holdout" if holdout else "active", enrolled_at=at)


def message(enrollment, step_key="email_1", channel="email", *, sent=None, opened=None, clicked=None):
    return Delivery.objects.create(
        store_id=enrollment.store_id, customer_id=enrollment.customer_id, channel=channel, enrollment=enrollment,
        journey_key=enrollment.journey_key, step_key=step_key, variant=enrollment.variant,
        status=DeliveryStatus.SENT if sent else DeliveryStatus.SCHEDULED, due_at=sent or T0,
        sent_at=sent, opened_at=opened, clicked_at=clicked)


# --- last touch -------------------------------------------------------------------------------------

def test_order_is_credited_to_the_last_message_clicked(store):
    ana = person(store, "ana@example.com")
    cart = journey(store)
    enrollment = enroll(store, ana, cart)
    first = message(enrollment, sent=T0 + timedelta(minutes=30), clicked=T0 + timedelta(minutes=40))
    second = message(enrollment, "sms_1", "sms", sent=T0 + timedelta(days=1), clicked=T0 + timedelta(days=1, hours=1))
    order = place(store, "o-1", "ana@example.com", T0 + timedelta(days=2), total="59.90")

    assert orders_attribute(store=store, now=T0 + timedelta(days=3)) == 1

    credit = Attribution.objects.get(order=order)
    assert (credit.delivery_id, credit.enrollment_id) == (second.pk, enrollment.pk)
    assert (credit.journey_key, credit.step_key, credit.channel, credit.variant) == ("abandoned_cart", "sms_1", "sms", "15m")
    assert (credit.basis, credit.revenue, credit.currency) == ("click", Decimal("59.90"), "EUR")
    assert credit.placed_at == order.placed_at and credit.store_id == store.pk
    assert first.pk != second.pk


def test_running_again_changes_nothing(store):
    ana = person(store, "ana@example.com")
    enrollment = enroll(store, ana, journey(store))
    message(enrollment, sent=T0, clicked=T0 + timedelta(minutes=5))
    place(store, "o-1", "ana@example.com", T0 + timedelta(hours=1))
    first = attribution_run(store=store, now=T0 + timedelta(days=1))
    assert (first.attributed, first.converted) == (1, 1)
    again = attribution_run(store=store, now=T0 + timedelta(days=1))
    assert (again.attributed, again.converted) == (0, 0)
    watermarks_forget()  # a restarted process looks back the whole window: still nothing new
    assert attribution_run(store=store, now=T0 + timedelta(days=1), full=True).attributed == 0
    assert Attribution.objects.count() == 1


@pytest.mark.parametrize(("clicked_before_order", "credited"), [
    (timedelta(days=5) - timedelta(seconds=1), True),
    (timedelta(days=5), True),  # the window's edge is inside it
    (timedelta(days=5, seconds=1), False),
    (-timedelta(minutes=1), False),  # a click after the order did not bring it
])
def test_the_window_before_the_order(store, clicked_before_order, credited):
    ana = person(store, "ana@example.com")
    enrollment = enroll(store, ana, journey(store), at=T0 - timedelta(days=10))
    placed = T0 + timedelta(days=1)
    message(enrollment, sent=placed - timedelta(days=6), clicked=placed - clicked_before_order)
    place(store, "o-1", "ana@example.com", placed)
    assert orders_attribute(store=store, now=placed + timedelta(days=2)) == int(credited)


def test_a_journey_with_a_shorter_window(store):
    ana = person(store, "ana@example.com")
    enrollment = enroll(store, ana, journey(store, window=3600))
    message(enrollment, sent=T0, clicked=T0 + timedelta(minutes=1))
    place(store, "o-1", "ana@example.com", T0 + timedelta(hours=2))
    assert orders_attribute(store=store, now=T0 + timedelta(days=1)) == 0


def test_an_open_counts_only_when_the_journey_says_so(store):
    ana = person(store, "ana@example.com")
    cart = journey(store, basis="click")
    enrollment = enroll(store, ana, cart)
    message(enrollment, sent=T0, opened=T0 + timedelta(minutes=2))
    order = place(store, "o-1", "ana@example.com", T0 + timedelta(hours=3))
    assert orders_attribute(store=store, now=T0 + timedelta(days=1)) == 0

    journey(store, basis="open")
    assert attribution_run(store=store, now=T0 + timedelta(days=1), full=True).attributed == 1
    credit = Attribution.objects.get(order=order)
    assert (credit.basis, credit.step_key) == ("open", "email_1")


def test_open_basis_still_prefers_the_later_touch(store):
    ana = person(store, "ana@example.com")
    enrollment = enroll(store, ana, journey(store, basis="open"))
    message(enrollment, sent=T0, opened=T0 + timedelta(minutes=1))
    # The second message's pixel was blocked, but it was clicked later: that is the last touch.
    later = message(enrollment, "sms_1", "sms", sent=T0 + timedelta(hours=1), clicked=T0 + timedelta(hours=2))
    order = place(store, "o-1", "ana@example.com", T0 + timedelta(hours=5))
    orders_attribute(store=store, now=T0 + timedelta(days=1))
    credit = Attribution.objects.get(order=order)
    assert (credit.delivery_id, credit.basis) == (later.pk, "click")


def test_the_last_touch_across_journeys(store):
    ana = person(store, "ana@example.com")
    cart = enroll(store, ana, journey(store, "abandoned_cart"))
    winback = enroll(store, ana, journey(store, "winback"), variant="")
    message(cart, sent=T0, clicked=T0 + timedelta(hours=1))
    message(winback, sent=T0 + timedelta(hours=2), clicked=T0 + timedelta(hours=3))
    order = place(store, "o-1", "ana@example.com", T0 + timedelta(hours=4))
    orders_attribute(store=store, now=T0 + timedelta(days=1))
    assert Attribution.objects.get(order=order).journey_key == "winback"


def test_untouched_cancelled_and_anonymous_orders_are_not_credited(store):
    ana = person(store, "ana@example.com")
    person(store, "bea@example.com")
    enrollment = enroll(store, ana, journey(store))
    message(enrollment, sent=T0, clicked=T0 + timedelta(minutes=1))
    place(store, "o-bea", "bea@example.com", T0 + timedelta(hours=1))  # never touched
    place(store, "o-cancel", "ana@example.com", T0 + timedelta(hours=1))
    ingest(store, ("order_cancelled", {"order_id": "o-cancel"}, T0 + timedelta(hours=2)))
    ingest(store, ("order_placed", {"order_id": "o-anon", "items": [{"sku": "X", "quantity": 1}], "total": "5",
                                    "currency": "EUR"}, T0 + timedelta(hours=1)))
    assert orders_attribute(store=store, now=T0 + timedelta(days=1)) == 0


def test_an_order_placed_after_a_run_is_credited_by_the_next(store):
    ana = person(store, "ana@example.com")
    enrollment = enroll(store, ana, journey(store))
    message(enrollment, sent=T0, clicked=T0 + timedelta(minutes=1))
    assert orders_attribute(store=store, now=T0 + timedelta(hours=1)) == 0
    place(store, "o-1", "ana@example.com", T0 + timedelta(hours=2))
    assert orders_attribute(store=store, now=T0 + timedelta(hours=3)) == 1


def test_stores_never_credit_each_other(store, other_store):
    ana_here = person(store, "ana@example.com")
    enrollment = enroll(store, ana_here, journey(store))
    message(enrollment, sent=T0, clicked=T0 + timedelta(minutes=1))
    ingest(other_store, ("order_placed", {"order_id": "o-x", "customer": {"email": "ana@example.com"},
                                          "items": [{"sku": "X", "quantity": 1}], "total": "9", "currency": "EUR"},
                         T0 + timedelta(hours=1)))
    # Every store at once, as the worker runs it: the other store's Ana is another person.
    assert orders_attribute(now=T0 + timedelta(days=1)) == 0
    assert Enrollment.objects.get(pk=enrollment.pk).converted_order_id is None


# --- codes ------------------------------------------------------------------------------------------

def test_a_recovery_code_used_on_the_order_wins_over_a_click(store):
    ana = person(store, "ana@example.com")
    cart = enroll(store, ana, journey(store, "abandoned_cart"), variant="1h")
    winback = enroll(store, ana, journey(store, "winback"), variant="")
    message(winback, sent=T0, clicked=T0 + timedelta(hours=5))
    sms = message(cart, "sms_1", "sms", sent=T0 + timedelta(hours=1))
    order = place(store, "o-1", "ana@example.com", T0 + timedelta(hours=6), total="30.00")
    DiscountCode.objects.create(store=store, code="VUELVE-7K2P", kind="recovery", percent=10, customer=ana,
                                enrollment=cart, used_at=order.placed_at, order=order)
    orders_attribute(store=store, now=T0 + timedelta(days=1))
    credit = Attribution.objects.get(order=order)
    assert (credit.basis, credit.journey_key, credit.enrollment_id) == ("discount_code", "abandoned_cart", cart.pk)
    assert (credit.delivery_id, credit.step_key, credit.channel, credit.variant) == (sms.pk, "sms_1", "sms", "1h")


def test_a_code_named_on_the_order_counts_before_the_engine_marks_it(store):
    if not any(f.name == "discount_codes" for f in Order._meta.get_fields()):
        pytest.skip("orders carry no discount codes yet")
    ana = person(store, "ana@example.com")
    cart = enroll(store, ana, journey(store))
    DiscountCode.objects.create(store=store, code="VUELVE-AB12", kind="recovery", percent=10, customer=ana,
                                enrollment=cart)
    order = place(store, "o-1", "ana@example.com", T0 + timedelta(hours=6), discount_codes=["vuelve-ab12"])
    orders_attribute(store=store, now=T0 + timedelta(days=1))
    assert Attribution.objects.get(order=order).basis == "discount_code"


def test_a_referred_order_is_credited_to_the_referrers_journey(store):
    ana = person(store, "ana@example.com")
    bea = person(store, "bea@example.com")
    referral = enroll(store, ana, journey(store, "referral_request"), variant="")
    message(referral, sent=T0, clicked=T0 + timedelta(minutes=1))
    ReferralCode.objects.create(store=store, customer=ana, code="ANA-REF1")
    order = place(store, "o-bea", "bea@example.com", T0 + timedelta(days=1), total="25.00")
    Referral.objects.create(store=store, referrer=ana, referred=bea, order=order)
    orders_attribute(store=store, now=T0 + timedelta(days=2))
    credit = Attribution.objects.get(order=order)
    assert (credit.basis, credit.journey_key, credit.enrollment_id) == ("referral", "referral_request", referral.pk)
    assert credit.revenue == Decimal("25.00")


# --- conversions ------------------------------------------------------------------------------------

def test_conversions_include_the_holdout_and_respect_the_window(store):
    cart = journey(store)
    people = {name: person(store, f"{name}@example.com") for name in ("ana", "bea", "carla", "dani", "eva")}
    treated = enroll(store, people["ana"], cart)
    held = enroll(store, people["bea"], cart, holdout=True, variant="")
    late = enroll(store, people["carla"], cart)
    early = enroll(store, people["dani"], cart)
    never = enroll(store, people["eva"], cart, holdout=True, variant="")
    place(store, "o-ana-2", "ana@example.com", T0 + timedelta(days=3))
    place(store, "o-ana-1", "ana@example.com", T0 + timedelta(hours=1))  # arrives later, but came first
    place(store, "o-bea", "bea@example.com", T0 + timedelta(days=4))
    place(store, "o-carla", "carla@example.com", T0 + timedelta(days=5, seconds=1))
    place(store, "o-dani", "dani@example.com", T0 - timedelta(minutes=1))

    result = attribution_run(store=store, now=T0 + timedelta(days=6))
    assert result.converted == 2

    def converted(enrollment):
        return Enrollment.objects.select_related("converted_order").get(pk=enrollment.pk)

    assert converted(treated).converted_order.external_id == "o-ana-1"
    assert converted(treated).converted_at == T0 + timedelta(hours=1)
    assert converted(held).converted_order.external_id == "o-bea"  # nothing was sent, it still counts
    assert converted(late).converted_order is None  # a second past the window
    assert converted(early).converted_order is None  # ordered before enrolling
    assert converted(never).converted_order is None


def test_the_order_that_started_an_enrollment_is_not_its_conversion(store):
    ana = person(store, "ana@example.com")
    first = place(store, "o-1", "ana@example.com", T0)
    thanks = enroll(store, ana, journey(store, "thank_you"), at=T0, trigger_type="order", trigger_id="o-1", variant="")
    assert first.placed_at == thanks.enrolled_at
    attribution_run(store=store, now=T0 + timedelta(days=1))
    assert Enrollment.objects.get(pk=thanks.pk).converted_order_id is None
    place(store, "o-2", "ana@example.com", T0 + timedelta(days=2))
    attribution_run(store=store, now=T0 + timedelta(days=3))
    assert Enrollment.objects.select_related("converted_order").get(pk=thanks.pk).converted_order.external_id == "o-2"


def test_a_conversion_is_kept_once_recorded(store):
    ana = person(store, "ana@example.com")
    enrollment = enroll(store, ana, journey(store))
    place(store, "o-1", "ana@example.com", T0 + timedelta(hours=2))
    attribution_run(store=store, now=T0 + timedelta(days=1))
    place(store, "o-0", "ana@example.com", T0 + timedelta(hours=1))
    attribution_run(store=store, now=T0 + timedelta(days=1), full=True)
    assert Enrollment.objects.select_related("converted_order").get(pk=enrollment.pk).converted_order.external_id == "o-1"


# --- the worker does it -----------------------------------------------------------------------------


def test_the_worker_attributes_new_orders(transactional_db, store):
    """Nobody has to call orders_attribute: the worker's dispatcher loop credits orders as they arrive."""
    import threading
    import time

    from django.utils import timezone

    from tertulia.core.worker import run_worker

    now = timezone.now()
    Journey.objects.for_store(store).update(enabled=False)  # only the attribution matters here
    ana = person(store, "ana@example.com")
    sent = now - timedelta(hours=2)
    clicked = message(enroll(store, ana, journey(store), at=sent - timedelta(minutes=30)),
                      sent=sent, clicked=sent + timedelta(minutes=5))
    order = place(store, "o-worker", "ana@example.com", now - timedelta(minutes=1))
    stop = threading.Event()
    thread = threading.Thread(target=run_worker, kwargs={"stop": stop, "poll_interval": 0.05, "housekeeping": False})
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while not Attribution.objects.filter(order=order).exists():
            assert time.monotonic() < deadline, "the worker did not attribute the order"
            time.sleep(0.05)
    finally:
        stop.set()
        thread.join(timeout=60)
    assert Attribution.objects.get(order=order).delivery_id == clicked.pk
