"""Dashboard pages of journeys: the list with figures, one journey (figures, delay chart, editor with
live preview), the outbox as the shopper sees it, and a person's messages on their timeline.

Thin over journeys.selectors (figures), journeys.api.journey_edit (the engine validates edits) and
journeys.rendering.journey_preview (the same errors as validation). Members read; owners and managers
(and superusers) edit.
"""

import copy
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseForbidden, JsonResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, pgettext_lazy
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from tertulia.core.errors import ApiError, ErrorDetail
from tertulia.core.models import Role, Store
from tertulia.dashboard import formatting, selectors
from tertulia.dashboard.labels import label
from tertulia.dashboard.views import _page, store_view
from tertulia.journeys import rendering
from tertulia.journeys import selectors as journey_selectors
from tertulia.journeys.api import journey_edit
from tertulia.journeys.definitions import journeys_ensure_defaults
from tertulia.journeys.models import Journey, JourneyKey

EDIT_ROLES = (Role.OWNER, Role.MANAGER)
LANGUAGES = ("es", "en")
CHANNELS = ("email", "sms", "social_dm")
OUTBOX_PER_PAGE = 25
UNITS = {"minutes": 60, "hours": 3600, "days": 86400}

JOURNEY_NAMES = {
    "abandoned_cart": gettext_lazy("Abandoned cart"),
    "thank_you": gettext_lazy("Thank you"),
    "review_request": gettext_lazy("Review request"),
    "referral_request": gettext_lazy("Referral request"),
    "welcome": gettext_lazy("Welcome"),
    "winback": gettext_lazy("Win-back"),
    "purchase_intent": gettext_lazy("Purchase intent on social media"),
}
DELIVERY_STATUSES = {
    "scheduled": pgettext_lazy("delivery", "Scheduled"),
    "sending": pgettext_lazy("delivery", "Sending"),
    "sent": pgettext_lazy("delivery", "Sent"),
    "delivered": pgettext_lazy("delivery", "Delivered"),
    "failed": pgettext_lazy("delivery", "Failed"),
    "skipped": pgettext_lazy("delivery", "Skipped"),
    "cancelled": pgettext_lazy("delivery", "Cancelled"),
}


def journey_name(key: str) -> str:
    return str(JOURNEY_NAMES.get(key, key))


def can_edit(request: HttpRequest, store: Store) -> bool:
    if request.user.is_superuser:
        return True
    return selectors.membership_role(store=store, user=request.user) in EDIT_ROLES


def _ensure_journeys(store: Store) -> None:
    # Every store has every journey (on by default); the engine creates the ones missing.
    journeys_ensure_defaults(store=store)


