"""What a journey is: the seven default definitions, their validation, edits with versions, variant assignment.

A definition is JSON kept on Journey.definition (shape in docs/journeys.md):

    {"trigger": {...}, "steps": [{"key", "channel", "delay_seconds", "templates"?, "discount"?}],
     "holdout_share": 0.1, "variants": [{"key", "weight", "steps": {step key: overrides}}],
     "attribution": {"window_seconds", "basis"}, "frequency_exempt": false, "referral"?: {...}}

Step delays count from the moment of the fact that triggered the journey (Enrollment.trigger_at: the
cart's last activity, the order's placement or delivery, the review, the subscription, the last
order, the moment a mention was heard). The trigger says when a person is enrolled:
`trigger.delay_seconds` after that fact, so no step may be due before it. A few journeys wait longer than that on purpose (a category's own review
delay, the time after delivery that asks for a referral, the time since the last order of a win-back):
that wait replaces `delay_seconds` and moves every step by the difference (Enrollment.context
`shift_seconds`). A step without `templates` uses the shipped texts (journeys.rendering.default_templates),
so stores that never edit a message get improvements to the defaults.
"""

import copy
import hashlib
import re
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.utils import timezone

from tertulia.core.errors import ApiError, ErrorDetail
from tertulia.core.models import Store
from tertulia.journeys import rendering
from tertulia.journeys.models import Journey, JourneyKey, JourneyRevision

MINUTE = 60
HOUR = 3600
DAY = 86400
MAX_DELAY_SECONDS = 365 * DAY
MIN_CART_DELAY_SECONDS = 60  # an abandoned cart needs at least a minute of silence
MAX_HOLDOUT_SHARE = 0.9
MAX_STEPS = 10
MAX_VARIANTS = 10
CHANNELS = ("email", "sms", "social_dm")
CONFIRM_STEP = "confirm"  # the double opt-in e-mail of the welcome journey (not one of its editable steps)
_KEY = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")

_COMMON = {
    "holdout_share": 0.0,
    "variants": [],
    "attribution": {"window_seconds": 5 * DAY, "basis": "click"},
    "frequency_exempt": False,
}

DEFAULTS: dict[str, dict[str, Any]] = {
    JourneyKey.ABANDONED_CART: {
        # Enrolled after 30 minutes without activity; carts quiet for longer than a day are history.
        "trigger": {"delay_seconds": 30 * MINUTE, "lookback_seconds": DAY},
        "steps": [
            {"key": "email_1", "channel": "email", "delay_seconds": 30 * MINUTE},
            {"key": "sms_1", "channel": "sms", "delay_seconds": DAY,
             "discount": {"percent": 10, "valid_seconds": 2 * DAY}},
        ],
        **_COMMON,
        "holdout_share": 0.1,
    },
    JourneyKey.THANK_YOU: {
        "trigger": {"delay_seconds": 0, "lookback_seconds": DAY},
        # Ten minutes after the order, so the shop's own order confirmation arrives first.
        "steps": [{"key": "email_1", "channel": "email", "delay_seconds": 10 * MINUTE}],
        **_COMMON,
    },
    JourneyKey.REVIEW_REQUEST: {
        # Asked 7 days after delivery (or the category's own delay), reminded 4 days later.
        "trigger": {"delay_seconds": 7 * DAY, "category_delays": {}, "lookback_seconds": 7 * DAY},
        "steps": [
            {"key": "email_1", "channel": "email", "delay_seconds": 7 * DAY},
            {"key": "email_2", "channel": "email", "delay_seconds": 11 * DAY},
        ],
        **_COMMON,
    },
    JourneyKey.REFERRAL_REQUEST: {
        # After a 4- or 5-star review, or 21 days after delivery for those who wrote none; once per 90 days.
        "trigger": {"delay_seconds": 0, "min_rating": 4, "after_delivery_seconds": 21 * DAY,
                    "cooldown_seconds": 90 * DAY, "lookback_seconds": 7 * DAY},
        "steps": [{"key": "email_1", "channel": "email", "delay_seconds": HOUR}],
        "referral": {"reward_percent": 15, "reward_valid_seconds": 60 * DAY, "link": "{store_url}/?ref={code}"},
        **_COMMON,
    },
    JourneyKey.WELCOME: {
        "trigger": {"delay_seconds": 0, "double_opt_in": False, "lookback_seconds": 7 * DAY},
        "steps": [{"key": "email_1", "channel": "email", "delay_seconds": 0}],
        **_COMMON,
    },
    JourneyKey.WINBACK: {
        "trigger": {"delay_seconds": 0, "after_last_order_seconds": 90 * DAY, "lookback_seconds": 7 * DAY},
        "steps": [{"key": "email_1", "channel": "email", "delay_seconds": 0,
                   "discount": {"percent": 15, "valid_seconds": 14 * DAY}}],
        **_COMMON,
        "holdout_share": 0.1,
    },
    JourneyKey.PURCHASE_INTENT: {
        # A known person said on social media they want to buy: a quarter of an hour gives the team the
        # chance to answer in public first (an answer ends the journey); once a week per person at most.
        "trigger": {"delay_seconds": 15 * MINUTE, "cooldown_seconds": 7 * DAY, "lookback_seconds": DAY},
        "steps": [{"key": "email_1", "channel": "email", "delay_seconds": 15 * MINUTE}],
        **_COMMON,
    },
}

