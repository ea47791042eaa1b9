"""Reviews and the journeys of #3: a review ends the review request; a good published one starts the referral request."""

from datetime import timedelta

import pytest
from ugc_support import catalogue, delivered_order, review_token, scripted_moderation

from tertulia.customers.services import consent_record
from tertulia.journeys.models import Enrollment, JourneyKey
from tertulia.journeys.services import journeys_ensure_defaults
from tertulia.journeys.triggers import triggers_sweep
from tertulia.ugc import services
from tertulia.ugc.models import ContentType


@pytest.fixture
def script(monkeypatch):
    return scripted_moderation(monkeypatch)


@pytest.fixture
def order(store):
    catalogue(store)
    journeys_ensure_defaults(store=store)
    order = delivered_order(store, email="lucia@example.com", skus=["ACE-1", "ACE-2"], order_id="o-1")
    consent_record(store=store, customer_id=order.customer_id, channel="email", status="subscribed",
                   source="checkout", occurred_at=order.placed_at)
    # Seven days after delivery the review request starts (default delay).
    triggers_sweep(store=store, now=order.delivered_at + timedelta(days=7, minutes=1), full=True)
    return order


def enrollment(store, key):
    return Enrollment.objects.for_store(store).filter(journey_key=key).first()


def test_a_published_good_review_ends_the_request_and_starts_the_referral(store, order, script):
    assert enrollment(store, JourneyKey.REVIEW_REQUEST).status == "active"
    product = catalogue(store)["ACE-1"]
    moment = order.delivered_at + timedelta(days=8)

    services.review_submit(store=store, product=product, rating=5, text="Buenísimo.", token=review_token(order),
                           now=moment)

    request = enrollment(store, JourneyKey.REVIEW_REQUEST)
    assert (request.status, request.exit_reason) == ("exited", "reviewed")
    referral = enrollment(store, JourneyKey.REFERRAL_REQUEST)
    assert (referral.trigger_type, referral.customer_id) == ("review", order.customer_id)


def test_a_poor_review_starts_no_referral(store, order, script):
    product = catalogue(store)["ACE-1"]
    services.review_submit(store=store, product=product, rating=2, text="Llegó roto.", token=review_token(order),
                           now=order.delivered_at + timedelta(days=8))
    assert enrollment(store, JourneyKey.REVIEW_REQUEST).exit_reason == "reviewed"
    assert enrollment(store, JourneyKey.REFERRAL_REQUEST) is None


def test_a_held_review_starts_the_referral_when_a_moderator_approves_it(store, order, script):
    product = catalogue(store)["ACE-1"]
    moment = order.delivered_at + timedelta(days=8)
    held = services.review_submit(store=store, product=product, rating=5, text="Genial [hold:promotional]",
                                  token=review_token(order), now=moment)
    assert held.status == "held" and enrollment(store, JourneyKey.REFERRAL_REQUEST) is None

    services.content_decide(store=store, content_type=ContentType.REVIEW, ids=[held.id], action="approve",
                            user=None, now=moment + timedelta(hours=1))

    assert enrollment(store, JourneyKey.REFERRAL_REQUEST).trigger_id == str(held.id)
