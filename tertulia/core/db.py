"""Small helpers for the few hot paths that write many rows at once in one SQL statement."""

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import orjson
from django.db import connection


def is_postgres() -> bool:
    return connection.vendor == "postgresql"


def db_datetime(value: datetime | None) -> Any:
    return connection.ops.adapt_datetimefield_value(value)


def db_json(value: Any) -> str:
    return orjson.dumps(value).decode()


def json_placeholder() -> str:
    return "%s::jsonb" if is_postgres() else "%s"


def insert_returning(
    table: str,
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    conflict: Sequence[str],
    returning: Sequence[str],
    placeholders: Sequence[str] | None = None,
    update: str | None = None,
) -> list[tuple]:
    """INSERT many rows; on conflict do nothing (or `update`, a SET ... [WHERE ...] clause); return rows written.

    Both PostgreSQL and SQLite (3.35+) speak this dialect of upsert and RETURNING.
    """
    if not rows:
        return []
    row_sql = "(" + ", ".join(placeholders or ["%s"] * len(columns)) + ")"
    action = f"DO UPDATE SET {update}" if update else "DO NOTHING"
    sql = (
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES {', '.join([row_sql] * len(rows))} "
        f"ON CONFLICT ({', '.join(conflict)}) {action} RETURNING {', '.join(returning)}"
    )
    params = [value for row in rows for value in row]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def chunks(rows: Sequence, size: int) -> list[Sequence]:
    return [rows[start : start + size] for start in range(0, len(rows), size)]
