"""Journey definitions: the defaults, validation with field paths, versioned edits, deterministic assignment."""

import copy
from collections import Counter

import pytest

from tertulia.core.errors import ApiError
from tertulia.journeys.definitions import (
    DEFAULTS,
    assignment_for,
    definition_validate,
    journey_update,
    journeys_ensure_defaults,
    steps_effective,
)
from tertulia.journeys.models import Journey, JourneyRevision
from tertulia.journeys.triggers import triggers_sweep
from tests.test_journeys_support import NOW, fresh


def fields(errors):
    return {(e.field, e.code) for e in errors}


def test_every_default_definition_is_valid():
    for key, definition in DEFAULTS.items():
        clean, errors = definition_validate(key, copy.deepcopy(definition))
        assert errors == [], key
        assert clean["steps"]


def test_the_defaults_match_the_issue():
    cart = DEFAULTS["abandoned_cart"]
    assert cart["trigger"]["delay_seconds"] == 1800
    assert [(s["key"], s["channel"], s["delay_seconds"]) for s in cart["steps"]] == [
        ("email_1", "email", 1800), ("sms_1", "sms", 86400)]
    assert cart["steps"][1]["discount"]["percent"] > 0
    assert DEFAULTS["review_request"]["trigger"]["delay_seconds"] == 7 * 86400
    assert len(DEFAULTS["review_request"]["steps"]) == 2  # the request and one reminder
    assert DEFAULTS["winback"]["trigger"]["after_last_order_seconds"] == 90 * 86400
    assert DEFAULTS["referral_request"]["trigger"]["min_rating"] == 4


def test_ensure_defaults_gives_every_journey_on_with_a_first_revision(store):
    journeys = journeys_ensure_defaults(store=store)
    assert sorted(j.key for j in journeys) == sorted(DEFAULTS)
    assert all(j.enabled and j.version == 1 for j in journeys)
    assert JourneyRevision.objects.for_store(store).filter(version=1, changed_by="system").count() == len(DEFAULTS)
    again = journeys_ensure_defaults(store=store)  # idempotent
    assert len(again) == len(DEFAULTS) and JourneyRevision.objects.for_store(store).count() == len(DEFAULTS)


def test_a_store_without_journeys_gets_them_from_the_sweep(store, other_store):
    fresh()
    Journey.objects.filter(store__in=[store, other_store]).delete()
    triggers_sweep(now=NOW)
    assert Journey.objects.for_store(store).filter(enabled=True).count() == len(DEFAULTS)
    assert Journey.objects.for_store(other_store).count() == len(DEFAULTS)