# The trigger fields each journey understands; anything else is refused rather than silently ignored.
TRIGGER_FIELDS: dict[str, frozenset[str]] = {
    JourneyKey.ABANDONED_CART: frozenset({"delay_seconds", "lookback_seconds"}),
    JourneyKey.THANK_YOU: frozenset({"delay_seconds", "lookback_seconds"}),
    JourneyKey.REVIEW_REQUEST: frozenset({"delay_seconds", "lookback_seconds", "category_delays"}),
    JourneyKey.REFERRAL_REQUEST: frozenset({"delay_seconds", "lookback_seconds", "min_rating",
                                            "after_delivery_seconds", "cooldown_seconds"}),
    JourneyKey.WELCOME: frozenset({"delay_seconds", "lookback_seconds", "double_opt_in", "confirm_templates"}),
    JourneyKey.WINBACK: frozenset({"delay_seconds", "lookback_seconds", "after_last_order_seconds"}),
    JourneyKey.PURCHASE_INTENT: frozenset({"delay_seconds", "lookback_seconds", "cooldown_seconds"}),
}
# Journeys whose messages can carry a unique discount code (their templates offer `discount_code`).
DISCOUNT_JOURNEYS = frozenset({JourneyKey.ABANDONED_CART, JourneyKey.WINBACK})
TOP_LEVEL = frozenset({"trigger", "steps", "holdout_share", "variants", "attribution", "frequency_exempt"})
EXTRA_TOP_LEVEL = {JourneyKey.REFERRAL_REQUEST: frozenset({"referral"})}
STEP_FIELDS = frozenset({"key", "channel", "delay_seconds", "templates", "discount"})
OVERRIDE_FIELDS = frozenset({"delay_seconds", "channel", "templates", "discount"})


def journey_keys() -> list[str]:
    return [key.value for key in JourneyKey]


def default_definition(key: str) -> dict[str, Any]:
    return copy.deepcopy(DEFAULTS[key])


# --- Validation ---------------------------------------------------------------------------------------


class _Problems:
    def __init__(self) -> None:
        self.details: list[ErrorDetail] = []

    def add(self, field: str, code: str, message: str) -> None:
        self.details.append(ErrorDetail(field=field, code=code, message=message))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value == value  # NaN is not a number


