"""Exit conditions checked at send time by deliveries_prepare, and the exits other apps call."""

from datetime import timedelta

import pytest

from tertulia.channels.models import Delivery, DeliveryStatus
from tertulia.journeys.definitions import journey_update, journeys_ensure_defaults
from tertulia.journeys.models import EnrollmentStatus
from tertulia.journeys.services import (
    Send,
    Skip,
    deliveries_finished,
    deliveries_prepare,
    enrollment_answer,
    enrollments_exit,
)
from tertulia.journeys.triggers import triggers_sweep
from tests.test_journeys_support import NOW, cart, deliveries, enrollments, fresh, order, subscribe

DUE = NOW + timedelta(minutes=30)


@pytest.fixture
def recovery(store):
    """Ana left a cart at NOW with e-mail and SMS consent; the recovery journey enrolled her."""
    fresh()
    journeys_ensure_defaults(store=store)
    journey_update(store=store, key="abandoned_cart", changes={"holdout_share": 0})
    subscribe(store, "ana@example.com", first_name="Ana", phone="+34600111222")
    subscribe(store, "ana@example.com", channel="sms")
    cart(store, "ana@example.com", "c1", at=NOW)
    assert triggers_sweep(now=DUE, store=store) == 1
    return store


def first_step(store) -> Delivery:
    return deliveries(store, "abandoned_cart").get(step_key="email_1")


def claim(delivery: Delivery) -> Delivery:
    """What the dispatcher does before preparing: the row is being sent."""
    Delivery.objects.filter(pk=delivery.pk).update(status=DeliveryStatus.SENDING)
    delivery.refresh_from_db()
    return delivery


def assert_exited(store, reason: str, prepared) -> None:
    assert isinstance(prepared, Skip) and prepared.reason == reason and prepared.exit
    enrollment = enrollments(store, "abandoned_cart").get()
    assert (enrollment.status, enrollment.exit_reason) == (EnrollmentStatus.EXITED, reason)
    assert enrollment.ended_at is not None
    later = deliveries(store, "abandoned_cart").get(step_key="sms_1")
    assert (later.status, later.reason) == (DeliveryStatus.CANCELLED, reason)


def test_nothing_happened_so_the_message_goes(recovery):
    delivery = claim(first_step(recovery))
    prepared = deliveries_prepare(deliveries=[delivery], now=DUE)[delivery.pk]
    assert isinstance(prepared, Send)
    assert prepared.to == "ana@example.com" and "Ana" in prepared.subject
    assert "https://tienda.example/cart/c1" in prepared.links
    assert prepared.headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert enrollments(recovery).get().status == EnrollmentStatus.ACTIVE


def test_exit_when_an_order_is_placed(recovery):
    order(recovery, "ana@example.com", "o1", at=NOW + timedelta(minutes=10))  # not from this cart
    delivery = claim(first_step(recovery))
    assert_exited(recovery, "order_placed", deliveries_prepare(deliveries=[delivery], now=DUE)[delivery.pk])


def test_exit_when_the_cart_is_converted(recovery):
    order(recovery, "ana@example.com", "o1", at=NOW + timedelta(minutes=10), cart_id="c1")
    delivery = claim(first_step(recovery))
    assert_exited(recovery, "order_placed", deliveries_prepare(deliveries=[delivery], now=DUE)[delivery.pk])


def test_exit_when_the_cart_is_emptied(recovery):
    cart(recovery, "ana@example.com", "c1", at=NOW + timedelta(minutes=10), items=[])
    delivery = claim(first_step(recovery))
    assert_exited(recovery, "cart_emptied", deliveries_prepare(deliveries=[delivery], now=DUE)[delivery.pk])


def test_exit_when_unsubscribed_on_any_channel(recovery):
    # She stops SMS; the e-mail would still be allowed, but an unsubscribe anywhere ends the journey.
    subscribe(recovery, "ana@example.com", channel="sms", status="unsubscribed", at=NOW + timedelta(minutes=5))
    delivery = claim(first_step(recovery))
    assert_exited(recovery, "unsubscribed", deliveries_prepare(deliveries=[delivery], now=DUE)[delivery.pk])


def test_an_old_unsubscribe_elsewhere_does_not_end_it(store):
    fresh()
    journeys_ensure_defaults(store=store)
    journey_update(store=store, key="abandoned_cart", changes={"holdout_share": 0})
    subscribe(store, "ana@example.com", phone="+34600111222")
    subscribe(store, "ana@example.com", channel="sms", status="unsubscribed", at=NOW - timedelta(days=5))
    cart(store, "ana@example.com", "c1", at=NOW)
    triggers_sweep(now=DUE, store=store)
    delivery = claim(first_step(store))
    assert isinstance(deliveries_prepare(deliveries=[delivery], now=DUE)[delivery.pk], Send)


