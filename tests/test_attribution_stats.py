"""Journey figures and uplift: numbers checked by hand against Newcombe (1998), Table II."""

from datetime import timedelta
from decimal import Decimal

import pytest
from test_attribution import T0, enroll, ingest, journey, message, person, place

from tertulia.journeys.attribution import attribution_run, watermarks_forget
from tertulia.journeys.selectors import journey_stats, journeys_stats, uplift_estimate, wilson_interval


@pytest.fixture(autouse=True)
def _fresh_watermark():
    watermarks_forget()
    yield
    watermarks_forget()


# --- the interval -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("counts", "low", "high"), [
    # Newcombe (1998), Statistics in Medicine 17:873-890, Table II, method 10 (hybrid score).
    ((56, 70, 48, 80), 0.0524, 0.3339),
    ((9, 10, 3, 10), 0.1705, 0.8090),
    ((6, 7, 2, 7), 0.0582, 0.8062),
    ((5, 56, 0, 29), -0.0381, 0.1926),
])
def test_uplift_interval_matches_the_published_values(counts, low, high):
    treated_conversions, treated, holdout_conversions, holdout = counts
    uplift = uplift_estimate(treated=treated, treated_conversions=treated_conversions,
                             holdout=holdout, holdout_conversions=holdout_conversions)
    assert uplift.status == "ok" and uplift.method == "newcombe_hybrid_score"
    assert uplift.difference == pytest.approx(treated_conversions / treated - holdout_conversions / holdout)
    assert (round(uplift.ci_low, 4), round(uplift.ci_high, 4)) == (low, high)


def test_by_hand_for_a_small_journey():
    # 11 of 100 treated bought, 3 of 25 in the holdout did.
    # Wilson(11/100): p=.11, z^2=3.8415, centre=2*100*.11+3.8415=25.8415,
    #   spread=1.96*sqrt(3.8415+4*100*.11*.89)=1.96*sqrt(43.0015)=12.8527, denominator=2*103.8415=207.683
    #   -> (0.06254, 0.18632)
    # Wilson(3/25): p=.12, centre=6+3.8415=9.8415, spread=1.96*sqrt(3.8415+10.56)=7.4379, den=57.683
    #   -> (0.04167, 0.29956)
    # d=-0.01; low=-0.01-sqrt(0.04746^2+0.17956^2)=-0.19573; high=-0.01+sqrt(0.07632^2+0.07833^2)=0.09937
    assert wilson_interval(11, 100) == pytest.approx((0.06254, 0.18632), abs=5e-5)
    assert wilson_interval(3, 25) == pytest.approx((0.04167, 0.29956), abs=5e-5)
    uplift = uplift_estimate(treated=100, treated_conversions=11, holdout=25, holdout_conversions=3)
    assert uplift.difference == pytest.approx(-0.01)
    assert (uplift.ci_low, uplift.ci_high) == pytest.approx((-0.19573, 0.09937), abs=5e-5)
    assert not uplift.significant


def test_extremes_stay_inside_minus_one_and_one():
    everyone = uplift_estimate(treated=10, treated_conversions=10, holdout=20, holdout_conversions=0)
    assert everyone.difference == 1.0 and everyone.ci_high == 1.0
    assert everyone.ci_low == pytest.approx(0.6791, abs=1e-4) and everyone.significant
    nobody = uplift_estimate(treated=10, treated_conversions=0, holdout=20, holdout_conversions=0)
    assert nobody.difference == 0.0
    assert (nobody.ci_low, nobody.ci_high) == pytest.approx((-0.1611, 0.2775), abs=1e-4)


@pytest.mark.parametrize(("treated", "holdout", "status"), [
    (0, 0, "no_enrollments"), (10, 0, "no_holdout"), (0, 10, "no_treated")])
def test_an_empty_group_gives_no_estimate(treated, holdout, status):
    uplift = uplift_estimate(treated=treated, treated_conversions=min(treated, 2),
                             holdout=holdout, holdout_conversions=min(holdout, 1))
    assert uplift.status == status
    assert (uplift.difference, uplift.ci_low, uplift.ci_high) == (None, None, None)
    assert uplift.treated_rate == (0.2 if treated else None)
    assert uplift.holdout_rate == (0.1 if holdout else None)
    assert not uplift.significant


# --- the figures of a journey -----------------------------------------------------------------------