def _seconds(problems: _Problems, value: Any, field: str, *, minimum: int = 0, maximum: int = MAX_DELAY_SECONDS,
             required: bool = True) -> int | None:
    if value is None:
        if required:
            problems.add(field, "required", "This field is required (a number of seconds).")
        return None
    if not _is_int(value):
        problems.add(field, "invalid_type", "Must be a whole number of seconds.")
        return None
    if value < minimum or value > maximum:
        problems.add(field, "out_of_range", f"Must be between {minimum} and {maximum} seconds "
                                            f"({_human(minimum)} to {_human(maximum)}).")
        return None
    return value


def _human(seconds: int) -> str:
    for size, unit in ((DAY, "day"), (HOUR, "hour"), (MINUTE, "minute")):
        if seconds >= size and seconds % size == 0:
            count = seconds // size
            return f"{count} {unit}{'' if count == 1 else 's'}"
    return f"{seconds} second{'' if seconds == 1 else 's'}"


def _unknown_fields(problems: _Problems, data: dict, allowed: frozenset[str], path: str) -> None:
    for name in data:
        if name not in allowed:
            where = f"{path}.{name}" if path else str(name)
            problems.add(where, "unknown_field", f"Unknown field '{name}'. Known: {', '.join(sorted(allowed))}.")


def _templates_check(problems: _Problems, *, journey_key: str, step_key: str, channel: str, templates: Any,
                     field: str, explicit: bool) -> None:
    """Explicit templates are checked by the rendering module; absent ones must exist among the defaults."""
    if explicit:
        problems.details.extend(rendering.templates_validate(journey_key=journey_key, channel=channel,
                                                             templates=templates, field=field))
        return
    try:
        rendering.default_templates(journey_key, step_key, channel)
    except KeyError:
        problems.add(field, "required", f"There are no default texts for step '{step_key}' on {channel}; "
                                        "write its templates (es and en).")


def _discount(problems: _Problems, value: Any, field: str, journey_key: str) -> dict | None:
    if value is None:
        return None
    if journey_key not in DISCOUNT_JOURNEYS:
        problems.add(field, "not_supported", "Only abandoned-cart and win-back messages carry a discount code.")
        return None
    if not isinstance(value, dict):
        problems.add(field, "invalid_type", "Must be an object with percent and valid_seconds.")
        return None
    _unknown_fields(problems, value, frozenset({"percent", "valid_seconds"}), field)
    percent = value.get("percent")
    if not _is_int(percent) or not 1 <= percent <= 100:
        problems.add(f"{field}.percent", "out_of_range" if _is_int(percent) else "invalid_type",
                     "Must be a whole percentage between 1 and 100.")
    _seconds(problems, value.get("valid_seconds"), f"{field}.valid_seconds", minimum=HOUR)
    return value


def _trigger_validate(problems: _Problems, key: str, trigger: Any) -> dict:
    if not isinstance(trigger, dict):
        problems.add("trigger", "invalid_type" if trigger is not None else "required", "Must be an object.")
        return {}
    _unknown_fields(problems, trigger, TRIGGER_FIELDS[key], "trigger")
    minimum = MIN_CART_DELAY_SECONDS if key == JourneyKey.ABANDONED_CART else 0
    _seconds(problems, trigger.get("delay_seconds"), "trigger.delay_seconds", minimum=minimum)
    _seconds(problems, trigger.get("lookback_seconds"), "trigger.lookback_seconds", minimum=MINUTE)
    if key == JourneyKey.REVIEW_REQUEST:
        delays = trigger.get("category_delays", {})
        if not isinstance(delays, dict):
            problems.add("trigger.category_delays", "invalid_type", "Must be an object of category id: seconds.")
        else:
            for category, seconds in delays.items():
                if not isinstance(category, str) or not category.strip() or len(category) > 128:
                    problems.add(f"trigger.category_delays.{category}", "invalid_key",
                                 "Name a category by its id (at most 128 characters).")
                _seconds(problems, seconds, f"trigger.category_delays.{category}")
    if key == JourneyKey.REFERRAL_REQUEST:
        rating = trigger.get("min_rating")
        if not _is_int(rating) or not 1 <= rating <= 5:
            problems.add("trigger.min_rating", "out_of_range" if _is_int(rating) else "invalid_type",
                         "Must be a whole number of stars from 1 to 5.")
        _seconds(problems, trigger.get("after_delivery_seconds"), "trigger.after_delivery_seconds", required=False)
        _seconds(problems, trigger.get("cooldown_seconds", 0), "trigger.cooldown_seconds")
    if key == JourneyKey.WELCOME:
        if not isinstance(trigger.get("double_opt_in", False), bool):
            problems.add("trigger.double_opt_in", "invalid_type", "Must be true or false.")
        if trigger.get("confirm_templates") is not None:
            _templates_check(problems, journey_key=key, step_key=CONFIRM_STEP, channel="email",
                             templates=trigger["confirm_templates"], field="trigger.confirm_templates", explicit=True)
    if key == JourneyKey.WINBACK:
        _seconds(problems, trigger.get("after_last_order_seconds"), "trigger.after_last_order_seconds", minimum=DAY)
    if key == JourneyKey.PURCHASE_INTENT:
        _seconds(problems, trigger.get("cooldown_seconds", 0), "trigger.cooldown_seconds")
    return trigger


