"""Validation of native events: the wire format of POST /api/v1/events, checked field by field.

An event is {"id", "type", "occurred_at", "data"}. Validation never stops at the first problem:
every problem of every event is reported with its index and field path, so a client can fix a
whole batch at once. Hand-written rather than schema-driven because it runs for every event of
every batch (see bench/ingest.py).
"""

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from tertulia.core.errors import ErrorDetail
from tertulia.customers.identity import InvalidIdentity, normalize_email, normalize_handle, normalize_phone
from tertulia.events.models import EventType

EVENT_TYPES = frozenset(t.value for t in EventType)
MAX_ID_LENGTH = 200
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
MAX_CLOCK_SKEW = timedelta(days=1)
_CURRENCY = re.compile(r"^[A-Z]{3}$")
_URL = re.compile(r"^https?://[^\s]+$", re.IGNORECASE)
LANGUAGES = {"es", "en", "ca", "eu", "gl", "pt", "fr", "de", "it"}
CHANNELS = {"email", "sms", "social_dm"}
CONSENT_STATUSES = {"subscribed", "unsubscribed", "pending_confirmation"}
_INT32 = 2**31 - 1  # stock is an IntegerField, 32 bits on PostgreSQL


@dataclass(slots=True)
class Person:
    """Who an event is about: identities to resolve, and profile fields to apply."""

    identities: list[tuple[str, str]]
    fields: dict[str, str]


@dataclass(slots=True)
class ValidEvent:
    index: int
    client_id: str
    type: str
    occurred_at: datetime
    data: dict[str, Any]
    raw: dict[str, Any]
    person: Person | None = None
    customer_id: int | None = field(default=None)


class _Errors:
    __slots__ = ("details", "index")

    def __init__(self, index: int | None):
        self.index = index
        self.details: list[ErrorDetail] = []

    def add(self, field_path: str, code: str, message: str) -> None:
        self.details.append(ErrorDetail(field=field_path, code=code, message=message, index=self.index))


