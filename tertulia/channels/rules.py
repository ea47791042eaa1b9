"""The sending rules the dispatcher applies to every claimed delivery: consent, frequency cap, quiet hours.

Evaluated in batch (a handful of queries for a whole claimed batch) inside the dispatcher's claim
transaction, right before the messages go out (docs/channels.md, "Dispatcher"):

- **consent**: the person's current consent on the delivery's channel (customers.Consent) must be
  `subscribed`. Nothing else counts, and nothing is exempt: otherwise the delivery is skipped
  (`no_consent`). So a person who unsubscribed gets nothing more on that channel. The one message
  that asks for consent, the welcome journey's double opt-in e-mail, is checked the same way against
  the consent it serves: it goes only while e-mail consent is `pending_confirmation`.
- **frequency cap**: at most one journey message per person and channel within the store's window
  (default 16 h), across all journeys; a later one is postponed, never dropped.
- **quiet hours**: journey messages due inside the window (default 21:00-08:00 in the person's time
  zone, else the store's) are postponed to its end, never dropped.

Journeys whose definition says `frequency_exempt` (transactional messages) are checked for consent only.

**Replies** (an inbox answer: `reply_to` names the message the person sent) are not marketing: the
person wrote first and is waiting for the answer, so marketing consent does not apply to them and
neither do the cap and the quiet hours. They are still never sent to a person whose data was erased.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from datetime import time as clock
from zoneinfo import ZoneInfo

from django.utils import timezone

from tertulia.channels.models import Delivery, DeliverySettings, DeliveryStatus
from tertulia.core.db import keyed, select_in
from tertulia.core.models import Store
from tertulia.core.timezones import is_valid_timezone
from tertulia.customers.models import ConsentStatus

DEFAULT_FREQUENCY_CAP_SECONDS = 16 * 3600
# journeys.definitions.CONFIRM_STEP (not imported: journeys sits above channels).
OPT_IN_CONFIRMATION_STEP = "confirm"
DEFAULT_QUIET_START = clock(21, 0)
DEFAULT_QUIET_END = clock(8, 0)
# A message another dispatcher is sending right now may still fail: look again soon instead of a whole window.
IN_FLIGHT_RECHECK = timedelta(seconds=60)
# What counts against the cap: sent, or being sent (the dispatcher sets sent_at when a send starts).
COUNTED_STATUSES = (DeliveryStatus.SENDING.value, DeliveryStatus.SENT.value, DeliveryStatus.DELIVERED.value)

SEND, POSTPONE, SKIP = "send", "postpone", "skip"


@dataclass(frozen=True, slots=True)
class SendingRules:
    frequency_cap_seconds: int = DEFAULT_FREQUENCY_CAP_SECONDS
    quiet_hours_start: clock = DEFAULT_QUIET_START
    quiet_hours_end: clock = DEFAULT_QUIET_END


@dataclass(frozen=True, slots=True)
class Verdict:
    action: str  # send, postpone or skip
    reason: str = ""
    detail: str = ""
    due_at: datetime | None = None  # postpone: the new due time


def sending_rules_for(*, store_ids: Sequence[int]) -> dict[int, SendingRules]:
    """Each store's rules: its DeliverySettings row, or the defaults."""
    rules = {store_id: SendingRules() for store_id in store_ids}
    for row in DeliverySettings.objects.filter(store_id__in=list(store_ids)):
        rules[row.store_id] = SendingRules(row.frequency_cap_seconds, row.quiet_hours_start, row.quiet_hours_end)
    return rules


def delivery_settings_update(
    *,
    store: Store,
    frequency_cap_seconds: int | None = None,
    quiet_hours_start: clock | None = None,
    quiet_hours_end: clock | None = None,
) -> DeliverySettings:
    """Change a store's sending rules (only the values given); returns the stored row."""
    if frequency_cap_seconds is not None and frequency_cap_seconds < 0:
        raise ValueError("frequency_cap_seconds must not be negative")
    row, _ = DeliverySettings.objects.for_store(store).get_or_create(store=store)
    for name, value in (("frequency_cap_seconds", frequency_cap_seconds), ("quiet_hours_start", quiet_hours_start),
                        ("quiet_hours_end", quiet_hours_end)):
        if value is not None:
            setattr(row, name, value)
    row.updated_at = timezone.now()
    row.save()
    return row