def _steps_validate(problems: _Problems, key: str, steps: Any, trigger_delay: int | None) -> list[dict]:
    if not isinstance(steps, list):
        problems.add("steps", "invalid_type" if steps is not None else "required", "Must be a list of steps.")
        return []
    if not steps:
        problems.add("steps", "required", "A journey needs at least one step.")
        return []
    if len(steps) > MAX_STEPS:
        problems.add("steps", "too_many", f"At most {MAX_STEPS} steps.")
        return []
    seen: set[str] = set()
    valid: list[dict] = []
    for position, step in enumerate(steps):
        path = f"steps[{position}]"
        if not isinstance(step, dict):
            problems.add(path, "invalid_type", "Must be an object with key, channel and delay_seconds.")
            continue
        _unknown_fields(problems, step, STEP_FIELDS, path)
        step_key = step.get("key")
        if not isinstance(step_key, str) or not _KEY.match(step_key):
            problems.add(f"{path}.key", "invalid_key",
                         "Must be 1-32 lower-case letters, digits, '_' or '-', such as email_1.")
            step_key = None
        elif step_key == CONFIRM_STEP:
            problems.add(f"{path}.key", "reserved", f"'{CONFIRM_STEP}' is the double opt-in e-mail; choose another key.")
        elif step_key in seen:
            problems.add(f"{path}.key", "duplicate", f"Another step is already called '{step_key}'.")
        else:
            seen.add(step_key)
        channel = step.get("channel")
        if channel not in CHANNELS:
            problems.add(f"{path}.channel", "unknown_channel" if channel is not None else "required",
                         f"Unknown channel {channel!r}. Use one of: {', '.join(CHANNELS)}.")
            channel = None
        _seconds(problems, step.get("delay_seconds"), f"{path}.delay_seconds")
        _discount(problems, step.get("discount"), f"{path}.discount", key)
        if step_key and channel:
            _templates_check(problems, journey_key=key, step_key=step_key, channel=channel,
                             templates=step.get("templates"), field=f"{path}.templates",
                             explicit=step.get("templates") is not None)
        valid.append(step)
    _timing_check(problems, [(f"steps[{i}].delay_seconds", s.get("delay_seconds")) for i, s in enumerate(steps)
                             if isinstance(s, dict)], trigger_delay)
    return valid