@pytest.mark.parametrize(("key", "change", "expected"), [
    ("abandoned_cart", {"trigger": {"delay_seconds": 30}}, ("trigger.delay_seconds", "out_of_range")),
    ("abandoned_cart", {"trigger": {"delay_seconds": -5}}, ("trigger.delay_seconds", "out_of_range")),
    ("abandoned_cart", {"trigger": {"delay_seconds": "soon"}}, ("trigger.delay_seconds", "invalid_type")),
    ("thank_you", {"steps": [{"key": "email_1", "delay_seconds": 10**9}]}, ("steps[0].delay_seconds", "out_of_range")),
    ("abandoned_cart", {"steps": [{"key": "email_1", "channel": "pigeon"}, {"key": "sms_1"}]},
     ("steps[0].channel", "unknown_channel")),
    ("abandoned_cart", {"steps": [{"key": "email_1", "delay_seconds": 900}, {"key": "sms_1"}]},
     ("steps[0].delay_seconds", "before_trigger")),
    ("abandoned_cart", {"steps": [{"key": "email_1", "delay_seconds": 90000}, {"key": "sms_1"}]},
     ("steps[1].delay_seconds", "out_of_order")),
    ("abandoned_cart", {"holdout_share": 0.95}, ("holdout_share", "out_of_range")),
    ("abandoned_cart", {"holdout_share": -0.1}, ("holdout_share", "out_of_range")),
    ("abandoned_cart", {"variants": [{"key": "a", "weight": 0}]}, ("variants[0].weight", "out_of_range")),
    ("abandoned_cart", {"variants": [{"key": "a", "weight": "x"}]}, ("variants[0].weight", "invalid_type")),
    ("abandoned_cart", {"variants": [{"key": "a"}, {"key": "a"}]}, ("variants[1].key", "duplicate")),
    ("abandoned_cart", {"variants": [{"key": "a", "steps": {"email_9": {"delay_seconds": 3600}}}]},
     ("variants[0].steps.email_9", "unknown_step")),
    ("abandoned_cart", {"variants": [{"key": "a", "steps": {"email_1": {"channel": "fax"}}}]},
     ("variants[0].steps.email_1.channel", "unknown_channel")),
    ("abandoned_cart", {"steps": [{"key": "email_1", "templates": {
        "es": {"subject": "Hola {{ nombre }}", "text": "{{ unsubscribe_url }}"},
        "en": {"subject": "Hi", "text": "{{ unsubscribe_url }}"}}}, {"key": "sms_1"}]},
     ("steps[0].templates.es.subject", "unknown_variable")),
    ("abandoned_cart", {"steps": [{"key": "email_1", "templates": {
        "es": {"subject": "Hola {% if %}", "text": "{{ unsubscribe_url }}"},
        "en": {"subject": "Hi", "text": "{{ unsubscribe_url }}"}}}, {"key": "sms_1"}]},
     ("steps[0].templates.es.subject", "template_syntax")),
    ("abandoned_cart", {"steps": [{"key": "email_1"}, {"key": "sms_1", "templates": {
        "es": {"text": "Tu código {{ discount_code }}"}, "en": {"text": "Your code {{ discount_code }}"}}}]},
     ("steps[1].templates.es.text", "missing_opt_out")),
    ("thank_you", {"steps": [{"key": "email_1", "discount": {"percent": 10, "valid_seconds": 86400}}]},
     ("steps[0].discount", "not_supported")),
    ("winback", {"steps": [{"key": "email_1", "discount": {"percent": 150, "valid_seconds": 86400}}]},
     ("steps[0].discount.percent", "out_of_range")),
    ("review_request", {"trigger": {"category_delays": {"quesos": -1}}}, ("trigger.category_delays.quesos", "out_of_range")),
    ("referral_request", {"trigger": {"min_rating": 6}}, ("trigger.min_rating", "out_of_range")),
    ("welcome", {"trigger": {"double_opt_in": "yes"}}, ("trigger.double_opt_in", "invalid_type")),
    ("thank_you", {"trigger": {"min_rating": 4}}, ("trigger.min_rating", "unknown_field")),
    ("thank_you", {"colour": "red"}, ("colour", "unknown_field")),
    ("thank_you", {"steps": []}, ("steps", "required")),
    ("thank_you", {"steps": [{"key": "email_3", "channel": "email", "delay_seconds": 600}]},
     ("steps[0].templates", "required")),
    ("thank_you", {"attribution": {"basis": "vibes"}}, ("attribution.basis", "invalid_choice")),
])
def test_a_bad_edit_names_the_field_and_keeps_the_last_good_version(store, key, change, expected):
    journeys_ensure_defaults(store=store)
    before = Journey.objects.for_store(store).get(key=key)
    with pytest.raises(ApiError) as raised:
        journey_update(store=store, key=key, changes=change, changed_by="ana")
    assert raised.value.status == 422 and raised.value.code == "invalid_journey"
    assert expected in fields(raised.value.details), fields(raised.value.details)
    after = Journey.objects.for_store(store).get(key=key)
    assert (after.version, after.definition, after.enabled) == (before.version, before.definition, before.enabled)
    assert JourneyRevision.objects.for_store(store).filter(journey=after).count() == 1