def _duration(seconds: int | None) -> str:
    if seconds is None:
        return "—"
    for size, text in ((86400, _("%(n)s d")), (3600, _("%(n)s h")), (60, _("%(n)s min"))):
        if seconds >= size and seconds % size == 0:
            return text % {"n": formatting.format_count(seconds // size)}
    return _("%(n)s s") % {"n": formatting.format_count(seconds)}


def _percent(ratio: float | None) -> str:
    return "—" if ratio is None else formatting.format_percent(ratio)


def _points(ratio: float | None) -> str:
    """A difference of rates in percentage points, signed."""
    if ratio is None:
        return "—"
    number = formatting.format_percent(abs(ratio)).replace("%", "").strip().replace("\u00a0", "")
    sign = "+" if ratio > 0 else ("−" if ratio < 0 else "±")
    return f"{sign}{number}\u00a0pp"


def _money(amount: Decimal, currency: str) -> str:
    return formatting.format_money(selectors.Money(amount, currency))


def _uplift_display(uplift: journey_selectors.Uplift | None) -> dict[str, Any]:
    if uplift is None or uplift.status != "ok":
        reasons = {
            "no_holdout": _("No holdout yet: set a holdout share to measure uplift."),
            "no_treated": _("Nobody has received the messages yet."),
            "no_enrollments": _("No enrollments yet."),
        }
        return {"value": "—", "interval": "", "note": reasons.get(uplift.status if uplift else "", ""), "ok": False}
    return {
        "value": _points(uplift.difference),
        "interval": _("95%% CI %(low)s to %(high)s") % {"low": _points(uplift.ci_low), "high": _points(uplift.ci_high)},
        "note": _("The messages made a difference.") if uplift.significant else _("Not distinguishable from no message yet."),
        "ok": True,
        "significant": uplift.significant,
    }


# --- list -------------------------------------------------------------------------------------------

@require_GET
@store_view()
def journeys(request: HttpRequest, store: Store) -> HttpResponse:
    _ensure_journeys(store)
    stats = journey_selectors.journeys_stats(store=store)
    rows = []
    for journey in journey_selectors.journeys_list(store=store):
        figures = stats[journey.key]
        rows.append({
            "journey": journey, "name": journey_name(journey.key), "stats": figures,
            "sent": formatting.format_count(figures.messages.sent),
            "clicked": formatting.format_count(figures.messages.clicked),
            "enrollments": formatting.format_count(figures.enrollments),
            "recovery_rate": _percent(figures.recovery_rate),
            "holdout_rate": _percent(figures.uplift.holdout_rate if figures.uplift else None),
            "uplift": _uplift_display(figures.uplift),
            "revenue": _money(figures.recovered_revenue, store.currency),
        })
    return _page(request, store, "dashboard/journeys.html", "journeys", rows=rows)


# --- one journey ------------------------------------------------------------------------------------

@dataclass(slots=True)
class Chart:
    """Inline SVG geometry of recovery rate and recovered revenue per delay bucket."""

    width: int
    height: int
    bars: list[dict[str, Any]]
    baseline_y: float | None
    baseline_label: str
    axis_y: int


def delay_chart(stats: journey_selectors.JourneyStats, currency: str) -> Chart | None:
    buckets = stats.by_delay
    if not buckets:
        return None
    width, height, top, bottom, left = 640, 240, 28, 196, 16
    slot = (width - 2 * left) / len(buckets)
    bar = min(48.0, slot / 3)
    max_rate = max([b.rate or 0 for b in buckets] + [stats.uplift.holdout_rate or 0 if stats.uplift else 0, 0.01])
    max_revenue = max([b.revenue for b in buckets] + [Decimal("0.01")])
    span = bottom - top
    bars = []
    for index, bucket in enumerate(buckets):
        centre = left + slot * index + slot / 2
        rate_h = span * (bucket.rate or 0) / max_rate
        revenue_h = span * float(bucket.revenue / max_revenue)
        bars.append({
            "label": _duration(bucket.delay_seconds) if bucket.delay_seconds is not None else (bucket.variant or "—"),
            "variant": bucket.variant,
            "x_rate": round(centre - bar - 2, 1), "y_rate": round(bottom - rate_h, 1), "h_rate": round(rate_h, 1),
            "x_revenue": round(centre + 2, 1), "y_revenue": round(bottom - revenue_h, 1), "h_revenue": round(revenue_h, 1),
            "width": round(bar, 1), "centre": round(centre, 1),
            "rate_text": _percent(bucket.rate), "revenue_text": _money(bucket.revenue, currency),
            "enrollments": formatting.format_count(bucket.enrollments),
            "conversions": formatting.format_count(bucket.conversions),
            "rate_label_y": round(bottom - rate_h - 6, 1), "revenue_label_y": round(bottom - revenue_h - 6, 1),
        })
    holdout_rate = stats.uplift.holdout_rate if stats.uplift else None
    baseline = None if holdout_rate is None else round(bottom - span * holdout_rate / max_rate, 1)
    return Chart(width=width, height=height, bars=bars, baseline_y=baseline,
                 baseline_label=_("Holdout %(rate)s") % {"rate": _percent(holdout_rate)}, axis_y=bottom)


def _split_seconds(seconds: Any) -> tuple[str, str]:
    if not isinstance(seconds, int) or isinstance(seconds, bool):
        return ("", "minutes")
    for unit in ("days", "hours", "minutes"):
        if seconds and seconds % UNITS[unit] == 0:
            return (str(seconds // UNITS[unit]), unit)
    if seconds == 0:
        return ("0", "minutes")
    return (f"{seconds / 60:g}", "minutes")


def _effective_templates(journey_key: str, step: dict[str, Any]) -> dict[str, dict[str, str]]:
    templates = step.get("templates")
    if isinstance(templates, dict) and templates:
        return templates
    try:
        return rendering.default_templates(journey_key, str(step.get("key", "")), str(step.get("channel", "email")))
    except (KeyError, OSError):
        return {}


def editor_state(journey: Journey, definition: dict[str, Any] | None = None) -> dict[str, Any]:
    """What the editor form shows: the definition spelled out as form values (templates filled in)."""
    definition = copy.deepcopy(definition if definition is not None else journey.definition or {})
    trigger = definition.get("trigger") if isinstance(definition.get("trigger"), dict) else {}
    steps = []
    for index, step in enumerate(journey_selectors.journey_steps(Journey(key=journey.key, definition=definition))):
        value, unit = _split_seconds(step.get("delay_seconds"))
        discount = step.get("discount") if isinstance(step.get("discount"), dict) else None
        templates = _effective_templates(journey.key, step)
        steps.append({
            "index": index, "key": step.get("key", ""), "channel": step.get("channel", "email"),
            "delay_value": value, "delay_unit": unit,
            "discount": discount,
            "discount_valid_hours": (discount.get("valid_seconds", 0) // 3600) if discount and
            isinstance(discount.get("valid_seconds"), int) else "",
            "languages": [{"code": code, "subject": (templates.get(code) or {}).get("subject", ""),
                           "text": (templates.get(code) or {}).get("text", ""),
                           "html": (templates.get(code) or {}).get("html", "")} for code in LANGUAGES],
        })
    first_key = steps[0]["key"] if steps else ""
    variants = []
    for index, variant in enumerate(definition.get("variants") or []):
        if not isinstance(variant, dict):
            continue
        override = ((variant.get("steps") or {}).get(first_key) or {}) if first_key else {}
        value, unit = _split_seconds(override.get("delay_seconds")) if isinstance(override, dict) else ("", "minutes")
        variants.append({"index": index, "key": variant.get("key", ""), "weight": variant.get("weight", 1),
                         "delay_value": value if isinstance(override, dict) and "delay_seconds" in override else "",
                         "delay_unit": unit})
    trigger_value, trigger_unit = _split_seconds(trigger.get("delay_seconds"))
    holdout = definition.get("holdout_share", 0)
    return {
        "trigger_value": trigger_value, "trigger_unit": trigger_unit,
        "holdout_percent": f"{float(holdout) * 100:g}" if isinstance(holdout, int | float) else "",
        "steps": steps, "variants": variants, "new_variant_index": len(variants), "first_step": first_key,
    }


class _FormProblems:
    def __init__(self) -> None:
        self.details: list[ErrorDetail] = []

    def add(self, field: str, message: str) -> None:
        self.details.append(ErrorDetail(field=field, code="invalid", message=message))


def _seconds_from(post, prefix: str, field: str, problems: _FormProblems, *, required: bool = True) -> int | None:
    raw = str(post.get(f"{prefix}_value", "")).strip().replace(",", ".")
    unit = str(post.get(f"{prefix}_unit", "minutes"))
    if raw == "":
        if required:
            problems.add(field, _("Give a delay."))
        return None
    if unit not in UNITS:
        problems.add(field, _("Unknown unit."))
        return None
    try:
        amount = Decimal(raw)
    except ArithmeticError:
        problems.add(field, _("Not a number."))
        return None
    if not amount.is_finite():
        problems.add(field, _("Not a number."))
        return None
    seconds = amount * UNITS[unit]
    if seconds != seconds.to_integral_value():
        problems.add(field, _("Use whole seconds."))
        return None
    return int(seconds) if abs(seconds) < 10**12 else 10**12


def changes_from_form(journey: Journey, post) -> tuple[dict[str, Any], list[ErrorDetail]]:
    """The edit a submitted form asks for, in the API's shape; unparseable numbers are reported here."""
    problems = _FormProblems()
    definition = copy.deepcopy(journey.definition or {})
    changes: dict[str, Any] = {"enabled": post.get("enabled") == "on"}
    trigger = definition.get("trigger") if isinstance(definition.get("trigger"), dict) else {}
    if "trigger_value" in post:
        delay = _seconds_from(post, "trigger", "trigger.delay_seconds", problems)
        if delay is not None:
            changes["trigger"] = {**trigger, "delay_seconds": delay}
    raw_holdout = str(post.get("holdout_percent", "")).strip().replace(",", ".")
    if raw_holdout != "":
        try:
            share = Decimal(raw_holdout) / 100
            if not share.is_finite():
                raise ArithmeticError
            changes["holdout_share"] = float(share)
        except ArithmeticError:
            problems.add("holdout_share", _("Not a number."))
    steps = []
    for index, step in enumerate(journey_selectors.journey_steps(journey)):
        prefix = f"step-{index}"
        edited = copy.deepcopy(step)
        edited["channel"] = str(post.get(f"{prefix}-channel", step.get("channel", "email")))
        delay = _seconds_from(post, f"{prefix}-delay", f"steps[{index}].delay_seconds", problems)
        if delay is not None:
            edited["delay_seconds"] = delay
        templates = {}
        for code in LANGUAGES:
            parts = {name: str(post.get(f"{prefix}-{code}-{name}", "")).replace("\r\n", "\n")
                     for name in ("subject", "text", "html")}
            templates[code] = {name: value for name, value in parts.items()
                               if value or name == "text" or (name == "subject" and edited["channel"] == "email")}
            if edited["channel"] != "email":
                templates[code] = {"text": parts["text"]}
        edited["templates"] = templates
        if isinstance(step.get("discount"), dict):
            discount = dict(step["discount"])
            for name, field, scale in (("discount_percent", "percent", 1), ("discount_valid_hours", "valid_seconds", 3600)):
                raw = str(post.get(f"{prefix}-{name}", "")).strip()
                if raw:
                    try:
                        discount[field] = int(raw) * scale
                    except ValueError:
                        problems.add(f"steps[{index}].discount.{field}", _("Not a whole number."))
            edited["discount"] = discount
        steps.append(edited)
    changes["steps"] = steps
    first_key = steps[0].get("key") if steps else None
    current = [v for v in definition.get("variants") or [] if isinstance(v, dict)]
    variants = []
    for index in range(len(current) + 1):
        prefix = f"variant-{index}"
        key = str(post.get(f"{prefix}-key", "")).strip()
        if post.get(f"{prefix}-delete") == "on" or (index == len(current) and not key):
            continue
        variant = copy.deepcopy(current[index]) if index < len(current) else {"steps": {}}
        variant["key"] = key
        raw_weight = str(post.get(f"{prefix}-weight", "1")).strip().replace(",", ".") or "1"
        try:
            weight = Decimal(raw_weight)
            if not weight.is_finite():
                raise ArithmeticError
            variant["weight"] = int(weight) if weight == weight.to_integral_value() else float(weight)
        except ArithmeticError:
            problems.add(f"variants[{len(variants)}].weight", _("Not a number."))
        delay = _seconds_from(post, f"{prefix}-delay", f"variants[{len(variants)}].steps.{first_key}.delay_seconds",
                              problems, required=False)
        overrides = variant.get("steps") if isinstance(variant.get("steps"), dict) else {}
        if first_key:
            first = dict(overrides.get(first_key) or {})
            if delay is None:
                first.pop("delay_seconds", None)
            else:
                first["delay_seconds"] = delay
            if first:
                overrides[first_key] = first
            else:
                overrides.pop(first_key, None)
        variant["steps"] = overrides
        variants.append(variant)
    changes["variants"] = variants
    return changes, problems.details


def previews_for(store: Store, journey: Journey, steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each step's message in both languages, as a shopper would see it, or the problems that stop it."""
    previews = []
    for index, step in enumerate(steps):
        templates = step.get("templates") if isinstance(step.get("templates"), dict) else {}
        for code in LANGUAGES:
            # Each language is previewed on its own: a mistake in the Spanish text must not hide the English
            # preview. The other language is filled with this one's texts, so only this one's problems show.
            alone = {**step, "templates": {other: templates.get(code, {}) for other in LANGUAGES}}
            preview = rendering.journey_preview(store=store, journey_key=journey.key, step=alone, language=code)
            rendered = preview.rendered
            mine = [e for e in preview.errors if f".{code}" in e.field or not any(f".{o}" in e.field for o in LANGUAGES)]
            if rendered is None and not mine:
                mine = list(preview.errors)
            previews.append({
                "step": index, "step_key": step.get("key", ""), "language": code, "channel": preview.channel,
                "subject": rendered.subject if rendered else "", "text": rendered.text if rendered else "",
                "html": shopper_html(rendered.html) if rendered else "",
                "errors": [{"field": f"steps[{index}].{e.field}" if e.field.startswith("templates") else e.field,
                            "code": e.code, "message": e.message} for e in mine],
            })
    return previews


_PIXEL = re.compile(r"<img\b[^>]*\bsrc=[\"'][^\"']*/o/[^\"']*[\"'][^>]*>", re.IGNORECASE)
_HEAD = re.compile(r"<head\b[^>]*>", re.IGNORECASE)
FRAME_POLICY = "default-src 'none'; img-src data: https: http:; style-src 'unsafe-inline'; font-src data:"


def shopper_html(html: str) -> str:
    """An e-mail's HTML made safe to show staff in an iframe srcdoc (which also gets sandbox="").

    Scripts are off twice (the sandbox, and a CSP that allows none); the open pixel is dropped so
    looking at a message does not count as the shopper opening it, and links target a new window,
    which the sandbox blocks, so a click cannot count as theirs either.
    """
    if not html:
        return ""
    head = (f'<meta http-equiv="Content-Security-Policy" content="{FRAME_POLICY}">'
            '<base target="_blank">')
    html = _PIXEL.sub("", html)
    if _HEAD.search(html):
        return _HEAD.sub(lambda match: match.group(0) + head, html, count=1)
    return head + html


def _journey_or_404(store: Store, key: str) -> Journey:
    if key not in JourneyKey.values:
        raise Http404
    _ensure_journeys(store)
    journey = journey_selectors.journey_get(store=store, key=key)
    if journey is None:
        raise Http404
    return journey


def _errors_by_step(errors: list[ErrorDetail]) -> dict[int, list[ErrorDetail]]:
    grouped: dict[int, list[ErrorDetail]] = {}
    for error in errors:
        match = re.match(r"steps\[(\d+)\]", error.field)
        if match:
            grouped.setdefault(int(match.group(1)), []).append(error)
    return grouped


@require_http_methods(["GET", "POST"])
@store_view()
def journey(request: HttpRequest, store: Store, key: str) -> HttpResponse:
    the_journey = _journey_or_404(store, key)
    editable = can_edit(request, store)
    errors: list[ErrorDetail] = []
    state = None
    status = 200
    if request.method == "POST":
        if not editable:
            return HttpResponseForbidden(_("Only owners and managers may edit journeys."))
        changes, errors = changes_from_form(the_journey, request.POST)
        proposed = {**copy.deepcopy(the_journey.definition or {}),
                    **{name: value for name, value in changes.items() if name != "enabled"}}
        if not errors and request.POST.get("action") != "preview":
            try:
                journey_edit(store=store, key=key, changes=changes, changed_by=request.user.get_username())
            except ApiError as exc:
                errors = exc.details or [ErrorDetail(field="", code=exc.code, message=exc.message)]
            else:
                return redirect(f"{reverse('dashboard:journey', args=[key])}?saved=1")
        state = editor_state(the_journey, proposed)
        state["enabled"] = changes["enabled"]
        status = 422 if errors else 200
    stats = journey_selectors.journey_stats(store=store, key=key)
    assert stats is not None
    if state is None:
        state = editor_state(the_journey)
        state["enabled"] = the_journey.enabled
    previews = previews_for(store, the_journey, [
        {"key": step["key"], "channel": step["channel"],
         "templates": {lang["code"]: {name: lang[name] for name in ("subject", "text", "html") if lang[name] or name == "text"}
                       for lang in step["languages"]}}
        for step in state["steps"]
    ])
    for step in state["steps"]:
        step["previews"] = [p for p in previews if p["step"] == step["index"]]
        step["errors"] = _errors_by_step(errors).get(step["index"], [])
    revisions = list(the_journey.revisions.order_by("-version")[:10])
    response = _page(
        request, store, "dashboard/journey.html", "journeys",
        journey=the_journey, name=journey_name(key), stats=stats, editable=editable, state=state,
        errors=errors, saved=request.GET.get("saved") == "1", revisions=revisions,
        chart=delay_chart(stats, store.currency), uplift=_uplift_display(stats.uplift),
        figures={
            "enrollments": formatting.format_count(stats.enrollments),
            "treated": formatting.format_count(stats.treated), "holdout": formatting.format_count(stats.holdout),
            "sent": formatting.format_count(stats.messages.sent),
            "opened": formatting.format_count(stats.messages.opened),
            "clicked": formatting.format_count(stats.messages.clicked),
            "recovery_rate": _percent(stats.recovery_rate),
            "holdout_rate": _percent(stats.uplift.holdout_rate if stats.uplift else None),
            "revenue": _money(stats.recovered_revenue, store.currency),
            "attributed": formatting.format_count(stats.attributed_orders),
        },
        breakdowns=[(_("By step"), stats.by_step), (_("By channel"), stats.by_channel), (_("By variant"), stats.by_variant)],
        channels=[(code, label("channel", code)) for code in CHANNELS],
        units=[("minutes", _("minutes")), ("hours", _("hours")), ("days", _("days"))],
        languages=LANGUAGES,
    )
    response.status_code = status
    return response


@require_POST
@store_view(json=True)
def journey_preview(request: HttpRequest, store: Store, key: str) -> HttpResponse:
    """The live preview: the form as it is now, rendered in both languages (nothing is saved)."""
    the_journey = _journey_or_404(store, key)
    changes, problems = changes_from_form(the_journey, request.POST)
    previews = previews_for(store, the_journey, changes["steps"])
    return JsonResponse({"previews": previews,
                         "form_errors": [{"field": e.field, "message": e.message} for e in problems]})


# --- outbox -----------------------------------------------------------------------------------------

def _outbox_rows(store: Store, channel: str | None):
    from tertulia.channels.outbox import outbox_list

    return outbox_list(store=store, channel=channel)


@require_GET
@store_view()
def outbox(request: HttpRequest, store: Store) -> HttpResponse:
    channel = request.GET.get("channel") or None
    if channel not in (None, *CHANNELS):
        channel = None
    page = Paginator(_outbox_rows(store, channel), OUTBOX_PER_PAGE).get_page(request.GET.get("page"))
    return _page(request, store, "dashboard/outbox.html", "outbox", page=page, channel=channel,
                 channels=[(code, label("channel", code)) for code in CHANNELS])


@require_GET
@store_view()
def outbox_message(request: HttpRequest, store: Store, message_id: int) -> HttpResponse:
    from tertulia.channels.outbox import outbox_render

    message = _outbox_rows(store, None).filter(pk=message_id).first()
    if message is None:
        raise Http404
    rendered = outbox_render(message)
    # From, To and Subject are shown once, above; the other headers (List-Unsubscribe...) as they were sent.
    headers = {name: value for name, value in (rendered.headers or {}).items()
               if name.lower() not in ("from", "to", "subject")}
    return _page(request, store, "dashboard/outbox_message.html", "outbox", message=message, rendered=rendered,
                 headers=headers, html=shopper_html(rendered.html))


# --- the customer timeline --------------------------------------------------------------------------

def timeline_with_deliveries(*, store: Store, customer, timeline: list) -> list:
    """The person's timeline with their messages in it, newest first."""
    entries = list(timeline)
    for delivery in journey_selectors.customer_deliveries(store=store, customer=customer):
        entries.append(selectors.TimelineEntry(
            journey_selectors.delivery_moment(delivery), "message", delivery.status, journey_name(delivery.journey_key),
            details={"channel": delivery.channel, "step": delivery.step_key, "subject": delivery.subject,
                     "status_label": str(DELIVERY_STATUSES.get(delivery.status, delivery.status)),
                     "reason": delivery.reason, "opened": delivery.opened_at is not None,
                     "clicked": delivery.clicked_at is not None, "id": delivery.pk}))
    entries.sort(key=lambda entry: entry.at, reverse=True)
    return entries