def zone_for(*, customer_timezone: str, store_timezone: str) -> ZoneInfo:
    """The person's time zone if it is a known IANA name, else the store's, else UTC."""
    for name in (customer_timezone, store_timezone):
        if name and is_valid_timezone(name):
            return ZoneInfo(name)
    return ZoneInfo("UTC")


def quiet_hours_until(*, moment: datetime, zone: ZoneInfo, start: clock, end: clock) -> datetime | None:
    """If `moment` falls in the quiet hours [start, end) of local time in `zone`, the instant they end; else None.

    Works on wall-clock time, so it holds across daylight-saving changes: the window ends at the first
    instant whose local time is `end` (or later, when `end` falls in a spring-forward gap; never earlier).
    """
    if start == end:
        return None
    local = moment.astimezone(zone)
    now_clock = local.time().replace(tzinfo=None)
    if start < end:
        inside = start <= now_clock < end
        end_date = local.date()
    else:  # the window crosses midnight
        inside = now_clock >= start or now_clock < end
        end_date = local.date() + timedelta(days=1) if now_clock >= start else local.date()
    if not inside:
        return None
    # fold=0: for an end time repeated by a fall-back change, the first one; for one skipped by a
    # spring-forward change, the offset before it, which lands after the gap.
    ends = datetime.combine(end_date, end, tzinfo=zone).astimezone(UTC)
    return max(ends, moment)


def rules_evaluate(*, deliveries: Sequence[Delivery], now: datetime) -> dict[int, Verdict]:
    """Decide for each delivery (of any stores) whether it goes now, waits or is skipped.

    Batch reads: customers, consents, recent sends, store settings and journeys, one query each per
    store. Deliveries are taken in order (by due time), so of two for one person and channel in the
    same batch only the first goes. Call inside the transaction that claimed them.
    """
    verdicts: dict[int, Verdict] = {}
    by_store: dict[int, list[Delivery]] = {}
    for delivery in deliveries:
        by_store.setdefault(delivery.store_id, []).append(delivery)
    rules = sending_rules_for(store_ids=sorted(by_store))
    store_zones = dict(Store.objects.filter(pk__in=list(by_store)).values_list("pk", "timezone"))
    for store_id, batch in by_store.items():
        verdicts.update(_evaluate_store(store_id, batch, now, rules[store_id], store_zones.get(store_id, "")))
    return verdicts