def test_exit_when_answered(recovery):
    enrollment = enrollments(recovery).get()
    delivery = claim(first_step(recovery))
    answered = enrollment_answer(store=recovery, enrollment_id=enrollment.pk, answer="shipping", note="Demasiado caro")
    assert (answered.status, answered.exit_reason, answered.answer) == (EnrollmentStatus.EXITED, "answered", "shipping")
    assert answered.context["answer_note"] == "Demasiado caro"
    assert deliveries(recovery).get(step_key="sms_1").status == DeliveryStatus.CANCELLED
    # A second click keeps the first answer; the step in flight is skipped.
    assert enrollment_answer(store=recovery, enrollment_id=enrollment.pk, answer="price").answer == "shipping"
    prepared = deliveries_prepare(deliveries=[delivery], now=DUE)[delivery.pk]
    assert isinstance(prepared, Skip) and prepared.reason == "answered"
    assert enrollment_answer(store=recovery, enrollment_id=999999, answer="price") is None


def test_enrollments_exit_from_an_unsubscribe_link(recovery, other_store):
    customer_id = enrollments(recovery).get().customer_id
    assert enrollments_exit(store=other_store, customer_id=customer_id, reason="unsubscribed") == 0
    assert enrollments_exit(store=recovery, customer_id=customer_id, reason="unsubscribed") == 1
    assert set(deliveries(recovery).values_list("status", flat=True)) == {DeliveryStatus.CANCELLED}
    assert enrollments_exit(store=recovery, customer_id=customer_id, reason="unsubscribed") == 0


def test_exit_when_the_journey_is_switched_off(recovery):
    journey_update(store=recovery, key="abandoned_cart", changes={"enabled": False})
    delivery = claim(first_step(recovery))
    assert_exited(recovery, "journey_disabled", deliveries_prepare(deliveries=[delivery], now=DUE)[delivery.pk])


def test_a_missing_address_skips_only_that_step(recovery):
    sms = claim(deliveries(recovery).get(step_key="sms_1"))
    Delivery.objects.filter(pk=sms.pk).update(channel="social_dm")
    sms.refresh_from_db()
    prepared = deliveries_prepare(deliveries=[sms], now=DUE)[sms.pk]
    assert isinstance(prepared, Skip) and prepared.reason == "no_address" and not prepared.exit
    assert enrollments(recovery).get().status == EnrollmentStatus.ACTIVE


def test_steps_done_complete_the_enrollment(recovery):
    for delivery in deliveries(recovery):
        Delivery.objects.filter(pk=delivery.pk).update(status=DeliveryStatus.SENT)
    assert deliveries_finished(deliveries=list(deliveries(recovery)), now=DUE) == 1
    enrollment = enrollments(recovery).get()
    assert enrollment.status == EnrollmentStatus.COMPLETED and enrollment.ended_at == DUE


def test_an_edit_after_enrollment_does_not_change_what_was_planned(recovery):
    journey_update(store=recovery, key="abandoned_cart", changes={
        "steps": [{"key": "email_1"}]})  # the SMS step removed from version 3
    sms = claim(deliveries(recovery).get(step_key="sms_1"))
    prepared = deliveries_prepare(deliveries=[sms], now=NOW + timedelta(days=1))[sms.pk]
    assert isinstance(prepared, Send) and prepared.to == "+34600111222"
    assert "VUELVE-" in prepared.text  # the discount of the version she was enrolled under


def test_batch_prepares_many_with_few_queries(store, django_assert_max_num_queries):
    fresh()
    journeys_ensure_defaults(store=store)
    journey_update(store=store, key="abandoned_cart", changes={"holdout_share": 0})
    for number in range(40):
        subscribe(store, f"p{number}@example.com")
        cart(store, f"p{number}@example.com", f"c{number}", at=NOW)
    triggers_sweep(now=DUE, store=store)
    batch = [claim(d) for d in deliveries(store, "abandoned_cart").filter(step_key="email_1")]
    assert len(batch) == 40
    with django_assert_max_num_queries(20):
        prepared = deliveries_prepare(deliveries=batch, now=DUE)
    assert all(isinstance(p, Send) for p in prepared.values()) and len(prepared) == 40