def _timing_check(problems: _Problems, delays: list[tuple[str, Any]], trigger_delay: int | None) -> None:
    """Steps run in order, and none may be due before the person is enrolled."""
    previous: tuple[str, int] | None = None
    for field, delay in delays:
        if not _is_int(delay) or not 0 <= delay <= MAX_DELAY_SECONDS:
            continue  # already reported
        if trigger_delay is not None and delay < trigger_delay:
            problems.add(field, "before_trigger",
                         f"{_human(delay)} is before the journey starts (trigger.delay_seconds = {_human(trigger_delay)}); "
                         "use at least that, or shorten the trigger delay.")
        if previous is not None and delay < previous[1]:
            problems.add(field, "out_of_order", f"Must not be earlier than the step before ({previous[0]}).")
        previous = (field, delay)


def _variants_validate(problems: _Problems, key: str, variants: Any, steps: list[dict],
                       trigger_delay: int | None) -> None:
    if not isinstance(variants, list):
        problems.add("variants", "invalid_type", "Must be a list (empty for no A/B test).")
        return
    if len(variants) > MAX_VARIANTS:
        problems.add("variants", "too_many", f"At most {MAX_VARIANTS} variants.")
        return
    by_key = {s["key"]: s for s in steps if isinstance(s.get("key"), str)}
    seen: set[str] = set()
    for position, variant in enumerate(variants):
        path = f"variants[{position}]"
        if not isinstance(variant, dict):
            problems.add(path, "invalid_type", "Must be an object with key, weight and steps.")
            continue
        _unknown_fields(problems, variant, frozenset({"key", "weight", "steps"}), path)
        variant_key = variant.get("key")
        if not isinstance(variant_key, str) or not _KEY.match(variant_key):
            problems.add(f"{path}.key", "invalid_key", "Must be 1-32 lower-case letters, digits, '_' or '-', such as 15m.")
        elif variant_key in seen:
            problems.add(f"{path}.key", "duplicate", f"Another variant is already called '{variant_key}'.")
        else:
            seen.add(variant_key)
        weight = variant.get("weight", 1)
        if not _is_number(weight):
            problems.add(f"{path}.weight", "invalid_type", "Must be a number.")
        elif not 0 < weight <= 1000:
            problems.add(f"{path}.weight", "out_of_range", "Must be more than 0 and at most 1000.")
        overrides = variant.get("steps", {})
        if not isinstance(overrides, dict):
            problems.add(f"{path}.steps", "invalid_type", "Must be an object of step key: changes.")
            continue
        for step_key, change in overrides.items():
            where = f"{path}.steps.{step_key}"
            base = by_key.get(step_key)
            if base is None:
                problems.add(where, "unknown_step", f"The journey has no step '{step_key}'. Steps: {', '.join(by_key)}.")
                continue
            if not isinstance(change, dict):
                problems.add(where, "invalid_type", "Must be an object with delay_seconds, channel, templates or discount.")
                continue
            _unknown_fields(problems, change, OVERRIDE_FIELDS, where)
            if "delay_seconds" in change:
                _seconds(problems, change["delay_seconds"], f"{where}.delay_seconds")
            channel = change.get("channel", base.get("channel"))
            if "channel" in change and channel not in CHANNELS:
                problems.add(f"{where}.channel", "unknown_channel",
                             f"Unknown channel {channel!r}. Use one of: {', '.join(CHANNELS)}.")
                continue
            if "discount" in change:
                _discount(problems, change["discount"], f"{where}.discount", key)
            if "templates" in change:
                _templates_check(problems, journey_key=key, step_key=step_key, channel=channel,
                                 templates=change["templates"], field=f"{where}.templates", explicit=True)
            elif channel != base.get("channel") and base.get("templates") is not None:
                problems.add(f"{where}.templates", "required",
                             f"The step's own templates are for {base.get('channel')}; give {channel} templates too.")
            elif channel != base.get("channel"):
                _templates_check(problems, journey_key=key, step_key=step_key, channel=channel, templates=None,
                                 field=f"{where}.templates", explicit=False)
        # The variant's timeline must make sense as a whole, like the base one.
        effective = [(f"{path}.steps.{s['key']}.delay_seconds" if s["key"] in overrides
                      and isinstance(overrides[s["key"]], dict) and "delay_seconds" in overrides[s["key"]]
                      else f"steps[{i}].delay_seconds",
                      (overrides.get(s["key"]) if isinstance(overrides.get(s["key"]), dict) else {}).get(
                          "delay_seconds", s.get("delay_seconds")))
                     for i, s in enumerate(steps) if isinstance(s.get("key"), str)]
        if any(name.startswith(path) for name, _ in effective):
            _timing_check(problems, effective, trigger_delay)


