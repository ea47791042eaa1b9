"""Cursor pagination for the read API, and the schemas its list and error answers share.

A cursor is opaque to clients: URL-safe base64 of a versioned marker and the last id served, so
pages stay stable while rows are added (offsets would skip or repeat rows) and we may change
what a cursor holds without breaking anyone.
"""

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Generic, TypeVar

from django.db.models import Model, QuerySet
from ninja import Field, Schema
from pydantic import field_validator

from tertulia.core.errors import ApiError, ErrorDetail

DEFAULT_LIMIT = 50
MAX_LIMIT = 500
# The largest id a BIGINT column holds; a larger number would reach the database and fail there.
MAX_ID = 2**63 - 1
_CURSOR_PREFIX = "id1:"
_MAX_CURSOR_LENGTH = 64

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

M = TypeVar("M", bound=Model)


class PageParams(Schema):
    cursor: str | None = Field(None, description="`next_cursor` of the previous page; leave out for the first page.")
    limit: int = Field(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT, description=f"Rows per page, 1 to {MAX_LIMIT}.")

    @field_validator("*", mode="after")
    @classmethod
    def _no_control_characters(cls, value: object) -> object:
        # PostgreSQL refuses NUL in text, so such a filter would fail in the database instead of here.
        if isinstance(value, str) and _CONTROL.search(value):
            raise ValueError("Must not contain control characters.")
        return value


class ErrorDetailOut(Schema):
    index: int | None = Field(None, description="Position of the item in a batch, when the problem is in one.")
    field: str
    code: str
    message: str


class ErrorBody(Schema):
    code: str = Field(..., description="Stable machine-readable code, e.g. `not_found`, `invalid_cursor`.")
    message: str
    details: list[ErrorDetailOut]


class ErrorOut(Schema):
    error: ErrorBody


# Errors any authenticated read endpoint may answer with; merged into each operation's `response`.
READ_ERRORS: dict[int, type[Schema]] = {400: ErrorOut, 401: ErrorOut, 422: ErrorOut}


def cursor_encode(last_id: int) -> str:
    return base64.urlsafe_b64encode(f"{_CURSOR_PREFIX}{last_id}".encode()).decode().rstrip("=")


def _invalid_cursor() -> ApiError:
    return ApiError("invalid_cursor", "The cursor is not one this API gave out; start again without it.", 400,
                    [ErrorDetail(field="cursor", code="invalid_cursor", message="Pass next_cursor back unchanged.")])


def cursor_decode(cursor: str) -> int:
    """The id a cursor points after, or the 400 `invalid_cursor` for anything we did not issue."""
    if len(cursor) > _MAX_CURSOR_LENGTH:
        raise _invalid_cursor()
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
    except (binascii.Error, ValueError):
        raise _invalid_cursor() from None
    if not text.startswith(_CURSOR_PREFIX):
        raise _invalid_cursor()
    digits = text[len(_CURSOR_PREFIX):]
    if not digits.isdigit() or not digits.isascii() or not 0 <= int(digits) <= MAX_ID:
        raise _invalid_cursor()
    return int(digits)


@dataclass(frozen=True, slots=True)
class Page(Generic[M]):
    data: list[M]
    next_cursor: str | None


def page_fetch(queryset: "QuerySet[M]", *, cursor: str | None, limit: int) -> Page[M]:
    """One page of `queryset` in id order; one query, asking for one row more to know if another page exists."""
    if cursor:
        queryset = queryset.filter(pk__gt=cursor_decode(cursor))
    rows = list(queryset.order_by("pk")[: limit + 1])
    if len(rows) > limit:
        rows = rows[:limit]
        return Page(data=rows, next_cursor=cursor_encode(rows[-1].pk))
    return Page(data=rows, next_cursor=None)
