"""CSV rows of products and customers turned into native events, so imports follow the API's rules.

Each row becomes one or more events (product_upserted, with category_upserted when the row names
its category; customer_upserted, with consent_changed per consent column) whose client ids are
derived from the row's content: importing the same file twice stores nothing new.
"""

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tertulia.customers.identity import HANDLE_KINDS

PRODUCT_COLUMNS = (
    "sku", "title", "description", "url", "image_url", "price", "currency", "stock",
    "category_id", "category_name", "parent_category_id", "active", "external_id", "updated_at",
)
PRODUCT_REQUIRED = ("sku", "title")

CONSENT_COLUMNS = {"email_consent": "email", "sms_consent": "sms", "social_dm_consent": "social_dm"}
CUSTOMER_COLUMNS = (
    "email", "phone", "first_name", "last_name", "language", "timezone", "external_id",
    *CONSENT_COLUMNS, *sorted(HANDLE_KINDS), "updated_at",
)
# A customer row needs some way to recognise the person; which one is up to the store.
CUSTOMER_REQUIRED_ANY = ("email", "phone", "external_id", *sorted(HANDLE_KINDS))

COLUMNS = {"products": PRODUCT_COLUMNS, "customers": CUSTOMER_COLUMNS}

_TRUE = {"1", "true", "yes", "y", "si", "sí", "s", "x"}
_FALSE = {"0", "false", "no", "n"}
_CONSENT_WORDS = {
    **dict.fromkeys(("subscribed", "subscribe", "opt-in", "optin", "alta", "suscrito", *_TRUE), "subscribed"),
    **dict.fromkeys(("unsubscribed", "unsubscribe", "opt-out", "optout", "baja", *_FALSE), "unsubscribed"),
    **dict.fromkeys(("pending_confirmation", "pending", "pendiente"), "pending_confirmation"),
}
_INTEGER = re.compile(r"^[+-]?\d+$")
_DECIMAL_COMMA = re.compile(r"^[+-]?\d+,\d+$")


@dataclass(slots=True)
class RowEvents:
    """The events one row stands for, and how to name a validation problem after the row's columns."""

    events: list[dict[str, Any]]
    column_of: Callable[[dict[str, Any], str], str]


def row_digest(row: dict[str, str]) -> str:
    canonical = "\x1f".join(f"{key}\x1e{row[key]}" for key in sorted(row))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _cell(row: dict[str, str], column: str) -> str | None:
    value = (row.get(column) or "").strip()
    return value or None


def _number(value: str | None) -> str | None:
    # Spreadsheets in Spanish write 12,50; the API's decimal strings use a point.
    if value is not None and _DECIMAL_COMMA.match(value):
        return value.replace(",", ".")
    return value


def _integer(value: str | None) -> int | str | None:
    # Anything that is not a whole number is passed on as text, so validation names the problem.
    if value is not None and _INTEGER.match(value):
        return int(value)
    return value


def _flag(value: str | None) -> bool | str | None:
    if value is None:
        return None
    lowered = value.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    return value


def product_row_events(row: dict[str, str], *, occurred_at: str) -> RowEvents:
    sku = _cell(row, "sku") or ""
    digest = row_digest(row)
    base_id = f"import:products:{sku[:100]}:{digest}"
    when = _cell(row, "updated_at") or occurred_at
    data: dict[str, Any] = {
        "sku": sku or None,
        "title": _cell(row, "title"),
        "description": _cell(row, "description"),
        "url": _cell(row, "url"),
        "image_url": _cell(row, "image_url"),
        "price": _number(_cell(row, "price")),
        "currency": (_cell(row, "currency") or "").upper() or None,
        "stock": _integer(_cell(row, "stock")),
        "category_id": _cell(row, "category_id"),
        "external_id": _cell(row, "external_id"),
    }
    active = _flag(_cell(row, "active"))
    if active is not None:
        data["active"] = active
    events = [{"id": base_id, "type": "product_upserted", "occurred_at": when,
               "data": {key: value for key, value in data.items() if value is not None}}]
    if data["category_id"] and _cell(row, "category_name"):
        category = {"id": data["category_id"], "name": _cell(row, "category_name"),
                    "parent_id": _cell(row, "parent_category_id")}
        events.insert(0, {"id": f"{base_id}:category", "type": "category_upserted", "occurred_at": when,
                          "data": {key: value for key, value in category.items() if value is not None}})
    return RowEvents(events=events, column_of=_product_column)


def _product_column(event: dict[str, Any], path: str) -> str:
    field = path.removeprefix("data.")
    return {"id": "category_id", "name": "category_name", "parent_id": "parent_category_id",
            "occurred_at": "updated_at"}.get(field, field)


def customer_row_events(row: dict[str, str], *, occurred_at: str, source_name: str, line: int) -> RowEvents:
    person: dict[str, Any] = {
        "email": _cell(row, "email"),
        "phone": _cell(row, "phone"),
        "external_id": _cell(row, "external_id"),
        "first_name": _cell(row, "first_name"),
        "last_name": _cell(row, "last_name"),
        "language": _cell(row, "language"),
        "timezone": _cell(row, "timezone"),
    }
    handles = {network: _cell(row, network) for network in sorted(HANDLE_KINDS) if _cell(row, network)}
    if handles:
        person["handles"] = handles
    person = {key: value for key, value in person.items() if value is not None}
    key = person.get("email") or person.get("phone") or person.get("external_id") or next(iter(handles.values()), "")
    base_id = f"import:customers:{str(key).lower()[:100]}:{row_digest(row)}"
    when = _cell(row, "updated_at") or occurred_at
    events: list[dict[str, Any]] = [
        {"id": base_id, "type": "customer_upserted", "occurred_at": when, "data": {"customer": person}}
    ]
    # Consent events carry only the identities, so a consent row never rewrites the profile twice.
    identities = {k: v for k, v in person.items() if k in ("email", "phone", "external_id", "handles")}
    for column, channel in CONSENT_COLUMNS.items():
        value = _cell(row, column)
        if value is None:
            continue
        status = _CONSENT_WORDS.get(value.lower(), value)
        events.append({
            "id": f"{base_id}:{channel}", "type": "consent_changed", "occurred_at": when,
            "data": {"customer": identities or person, "channel": channel, "status": status, "source": "import",
                     "evidence": {"file": source_name, "line": line, "column": column, "value": value}},
        })
    return RowEvents(events=events, column_of=_customer_column)


def _customer_column(event: dict[str, Any], path: str) -> str:
    field = path.removeprefix("data.")
    if event["type"] == "consent_changed" and field in ("status", "channel", "source", "evidence"):
        return event["data"]["evidence"]["column"]
    if field.startswith("customer.handles."):
        return field.removeprefix("customer.handles.")
    if field == "customer":
        return "email"
    if field.startswith("customer."):
        return field.removeprefix("customer.")
    return {"occurred_at": "updated_at"}.get(field, field)