def test_an_edit_makes_a_new_version_with_its_revision(store):
    journeys_ensure_defaults(store=store)
    journey = journey_update(store=store, key="abandoned_cart", changed_by="ana", changes={
        "trigger": {"delay_seconds": 900},
        "steps": [{"key": "email_1", "delay_seconds": 900}, {"key": "sms_1"}],
        "holdout_share": 0.2,
        "variants": [{"key": "15m", "weight": 1}, {"key": "1h", "weight": 1, "steps": {"email_1": {"delay_seconds": 3600}}}],
    })
    assert journey.version == 2
    assert journey.definition["trigger"] == {"delay_seconds": 900, "lookback_seconds": 86400}  # merged, not replaced
    assert journey.definition["steps"][1]["channel"] == "sms"  # a step named by key keeps what it had
    revision = JourneyRevision.objects.for_store(store).get(journey=journey, version=2)
    assert revision.changed_by == "ana" and revision.definition == journey.definition
    assert steps_effective(journey.definition, "1h")[0]["delay_seconds"] == 3600
    assert steps_effective(journey.definition, "15m")[0]["delay_seconds"] == 900
    # Switching off is an edit too; repeating it changes nothing.
    assert journey_update(store=store, key="abandoned_cart", changes={"enabled": False}).version == 3
    assert journey_update(store=store, key="abandoned_cart", changes={"enabled": False}).version == 3


def test_unknown_journey_and_bad_body(store):
    with pytest.raises(ApiError) as raised:
        journey_update(store=store, key="birthday", changes={})
    assert raised.value.status == 404
    with pytest.raises(ApiError) as raised:
        journey_update(store=store, key="welcome", changes=["enabled"])
    assert raised.value.status == 400
    with pytest.raises(ApiError) as raised:
        journey_update(store=store, key="welcome", changes={"enabled": "yes"})
    assert ("enabled", "invalid_type") in fields(raised.value.details)


def test_assignment_is_deterministic_and_follows_the_shares():
    definition = {"holdout_share": 0.2, "variants": [{"key": "15m", "weight": 1}, {"key": "1h", "weight": 1},
                                                      {"key": "4h", "weight": 2}]}
    picks = [assignment_for(store_id=7, journey_key="abandoned_cart", customer_id=c, definition=definition)
             for c in range(4000)]
    again = [assignment_for(store_id=7, journey_key="abandoned_cart", customer_id=c, definition=definition)
             for c in range(4000)]
    assert picks == again
    counts = Counter("holdout" if p.holdout else p.variant for p in picks)
    assert 0.17 < counts["holdout"] / 4000 < 0.23
    assert all(p.variant == "" for p in picks if p.holdout)
    assert 0.36 < counts["4h"] / 4000 < 0.44 and 0.17 < counts["15m"] / 4000 < 0.23
    # Another journey or store is an independent draw.
    other = [assignment_for(store_id=7, journey_key="winback", customer_id=c, definition=definition).holdout
             for c in range(4000)]
    assert other != [p.holdout for p in picks]
    nobody = {assignment_for(store_id=1, journey_key="welcome", customer_id=c, definition={"holdout_share": 0})
              for c in range(200)}
    assert {a.holdout for a in nobody} == {False}


def test_the_journeys_command_lists_changes_and_refuses_bad_edits(store):
    from io import StringIO

    from django.core.management import CommandError, call_command

    out = StringIO()
    call_command("journeys", "list", store.slug, stdout=out)
    assert "abandoned_cart    on  v1   email_1:email@1800s, sms_1:sms@86400s" in out.getvalue()
    call_command("journeys", "set", store.slug, "welcome", '{"enabled": false}', stdout=out)
    assert Journey.objects.for_store(store).get(key="welcome").enabled is False
    with pytest.raises(CommandError, match="trigger.delay_seconds"):
        call_command("journeys", "set", store.slug, "abandoned_cart", '{"trigger": {"delay_seconds": 5}}')
    with pytest.raises(CommandError, match="No store"):
        call_command("journeys", "list", "nope")