def parse_timestamp(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        stamp = datetime.fromisoformat(value)
        if stamp.tzinfo is None:
            return None
        return stamp.astimezone(UTC)
    except (ValueError, OverflowError):  # OverflowError: year 1 or 9999 pushed past the edge by its offset
        return None


def _str(errors: _Errors, data: dict, key: str, path: str, *, required: bool, max_length: int = 500) -> str | None:
    value = data.get(key)
    if value is None:
        if required:
            errors.add(f"{path}.{key}", "required", "This field is required.")
        return None
    if isinstance(value, int) and not isinstance(value, bool) and key.endswith("id"):
        value = str(value)  # shop platforms use numeric ids; we keep them as strings
    if not isinstance(value, str):
        errors.add(f"{path}.{key}", "invalid_type", "Must be a string.")
        return None
    if required and not value.strip():
        errors.add(f"{path}.{key}", "blank", "Must not be blank.")
        return None
    if len(value) > max_length:
        errors.add(f"{path}.{key}", "too_long", f"At most {max_length} characters.")
        return None
    return value


def _money(errors: _Errors, data: dict, key: str, path: str, *, required: bool) -> Decimal | None:
    value = data.get(key)
    if value is None:
        if required:
            errors.add(f"{path}.{key}", "required", "This field is required.")
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        errors.add(f"{path}.{key}", "invalid_type", "Must be a number or a decimal string.")
        return None
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        errors.add(f"{path}.{key}", "invalid_number", f"'{value}' is not a number.")
        return None
    if not amount.is_finite() or amount < 0 or amount >= Decimal("1e10"):
        errors.add(f"{path}.{key}", "out_of_range", "Must be between 0 and 9,999,999,999.99.")
        return None
    return amount.quantize(Decimal("0.01"))


def _int(errors: _Errors, data: dict, key: str, path: str, *, required: bool, minimum: int | None = None,
         maximum: int | None = None) -> int | None:
    value = data.get(key)
    if value is None:
        if required:
            errors.add(f"{path}.{key}", "required", "This field is required.")
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        errors.add(f"{path}.{key}", "invalid_type", "Must be an integer.")
        return None
    if minimum is not None and value < minimum:
        errors.add(f"{path}.{key}", "out_of_range", f"Must be at least {minimum}.")
        return None
    if maximum is not None and value > maximum:
        errors.add(f"{path}.{key}", "out_of_range", f"Must be at most {maximum}.")
        return None
    return value


def _currency(errors: _Errors, data: dict, path: str, *, required: bool) -> str | None:
    value = data.get("currency")
    if value is None:
        if required:
            errors.add(f"{path}.currency", "required", "This field is required.")
        return None
    if not isinstance(value, str) or not _CURRENCY.match(value):
        errors.add(f"{path}.currency", "invalid_currency", "Must be an ISO 4217 code such as EUR.")
        return None
    return value


def _url(errors: _Errors, data: dict, key: str, path: str, *, max_length: int = 2000) -> str | None:
    value = data.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not _URL.match(value):
        errors.add(f"{path}.{key}", "invalid_url", "Must be an http(s) URL.")
        return None
    if len(value) > max_length:
        errors.add(f"{path}.{key}", "too_long", f"At most {max_length} characters.")
        return None
    return value


def parse_person(errors: _Errors, value: object, path: str, *, required: bool) -> Person | None:
    if value is None:
        if required:
            errors.add(path, "required", "A customer identity is required.")
        return None
    if not isinstance(value, dict):
        errors.add(path, "invalid_type", "Must be an object.")
        return None
    identities: list[tuple[str, str]] = []
    before = len(errors.details)
    if value.get("email") is not None:
        try:
            identities.append(("email", normalize_email(value["email"])))
        except InvalidIdentity as exc:
            errors.add(f"{path}.email", exc.code, exc.message)
    if value.get("phone") is not None:
        try:
            identities.append(("phone", normalize_phone(value["phone"])))
        except InvalidIdentity as exc:
            errors.add(f"{path}.phone", exc.code, exc.message)
    external = _str(errors, value, "external_id", path, required=False, max_length=128)
    if external:
        identities.append(("external", external))
    handles = value.get("handles")
    if handles is not None:
        if not isinstance(handles, dict):
            errors.add(f"{path}.handles", "invalid_type", "Must be an object of network: handle.")
        else:
            for network, handle in handles.items():
                try:
                    identities.append((network, normalize_handle(network, handle)))
                except InvalidIdentity as exc:
                    errors.add(f"{path}.handles.{network}", exc.code, exc.message)
    fields: dict[str, str] = {}
    for key in ("first_name", "last_name"):
        text = _str(errors, value, key, path, required=False, max_length=150)
        if text is not None:
            fields[key] = text.strip()
    language = value.get("language")
    if language is not None:
        if not isinstance(language, str) or language.lower()[:2] not in LANGUAGES:
            errors.add(f"{path}.language", "invalid_language", f"Must be one of {sorted(LANGUAGES)}.")
        else:
            fields["language"] = language.lower()[:2]
    zone = value.get("timezone")
    if zone is not None:
        from tertulia.core.timezones import is_valid_timezone

        if not isinstance(zone, str) or not is_valid_timezone(zone):
            errors.add(f"{path}.timezone", "invalid_timezone", "Must be an IANA time zone such as Europe/Madrid.")
        else:
            fields["timezone"] = zone
    if not identities and len(errors.details) == before:
        errors.add(path, "no_identity", "Give at least one of email, phone, external_id or handles.")
        return None
    return Person(identities=identities, fields=fields)


def _items(errors: _Errors, data: dict, path: str, *, required: bool) -> list[dict] | None:
    value = data.get("items")
    if value is None:
        if required:
            errors.add(f"{path}.items", "required", "This field is required (use [] for an empty cart).")
        return None
    if not isinstance(value, list):
        errors.add(f"{path}.items", "invalid_type", "Must be a list.")
        return None
    if len(value) > 500:
        errors.add(f"{path}.items", "too_many", "At most 500 items.")
        return None
    items = []
    for position, item in enumerate(value):
        item_path = f"{path}.items[{position}]"
        if not isinstance(item, dict):
            errors.add(item_path, "invalid_type", "Must be an object.")
            continue
        sku = _str(errors, item, "sku", item_path, required=True, max_length=128)
        quantity = _int(errors, item, "quantity", item_path, required=True, minimum=1)
        price = _money(errors, item, "price", item_path, required=False)
        title = _str(errors, item, "title", item_path, required=False)
        if sku is not None and quantity is not None:
            line: dict[str, Any] = {"sku": sku, "quantity": quantity}
            if price is not None:
                line["price"] = str(price)
            if title:
                line["title"] = title
            items.append(line)
    return items


def _category(errors, data, path):
    return {
        "id": _str(errors, data, "id", path, required=True, max_length=128),
        "name": _str(errors, data, "name", path, required=True, max_length=200),
        "parent_id": _str(errors, data, "parent_id", path, required=False, max_length=128),
        "url": _url(errors, data, "url", path, max_length=1000),
    }


def _product(errors, data, path):
    active = data.get("active", True)
    if not isinstance(active, bool):
        errors.add(f"{path}.active", "invalid_type", "Must be true or false.")
    return {
        "sku": _str(errors, data, "sku", path, required=True, max_length=128),
        "external_id": _str(errors, data, "external_id", path, required=False, max_length=128),
        "title": _str(errors, data, "title", path, required=True),
        "description": _str(errors, data, "description", path, required=False, max_length=20000),
        "url": _url(errors, data, "url", path, max_length=1000),
        "image_url": _url(errors, data, "image_url", path, max_length=1000),
        "price": _money(errors, data, "price", path, required=False),
        "currency": _currency(errors, data, path, required=False),
        "stock": _int(errors, data, "stock", path, required=False, minimum=-_INT32, maximum=_INT32),
        "category_id": _str(errors, data, "category_id", path, required=False, max_length=128),
        "active": active is not False,
    }


def _customer(errors, data, path):
    return {}


def _consent(errors, data, path):
    channel = data.get("channel")
    if not isinstance(channel, str) or channel not in CHANNELS:
        errors.add(f"{path}.channel", "invalid_choice", f"Must be one of {sorted(CHANNELS)}.")
    status = data.get("status")
    if not isinstance(status, str) or status not in CONSENT_STATUSES:
        errors.add(f"{path}.status", "invalid_choice", f"Must be one of {sorted(CONSENT_STATUSES)}.")
    evidence = data.get("evidence", {})
    if not isinstance(evidence, dict):
        errors.add(f"{path}.evidence", "invalid_type", "Must be an object (IP, form, text shown...).")
        evidence = {}
    source = _str(errors, data, "source", path, required=False, max_length=64)
    return {"channel": channel, "status": status, "source": source or "api", "evidence": evidence}


def _cart(errors, data, path, *, items_required=True):
    total = _money(errors, data, "total", path, required=items_required)
    return {
        "cart_id": _str(errors, data, "cart_id", path, required=True, max_length=128),
        "items": _items(errors, data, path, required=items_required),
        "total": total,
        "currency": _currency(errors, data, path, required=items_required),
        "recovery_url": _url(errors, data, "recovery_url", path),
    }


def _checkout(errors, data, path):
    return _cart(errors, data, path, items_required=False)


MAX_DISCOUNT_CODES = 20


def _codes(errors: _Errors, data: dict, path: str) -> list[str]:
    """Discount and referral codes used at checkout: trimmed, duplicates (ignoring case) dropped."""
    value = data.get("discount_codes")
    if value is None:
        return []
    if not isinstance(value, list):
        errors.add(f"{path}.discount_codes", "invalid_type", "Must be a list of codes.")
        return []
    if len(value) > MAX_DISCOUNT_CODES:
        errors.add(f"{path}.discount_codes", "too_many", f"At most {MAX_DISCOUNT_CODES} codes.")
        return []
    codes: list[str] = []
    seen: set[str] = set()
    for position, code in enumerate(value):
        field_path = f"{path}.discount_codes[{position}]"
        if not isinstance(code, str):
            errors.add(field_path, "invalid_type", "Must be a string.")
        elif not code.strip():
            errors.add(field_path, "blank", "Must not be blank.")
        elif len(code.strip()) > 100:
            errors.add(field_path, "too_long", "At most 100 characters.")
        elif code.strip().upper() not in seen:
            seen.add(code.strip().upper())
            codes.append(code.strip())
    return codes


def _order(errors, data, path):
    return {
        "order_id": _str(errors, data, "order_id", path, required=True, max_length=128),
        "cart_id": _str(errors, data, "cart_id", path, required=False, max_length=128),
        "items": _items(errors, data, path, required=True),
        "total": _money(errors, data, "total", path, required=True),
        "currency": _currency(errors, data, path, required=True),
        "discount_codes": _codes(errors, data, path),
    }


def _order_moment(errors, data, path):
    return {
        "order_id": _str(errors, data, "order_id", path, required=True, max_length=128),
        "reason": _str(errors, data, "reason", path, required=False),
        "tracking_url": _url(errors, data, "tracking_url", path),
    }


# type -> (data parser, whether `data.customer` is required / allowed)
_PARSERS = {
    "category_upserted": (_category, None),
    "product_upserted": (_product, None),
    "customer_upserted": (_customer, True),
    "consent_changed": (_consent, True),
    "cart_updated": (_cart, False),
    "checkout_started": (_checkout, False),
    "order_placed": (_order, False),
    "order_fulfilled": (_order_moment, None),
    "order_delivered": (_order_moment, None),
    "order_cancelled": (_order_moment, None),
}


def validate_event(raw: object, index: int | None, now: datetime) -> tuple[ValidEvent | None, list[ErrorDetail]]:
    errors = _Errors(index)
    if not isinstance(raw, dict):
        errors.add("", "invalid_type", "An event must be a JSON object.")
        return None, errors.details
    client_id = raw.get("id")
    if client_id is None:
        errors.add("id", "required", "Every event needs a client id (the idempotency key).")
    elif not isinstance(client_id, str) or not client_id.strip() or len(client_id) > MAX_ID_LENGTH:
        errors.add("id", "invalid_id", f"Must be a non-blank string of at most {MAX_ID_LENGTH} characters.")
    event_type = raw.get("type")
    if event_type is None:
        errors.add("type", "required", "This field is required.")
    elif not isinstance(event_type, str):
        errors.add("type", "invalid_type", "Must be a string.")
    elif event_type not in EVENT_TYPES:
        errors.add("type", "unknown_type", f"Unknown event type '{event_type[:100]}'. Known: {', '.join(sorted(EVENT_TYPES))}.")
    occurred_raw = raw.get("occurred_at")
    occurred_at = None
    if occurred_raw is None:
        errors.add("occurred_at", "required", "This field is required.")
    else:
        occurred_at = parse_timestamp(occurred_raw)
        if occurred_at is None:
            errors.add("occurred_at", "invalid_timestamp", "Must be an RFC 3339 timestamp with a time zone, e.g. 2026-11-23T10:00:00Z.")
        elif occurred_at < EARLIEST or occurred_at > now + MAX_CLOCK_SKEW:
            errors.add("occurred_at", "timestamp_out_of_range", "Must be after 2000-01-01 and not more than a day in the future.")
            occurred_at = None
    data = raw.get("data")
    if data is None:
        data = {}
    if not isinstance(data, dict):
        errors.add("data", "invalid_type", "Must be an object.")
        return None, errors.details
    parsed: dict[str, Any] = {}
    person = None
    if isinstance(event_type, str) and event_type in _PARSERS:
        parser, customer_rule = _PARSERS[event_type]
        parsed = parser(errors, data, "data")
        if customer_rule is not None:
            person = parse_person(errors, data.get("customer"), "data.customer", required=customer_rule)
    if errors.details:
        return None, errors.details
    assert occurred_at is not None
    return ValidEvent(index or 0, client_id, event_type, occurred_at, parsed, raw, person), []


def validate_batch(raws: list[object], now: datetime | None = None) -> tuple[list[ValidEvent], list[ErrorDetail]]:
    now = now or datetime.now(UTC)
    valid: list[ValidEvent] = []
    details: list[ErrorDetail] = []
    for index, raw in enumerate(raws):
        event, problems = validate_event(raw, index, now)
        if event is not None:
            valid.append(event)
        details.extend(problems)
    return valid, details


def _nul_paths(value: object, path: str) -> list[str]:
    if isinstance(value, str):
        return [path] if "\x00" in value else []
    found: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            child = (f"{path}.{key}" if path else key).replace("\x00", "\\u0000")
            if "\x00" in key:
                found.append(child)
            found.extend(_nul_paths(item, child))
    elif isinstance(value, list):
        for position, item in enumerate(value):
            found.extend(_nul_paths(item, f"{path}[{position}]"))
    return found


def nul_problems(raws: list[object]) -> list[ErrorDetail]:
    """Strings holding U+0000, which PostgreSQL cannot store in text or jsonb.

    Walking every event is too slow for the hot path, so callers run this only when the raw body
    contains the escape `\\u0000` (JSON cannot carry a bare NUL byte).
    """
    return [
        ErrorDetail(field=path, code="nul_character", message="Text must not contain the NUL character (U+0000).",
                    index=index)
        for index, raw in enumerate(raws)
        for path in _nul_paths(raw, "")
    ]
