"""Discount and referral codes: unique and single-use, redeemed from orders, referrals attributed and rewarded."""

import json
from datetime import timedelta
from pathlib import Path

import pytest

from tertulia.channels.models import Delivery, DeliveryStatus
from tertulia.commerce.models import Order
from tertulia.core.errors import ApiError
from tertulia.events.services import events_ingest
from tertulia.events.webhooks.shopify import order_events as shopify_order_events
from tertulia.events.webhooks.woocommerce import order_events as woocommerce_order_events
from tertulia.journeys.codes import ALPHABET, CodeRequest, discount_codes_issue, referral_codes_ensure
from tertulia.journeys.definitions import journey_update, journeys_ensure_defaults
from tertulia.journeys.models import DiscountCode, DiscountKind, Referral, ReferralCode
from tertulia.journeys.services import Send, deliveries_prepare, journeys_trigger_review
from tertulia.journeys.triggers import triggers_sweep
from tests.conftest import make_event
from tests.test_journeys_support import NOW, cart, deliveries, fresh, order, subscribe

FIXTURES = Path(__file__).parent / "fixtures" / "ecommerce"


def _claim(delivery):
    Delivery.objects.filter(pk=delivery.pk).update(status=DeliveryStatus.SENDING)
    delivery.refresh_from_db()
    return delivery


def test_codes_are_unique_and_unguessable(store):
    codes = discount_codes_issue(store=store, requests=[
        CodeRequest(kind=DiscountKind.RECOVERY, percent=10, customer_id=None, enrollment_id=None, expires_at=None)
        for _ in range(300)])
    assert len(set(codes)) == 300
    for code in codes:
        prefix, body = code.split("-")
        assert prefix == "VUELVE" and len(body) == 10 and set(body) <= set(ALPHABET)


def test_the_recovery_sms_carries_a_single_use_code(store):
    fresh()
    journeys_ensure_defaults(store=store)
    journey_update(store=store, key="abandoned_cart", changes={"holdout_share": 0})
    subscribe(store, "ana@example.com", phone="+34600111222")
    subscribe(store, "ana@example.com", channel="sms")
    cart(store, "ana@example.com", "c1", at=NOW - timedelta(days=1))
    triggers_sweep(now=NOW, store=store)
    sms = _claim(deliveries(store).get(step_key="sms_1"))
    first = deliveries_prepare(deliveries=[sms], now=NOW)[sms.pk]
    again = deliveries_prepare(deliveries=[sms], now=NOW)[sms.pk]  # a retried send
    code = DiscountCode.objects.for_store(store).get()
    assert isinstance(first, Send) and code.code in first.text and code.code in again.text
    assert code.kind == DiscountKind.RECOVERY and code.percent == 10
    assert code.expires_at == NOW + timedelta(days=2) and code.used_at is None

    # The code comes back on an order (lower case, as typed): used once, by that order only.
    order(store, "ana@example.com", "o1", at=NOW + timedelta(minutes=5), codes=[code.code.lower()])
    order(store, "bea@example.com", "o2", at=NOW + timedelta(minutes=9), codes=[code.code])
    code.refresh_from_db()
    used_by = Order.objects.for_store(store).get(external_id="o1")
    assert code.used_at == NOW + timedelta(minutes=5) and code.order_id == used_by.pk
    assert used_by.discount_codes == [code.code.lower()]


def test_referral_codes_are_personal_and_orders_using_them_reward_the_referrer(store):
    fresh()
    journeys_ensure_defaults(store=store)
    ana = subscribe(store, "ana@example.com", first_name="Lucía")
    assert journeys_trigger_review(store=store, customer_id=ana.pk, review_id=7, rating=5, at=NOW, now=NOW)
    step = _claim(deliveries(store, "referral_request").get())
    prepared = deliveries_prepare(deliveries=[step], now=NOW + timedelta(hours=1))[step.pk]
    referral = ReferralCode.objects.for_store(store).get(customer=ana)
    assert referral.code.startswith("LUCIA-")
    assert isinstance(prepared, Send) and referral.code in prepared.text
    assert any(f"ref={referral.code}" in link for link in prepared.links)
    assert referral_codes_ensure(store=store, customers={ana.pk: "Lucía"}) == {ana.pk: referral.code}

    order(store, "friend@example.com", "o-friend", at=NOW + timedelta(hours=3), codes=[referral.code])
    order(store, "ana@example.com", "o-self", at=NOW + timedelta(hours=4), codes=[referral.code])  # not a referral
    made = Referral.objects.for_store(store).get()
    assert made.referrer_id == ana.pk and made.order.external_id == "o-friend"
    assert made.referred.identities.get().value == "friend@example.com"
    assert made.reward.kind == DiscountKind.REFERRAL_REWARD and made.reward.customer_id == ana.pk
    assert made.reward.percent == 15 and made.reward.used_at is None
    # A replay of the friend's order changes nothing.
    order(store, "friend@example.com", "o-friend", at=NOW + timedelta(hours=3), codes=[referral.code])
    assert Referral.objects.for_store(store).count() == 1
    assert DiscountCode.objects.for_store(store).filter(kind=DiscountKind.REFERRAL_REWARD).count() == 1


def test_order_placed_validates_discount_codes(store):
    with pytest.raises(ApiError) as raised:
        events_ingest(store=store, events=[make_event("order_placed", {
            "order_id": "o1", "items": [], "total": "1", "currency": "EUR", "discount_codes": ["OK", 5, " "]})])
    assert {(d.field, d.code) for d in raised.value.details} == {
        ("data.discount_codes[1]", "invalid_type"), ("data.discount_codes[2]", "blank")}
    with pytest.raises(ApiError) as raised:
        events_ingest(store=store, events=[make_event("order_placed", {
            "order_id": "o1", "items": [], "total": "1", "currency": "EUR", "discount_codes": "TENOFF"})])
    assert raised.value.details[0].field == "data.discount_codes"
    events_ingest(store=store, events=[make_event("order_placed", {
        "order_id": "o1", "items": [], "total": "1", "currency": "EUR", "discount_codes": [" TENOFF ", "tenoff"]})])
    assert Order.objects.for_store(store).get().discount_codes == ["TENOFF"]


def test_shopify_and_woocommerce_orders_pass_their_codes_through():
    payload = json.loads((FIXTURES / "shopify" / "shopify_python_api_fixtures" / "order.json").read_text())
    payload = payload.get("order", payload)
    placed = next(e for e in shopify_order_events(payload, topic="orders/create", currency="EUR")
                  if e["type"] == "order_placed")
    assert placed["data"]["discount_codes"] == ["TENOFF"]

    woo = json.loads((FIXTURES / "woocommerce" / "order_created_payload_wc-v3.json").read_text())
    woo["status"] = "processing"
    # The REST API's coupon line shape (id, code, discount, discount_tax, meta_data).
    woo["coupon_lines"] = [{"id": 9, "code": "amigo-ab12", "discount": "5.00", "discount_tax": "0.00", "meta_data": []}]
    placed = next(e for e in woocommerce_order_events(woo, currency="EUR") if e["type"] == "order_placed")
    assert placed["data"]["discount_codes"] == ["amigo-ab12"]
    woo["coupon_lines"] = []
    placed = next(e for e in woocommerce_order_events(woo, currency="EUR") if e["type"] == "order_placed")
    assert "discount_codes" not in placed["data"]