def _attribution_validate(problems: _Problems, value: Any) -> None:
    if not isinstance(value, dict):
        problems.add("attribution", "invalid_type", "Must be an object with window_seconds and basis.")
        return
    _unknown_fields(problems, value, frozenset({"window_seconds", "basis"}), "attribution")
    _seconds(problems, value.get("window_seconds"), "attribution.window_seconds", minimum=HOUR, maximum=90 * DAY)
    if value.get("basis") not in ("click", "open"):
        problems.add("attribution.basis", "invalid_choice", "Must be 'click' or 'open'.")


def _referral_validate(problems: _Problems, value: Any) -> None:
    if not isinstance(value, dict):
        problems.add("referral", "invalid_type", "Must be an object with reward_percent, reward_valid_seconds and link.")
        return
    _unknown_fields(problems, value, frozenset({"reward_percent", "reward_valid_seconds", "link"}), "referral")
    percent = value.get("reward_percent")
    if not _is_int(percent) or not 1 <= percent <= 100:
        problems.add("referral.reward_percent", "out_of_range" if _is_int(percent) else "invalid_type",
                     "Must be a whole percentage between 1 and 100.")
    _seconds(problems, value.get("reward_valid_seconds"), "referral.reward_valid_seconds", minimum=DAY)
    link = value.get("link")
    if not isinstance(link, str) or "{code}" not in link or not (
            link.startswith("{store_url}") or re.match(r"^https?://\S+$", link)):
        problems.add("referral.link", "invalid_link",
                     "Must be an http(s) address or start with {store_url}, and contain {code}.")
    elif len(link) > 500:
        problems.add("referral.link", "too_long", "At most 500 characters.")


def definition_validate(key: str, data: Any) -> tuple[dict[str, Any], list[ErrorDetail]]:
    """Check a whole definition: (the definition, every problem with its field path). Empty problems: valid."""
    problems = _Problems()
    if key not in DEFAULTS:
        problems.add("key", "unknown_journey", f"Unknown journey '{key}'. Known: {', '.join(journey_keys())}.")
        return {}, problems.details
    if not isinstance(data, dict):
        problems.add("", "invalid_type", "A journey definition must be an object.")
        return {}, problems.details
    _unknown_fields(problems, data, TOP_LEVEL | EXTRA_TOP_LEVEL.get(key, frozenset()), "")
    trigger = _trigger_validate(problems, key, data.get("trigger"))
    delay = trigger.get("delay_seconds")
    trigger_delay = delay if _is_int(delay) and 0 <= delay <= MAX_DELAY_SECONDS else None
    steps = _steps_validate(problems, key, data.get("steps"), trigger_delay)
    share = data.get("holdout_share", 0.0)
    if not _is_number(share):
        problems.add("holdout_share", "invalid_type", "Must be a number between 0 and 0.9.")
    elif not 0 <= share <= MAX_HOLDOUT_SHARE:
        problems.add("holdout_share", "out_of_range", f"Must be between 0 and {MAX_HOLDOUT_SHARE}: "
                                                      "at least one person in ten gets the messages.")
    _variants_validate(problems, key, data.get("variants", []), steps, trigger_delay)
    _attribution_validate(problems, data.get("attribution", _COMMON["attribution"]))
    if not isinstance(data.get("frequency_exempt", False), bool):
        problems.add("frequency_exempt", "invalid_type", "Must be true or false.")
    if key == JourneyKey.REFERRAL_REQUEST:
        _referral_validate(problems, data.get("referral"))
    clean = copy.deepcopy(data)
    clean.setdefault("holdout_share", 0.0)
    clean.setdefault("variants", [])
    clean.setdefault("attribution", copy.deepcopy(_COMMON["attribution"]))
    clean.setdefault("frequency_exempt", False)
    return clean, problems.details