def _evaluate_store(store_id: int, batch: list[Delivery], now: datetime, rules: SendingRules,
                    store_zone: str) -> dict[int, Verdict]:
    customer_ids = sorted({d.customer_id for d in batch if d.customer_id is not None})
    people = {
        row[0]: row[1:]
        # keyed: the ids' own indexes, not the store's whole range, on SQLite (core.db.store_scope).
        for row in select_in(f"SELECT id, timezone, erased_at FROM customers_customer WHERE {keyed('store_id')} = %s",  # noqa: S608
                             [store_id], "id", customer_ids)
    }
    consent = {
        (row[0], row[1]): row[2]
        for row in select_in(
            f"SELECT customer_id, channel, status FROM customers_consent WHERE {keyed('store_id')} = %s",  # noqa: S608
            [store_id], "customer_id", customer_ids)
    }
    journeys = {d.journey_key for d in batch if d.journey_key}
    exempt = _frequency_exempt(store_id, journeys) if journeys else set()
    window = timedelta(seconds=rules.frequency_cap_seconds)
    last_sent: dict[tuple[int, str], tuple[datetime, bool]] = {}  # (person, channel) -> (when, still in flight)
    if window and customer_ids:
        since = now - window
        for customer_id, channel, journey_key, status, sent_at in select_in(
            "SELECT customer_id, channel, journey_key, status, sent_at FROM channels_delivery "
            "WHERE store_id = %s AND sent_at IS NOT NULL AND journey_key <> ''",
            [store_id], "customer_id", customer_ids,
        ):
            sent_at = _aware(sent_at)
            if status not in COUNTED_STATUSES or sent_at <= since or journey_key in exempt:
                continue
            key = (customer_id, channel)
            if key not in last_sent or sent_at > last_sent[key][0]:
                last_sent[key] = (sent_at, status == DeliveryStatus.SENDING.value)

    verdicts: dict[int, Verdict] = {}
    for delivery in batch:
        person = people.get(delivery.customer_id) if delivery.customer_id is not None else None
        if delivery.reply_to or delivery.reply_context.get("answer"):
            erased = person is not None and person[1] is not None
            verdicts[delivery.pk] = Verdict(SKIP, "erased", "The customer's data was erased.") if erased else Verdict(SEND)
            continue
        if person is None:
            verdicts[delivery.pk] = Verdict(SKIP, "no_consent", "The delivery names no customer.")
            continue
        if person[1] is not None:
            verdicts[delivery.pk] = Verdict(SKIP, "no_consent", "The customer's data was erased.")
            continue
        status = consent.get((delivery.customer_id, delivery.channel))
        confirmation = _is_opt_in_confirmation(delivery)
        if status != (ConsentStatus.PENDING.value if confirmation else ConsentStatus.SUBSCRIBED.value):
            verdicts[delivery.pk] = Verdict(
                SKIP, "no_consent", f"{delivery.channel} consent is {status or 'not recorded'} at send time.")
            continue
        if confirmation or not delivery.journey_key or delivery.journey_key in exempt:
            verdicts[delivery.pk] = Verdict(SEND)
            continue
        due = now
        reason = ""
        key = (delivery.customer_id, delivery.channel)
        if window and key in last_sent:
            sent_at, in_flight = last_sent[key]
            due = now + IN_FLIGHT_RECHECK if in_flight else max(now, sent_at + window)
            reason = "frequency_cap"
        quiet_end = quiet_hours_until(moment=due, zone=zone_for(customer_timezone=person[0], store_timezone=store_zone),
                                      start=rules.quiet_hours_start, end=rules.quiet_hours_end)
        if quiet_end is not None:
            due, reason = quiet_end, "quiet_hours"
        if reason:
            verdicts[delivery.pk] = Verdict(POSTPONE, reason, _postpone_detail(reason, due), due)
            continue
        verdicts[delivery.pk] = Verdict(SEND)
        if window:
            # Counted at once: a second message to this person in the same batch waits for this one.
            last_sent[key] = (now, True)
    return verdicts


def _is_opt_in_confirmation(delivery: Delivery) -> bool:
    """The double opt-in e-mail: the one message whose consent is the pending request it confirms.

    It goes only while e-mail consent is `pending_confirmation` (never once unsubscribed, never when
    already subscribed), at once: the person has just asked for it, so no cap and no quiet hours.
    """
    return (delivery.journey_key == "welcome" and delivery.step_key == OPT_IN_CONFIRMATION_STEP
            and delivery.channel == "email")


def _postpone_detail(reason: str, due: datetime) -> str:
    moment = due.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    if reason == "quiet_hours":
        return f"Postponed to the end of the quiet hours ({moment})."
    return f"Postponed by the frequency cap to {moment}."


def _frequency_exempt(store_id: int, keys: set[str]) -> set[str]:
    from tertulia.journeys.models import Journey

    return set(
        Journey.objects.for_store(store_id).filter(key__in=sorted(keys), definition__frequency_exempt=True)
        .values_list("key", flat=True)
    )


def _aware(value) -> datetime:
    # Raw rows: SQLite gives Django's naive-UTC text, PostgreSQL an aware datetime.
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=UTC)
