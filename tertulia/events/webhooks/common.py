"""Small pure helpers the Shopify and WooCommerce mappers share: reading loose payloads, building native events."""

import hashlib
import re
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson

from tertulia.core.errors import ApiError, ErrorDetail
from tertulia.customers.identity import InvalidIdentity, normalize_email, normalize_phone
from tertulia.events.schema import LANGUAGES, MAX_ID_LENGTH

_URL = re.compile(r"^https?://\S+$", re.IGNORECASE)


def unmappable(field: str, message: str) -> ApiError:
    return ApiError("unmappable_payload", f"The payload cannot be mapped to store events: {message}", 422,
                    [ErrorDetail(field=field, code="unmappable", message=message)])


def as_dict(value: object) -> dict:
    return value if isinstance(value, dict) else {}


def as_list(value: object) -> list:
    return value if isinstance(value, list) else []


def ident(value: object) -> str | None:
    """A platform id as a string: shop platforms send numbers, tokens or strings."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def text(value: object, max_length: int = 500) -> str | None:
    if isinstance(value, str) and value.strip():
        return value.strip()[:max_length]
    return None


def money(value: object) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str) or value == "":
        return None
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        return None
    if not amount.is_finite() or amount < 0:
        return None
    return str(amount.quantize(Decimal("0.01")))


def currency_code(value: object, default: str) -> str:
    if isinstance(value, str) and len(value) == 3 and value.isascii() and value.isalpha():
        return value.upper()
    return default


def url(value: object) -> str | None:
    if isinstance(value, str) and len(value) <= 2000 and _URL.match(value.strip()):
        return value.strip()
    return None


def timestamp(value: object, *, assume_utc: bool = False) -> str | None:
    """An ISO 8601 instant in UTC, or None. WooCommerce's *_gmt fields carry no offset but are UTC."""
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    if moment.tzinfo is None:
        if not assume_utc:
            return None
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def first_timestamp(*candidates: str | None, field: str) -> str:
    for candidate in candidates:
        if candidate:
            return candidate
    raise unmappable(field, "no usable timestamp (a date-time with a time zone) in the payload.")


def person(
    *,
    email: object = None,
    phone: object = None,
    phone_region: object = None,
    external_id: str | None = None,
    first_name: object = None,
    last_name: object = None,
    language: object = None,
) -> dict | None:
    """The native `customer` object, keeping only identities that will validate.

    Shops accept free-form phone numbers and, now and then, odd e-mails; one of those must not make
    the whole delivery fail, so an identity that does not normalise is left out rather than sent.
    """
    found: dict[str, Any] = {}
    if isinstance(email, str) and email.strip():
        try:
            found["email"] = normalize_email(email)
        except InvalidIdentity:
            pass
    if isinstance(phone, str) and phone.strip():
        region = phone_region.upper() if isinstance(phone_region, str) and len(phone_region) == 2 else None
        try:
            found["phone"] = normalize_phone(phone, region)
        except InvalidIdentity:
            pass
    if external_id and external_id != "0":
        found["external_id"] = external_id[:128]
    if not found:
        return None
    for key, value in (("first_name", first_name), ("last_name", last_name)):
        name = text(value, 150)
        if name:
            found[key] = name
    if isinstance(language, str) and language[:2].lower() in LANGUAGES:
        found["language"] = language[:2].lower()
    return found


def event(client_id: str, event_type: str, occurred_at: str, data: dict) -> dict:
    if len(client_id) > MAX_ID_LENGTH:
        # Deterministic all the same: the same long id always shortens to the same digest.
        client_id = client_id[:120] + ":" + hashlib.sha256(client_id.encode()).hexdigest()
    return {"id": client_id, "type": event_type, "occurred_at": occurred_at, "data": data}


def digest(data: dict) -> str:
    """A short fingerprint of mapped content, for states whose platform timestamp may not move on change."""
    return hashlib.sha256(orjson.dumps(data, option=orjson.OPT_SORT_KEYS)).hexdigest()[:12]