# --- Reading a definition ---------------------------------------------------------------------------


def step_effective(definition: dict, step_key: str, variant: str = "") -> dict | None:
    """A step as a variant sees it: the step with the variant's overrides applied (None: no such step)."""
    step = next((s for s in definition.get("steps", []) if s.get("key") == step_key), None)
    if step is None:
        return None
    merged = dict(step)
    if variant:
        for candidate in definition.get("variants", []):
            if candidate.get("key") == variant:
                change = candidate.get("steps", {}).get(step_key) or {}
                if "channel" in change and change["channel"] != step.get("channel") and "templates" not in change:
                    merged.pop("templates", None)  # the step's own texts are for its own channel
                merged.update(change)
                break
    return merged


def steps_effective(definition: dict, variant: str = "") -> list[dict]:
    return [step_effective(definition, s["key"], variant) for s in definition.get("steps", [])]  # type: ignore[misc]


def step_templates(journey_key: str, step: dict) -> dict:
    """The texts a step sends: its own, else the shipped defaults for its channel."""
    if step.get("templates"):
        return step["templates"]
    return rendering.default_templates(journey_key, step["key"], step["channel"])


def journey_channels(definition: dict) -> set[str]:
    """Every channel a journey may use (its steps and its variants): who counts as reachable."""
    channels = {s.get("channel") for s in definition.get("steps", [])}
    for variant in definition.get("variants", []):
        channels.update(change.get("channel") for change in variant.get("steps", {}).values() if isinstance(change, dict))
    return {c for c in channels if c in CHANNELS}


@dataclass(frozen=True, slots=True)
class Assignment:
    variant: str
    holdout: bool


def assignment_for(*, store_id: int, journey_key: str, customer_id: int, definition: dict) -> Assignment:
    """Holdout and variant for one person: a hash of (store, journey, person), so it never changes.

    Two independent numbers in [0, 1) come from one digest: the first decides the holdout, the
    second picks a variant by weight. Holdout people get no variant (they get nothing at all).
    """
    digest = hashlib.blake2b(f"{store_id}:{journey_key}:{customer_id}".encode(), digest_size=16).digest()
    first = int.from_bytes(digest[:8], "big") / 2**64
    second = int.from_bytes(digest[8:], "big") / 2**64
    if first < float(definition.get("holdout_share") or 0):
        return Assignment(variant="", holdout=True)
    variants = [v for v in definition.get("variants", []) if float(v.get("weight", 1)) > 0]
    if not variants:
        return Assignment(variant="", holdout=False)
    total = sum(float(v.get("weight", 1)) for v in variants)
    point = second * total
    for variant in variants:
        point -= float(variant.get("weight", 1))
        if point < 0:
            return Assignment(variant=variant["key"], holdout=False)
    return Assignment(variant=variants[-1]["key"], holdout=False)


# --- Writes ------------------------------------------------------------------------------------------


def journeys_ensure_defaults(*, store: Store) -> list[Journey]:
    """Give a store each of the journeys it lacks, on and with the default definition (version 1)."""
    existing = set(Journey.objects.for_store(store).values_list("key", flat=True))
    missing = [key for key in journey_keys() if key not in existing]
    if missing:
        moment = timezone.now()
        with transaction.atomic():
            Journey.objects.bulk_create(
                [Journey(store=store, key=key, enabled=True, definition=default_definition(key), version=1,
                         created_at=moment, updated_at=moment) for key in missing],
                ignore_conflicts=True,
            )
            created = Journey.objects.for_store(store).filter(key__in=missing)
            JourneyRevision.objects.bulk_create(
                [JourneyRevision(store=store, journey=j, version=j.version, enabled=j.enabled, definition=j.definition,
                                 changed_by="system", created_at=moment) for j in created],
                ignore_conflicts=True,
            )
    return list(Journey.objects.for_store(store).order_by("id"))