def seed_journey(store):
    """Six treated (three per variant) and four held out; three treated and one held-out person buy."""
    cart = journey(store)
    people = [person(store, f"p{n}@example.com") for n in range(10)]
    enrollments = []
    for n, who in enumerate(people):
        holdout = n >= 6
        variant = "" if holdout else ("15m" if n % 2 == 0 else "1h")
        enrollments.append(enroll(store, who, cart, holdout=holdout, variant=variant))
    for n, enrollment in enumerate(enrollments[:6]):
        clicked = T0 + timedelta(hours=1) if n in (0, 1, 2) else None
        message(enrollment, sent=T0 + timedelta(minutes=30), opened=clicked, clicked=clicked)
        if n == 0:
            message(enrollment, "sms_1", "sms", sent=T0 + timedelta(days=1))
    place(store, "o0", "p0@example.com", T0 + timedelta(hours=2), total="50.00")
    place(store, "o1", "p1@example.com", T0 + timedelta(hours=2), total="20.00")
    place(store, "o2", "p2@example.com", T0 + timedelta(hours=2), total="10.00")
    place(store, "o6", "p6@example.com", T0 + timedelta(hours=2), total="99.00")  # held out: converts, no credit
    ingest(store, ("order_cancelled", {"order_id": "o2"}, T0 + timedelta(hours=3)))
    attribution_run(store=store, now=T0 + timedelta(days=2))
    return cart


def test_journey_figures(store):
    seed_journey(store)
    stats = journey_stats(store=store, key="abandoned_cart")
    assert (stats.enrollments, stats.treated, stats.holdout) == (10, 6, 4)
    assert stats.conversions == 3  # p0, p1 and p6; p2's order was cancelled
    assert (stats.messages.sent, stats.messages.opened, stats.messages.clicked) == (7, 3, 3)
    assert (stats.attributed_orders, stats.recovered_revenue) == (2, Decimal("70.00"))
    assert stats.conversion_revenue == Decimal("70.00")
    assert stats.recovery_rate == pytest.approx(2 / 6)

    uplift = stats.uplift
    assert (uplift.treated, uplift.treated_conversions, uplift.holdout, uplift.holdout_conversions) == (6, 2, 4, 1)
    assert uplift.difference == pytest.approx(2 / 6 - 1 / 4)
    expected = uplift_estimate(treated=6, treated_conversions=2, holdout=4, holdout_conversions=1)
    assert (uplift.ci_low, uplift.ci_high) == (expected.ci_low, expected.ci_high)

    steps = {b.key: b for b in stats.by_step}
    assert [b.key for b in stats.by_step] == ["email_1", "sms_1"]
    assert (steps["email_1"].messages.sent, steps["email_1"].attributed_orders, steps["email_1"].revenue) == (
        6, 2, Decimal("70.00"))
    assert (steps["sms_1"].messages.sent, steps["sms_1"].attributed_orders) == (1, 0)
    assert {b.key: b.revenue for b in stats.by_channel} == {"email": Decimal("70.00"), "sms": Decimal("0.00")}
    assert {b.key: b.revenue for b in stats.by_variant} == {"15m": Decimal("50.00"), "1h": Decimal("20.00")}

    delays = [(b.variant, b.delay_seconds, b.enrollments, b.conversions, b.revenue) for b in stats.by_delay]
    assert delays == [("15m", 900, 3, 1, Decimal("50.00")), ("1h", 3600, 3, 1, Decimal("20.00"))]
    assert stats.by_delay[0].rate == pytest.approx(1 / 3)


def test_figures_are_per_store_and_per_period(store, other_store):
    seed_journey(store)
    journey(other_store)
    assert journey_stats(store=other_store, key="abandoned_cart").enrollments == 0
    later = journey_stats(store=store, key="abandoned_cart", since=T0 + timedelta(days=1))
    assert (later.enrollments, later.attributed_orders, later.uplift.status) == (0, 0, "no_enrollments")
    assert journey_stats(store=store, key="welcome") is None
    every = journeys_stats(store=store)
    assert list(every) == ["abandoned_cart"]


def test_a_journey_without_variants_has_one_delay_bucket(store):
    cart = journey(store)
    cart.definition = {**cart.definition, "variants": []}
    cart.save()
    stats = journey_stats(store=store, key="abandoned_cart")
    assert [(b.variant, b.delay_seconds, b.enrollments, b.rate) for b in stats.by_delay] == [("", 1800, 0, None)]
    assert stats.uplift.status == "no_enrollments"