def _merge(current: dict, changes: dict) -> dict:
    """The definition after an edit: objects merge key by key, lists are replaced.

    A step given in `steps` starts from the current step of the same key, so `[{"key": "email_1",
    "delay_seconds": 900}, {"key": "sms_1"}]` changes one delay and keeps everything else; steps
    left out of the list are removed.
    """
    merged = copy.deepcopy(current)
    for name, value in changes.items():
        if name == "steps" and isinstance(value, list):
            by_key = {s.get("key"): s for s in current.get("steps", []) if isinstance(s, dict)}
            merged["steps"] = [
                {**copy.deepcopy(by_key.get(step.get("key"), {})), **copy.deepcopy(step)} if isinstance(step, dict) else step
                for step in value
            ]
        elif isinstance(value, dict) and isinstance(merged.get(name), dict):
            merged[name] = {**merged[name], **copy.deepcopy(value)}
        else:
            merged[name] = copy.deepcopy(value)
    return merged


def journey_update(*, store: Store, key: str, changes: Any, changed_by: str = "") -> Journey:
    """Apply an edit (`enabled` and definition fields); a valid one becomes a new version with its revision.

    Raises ApiError (422, every problem with its field path) for an invalid edit, which leaves the
    journey exactly as it was. An edit that changes nothing makes no new version.
    """
    if key not in DEFAULTS:
        raise ApiError("journey_not_found", f"No journey '{key}'.", 404,
                       [ErrorDetail(field="key", code="unknown_journey", message=f"Known: {', '.join(journey_keys())}.")])
    if not isinstance(changes, dict):
        raise ApiError("invalid_body", "Send an object with the fields to change.", 400,
                       [ErrorDetail(field="", code="invalid_type", message="Must be an object.")])
    problems = _Problems()
    allowed = TOP_LEVEL | EXTRA_TOP_LEVEL.get(key, frozenset()) | {"enabled"}
    _unknown_fields(problems, changes, allowed, "")
    if "enabled" in changes and not isinstance(changes["enabled"], bool):
        problems.add("enabled", "invalid_type", "Must be true or false.")
    if problems.details:
        raise ApiError("invalid_journey", "The journey was not changed: fix the fields listed.", 422, problems.details)
    journeys_ensure_defaults(store=store)
    with transaction.atomic():
        journey = Journey.objects.for_store(store).select_for_update().get(key=key)
        definition_changes = {name: value for name, value in changes.items() if name != "enabled"}
        definition = _merge(journey.definition or {}, definition_changes)
        clean, errors = definition_validate(key, definition)
        if errors:
            raise ApiError("invalid_journey", "The journey was not changed: fix the fields listed.", 422, errors)
        enabled = changes.get("enabled", journey.enabled)
        if clean == journey.definition and enabled == journey.enabled:
            return journey
        journey.definition = clean
        journey.enabled = enabled
        journey.version += 1
        journey.updated_at = timezone.now()
        journey.save(update_fields=["definition", "enabled", "version", "updated_at"])
        JourneyRevision.objects.create(store=store, journey=journey, version=journey.version, enabled=enabled,
                                       definition=clean, changed_by=(changed_by or "")[:150],
                                       created_at=journey.updated_at)
    return journey


def definitions_for_versions(*, journey_versions: set[tuple[int, int]]) -> dict[tuple[int, int], dict]:
    """The definition each (journey id, version) had, for steps sent under an older version."""
    if not journey_versions:
        return {}
    from django.db.models import Q

    query = Q()
    for journey_id, version in journey_versions:
        query |= Q(journey_id=journey_id, version=version)
    return {(r.journey_id, r.version): r.definition for r in JourneyRevision.objects.filter(query)}
