"""Small helpers for the few hot paths that write many rows at once in one SQL statement."""

import logging
import random
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import orjson
from django.db import OperationalError, connection, transaction

logger = logging.getLogger(__name__)
T = TypeVar("T")


def is_postgres() -> bool:
    return connection.vendor == "postgresql"


def db_datetime(value: datetime | None, *, sqlite: bool | None = None) -> Any:
    """A timezone-aware datetime as the backend stores it (Django's format: naive UTC text on SQLite).

    Hot loops pass `sqlite` once instead of asking the connection for every value.
    """
    if value is None or not (connection.vendor == "sqlite" if sqlite is None else sqlite):
        return value
    if value.utcoffset():
        value = value.astimezone(UTC)
    return value.replace(tzinfo=None).isoformat(" ")


def is_sqlite() -> bool:
    return connection.vendor == "sqlite"


def select_in(sql_prefix: str, fixed: Sequence[Any], column: str, values: Sequence[Any]) -> list[tuple]:
    """Run `<sql_prefix> AND <column> IN (...)` in chunks, without the ORM's per-value overhead."""
    rows: list[tuple] = []
    with connection.cursor() as cursor:
        for part in chunks(list(values), 900):
            cursor.execute(f"{sql_prefix} AND {column} IN ({', '.join(['%s'] * len(part))})", [*fixed, *part])
            rows.extend(cursor.fetchall())
    return rows


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
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES {', '.join([row_sql] * len(rows))} "  # noqa: S608 - identifiers are our constants; values are bound parameters
        f"ON CONFLICT ({', '.join(conflict)}) {action} RETURNING {', '.join(returning)}"
    )
    return _execute_fetchall(sql, [value for row in rows for value in row])


def insert_rows(table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]], *, returning: Sequence[str]) -> list[tuple]:
    """Plain multi-row INSERT ... RETURNING, rows returned in insertion order (as Django's bulk_create assumes)."""
    if not rows:
        return []
    row_sql = "(" + ", ".join(["%s"] * len(columns)) + ")"
    sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES {', '.join([row_sql] * len(rows))} RETURNING {', '.join(returning)}"  # noqa: S608 - identifiers are our constants; values are bound parameters
    return _execute_fetchall(sql, [value for row in rows for value in row])


def _execute_fetchall(sql: str, params: list[Any]) -> list[tuple]:
    if connection.vendor == "sqlite":
        # Django's SQLite cursor rewrites %s to ? with a regex over the whole statement, which costs
        # more than the insert itself for a 500-row VALUES list; the sqlite3 connection takes ? as is.
        connection.ensure_connection()
        return connection.connection.execute(sql.replace("%s", "?"), params).fetchall()
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def chunks(rows: Sequence, size: int) -> list[Sequence]:
    return [rows[start : start + size] for start in range(0, len(rows), size)]


def is_transient(exc: OperationalError) -> bool:
    """Deadlocks, serialization failures and SQLite lock time-outs: nothing wrong with the data, run again."""
    text = str(exc).lower()
    return "deadlock" in text or "could not serialize" in text or "database is locked" in text


def atomic_with_retry(work: Callable[[], T], *, attempts: int = 5) -> T:
    """Run `work` in one transaction, and run it again (with jitter) if the database reports a transient conflict.

    Concurrent batches touching the same rows can deadlock on PostgreSQL; the work is all-or-nothing,
    so running it again is safe. Inside a caller's transaction there is no retry: the caller's whole
    unit must be retried, not a part of it.
    """
    if connection.in_atomic_block:
        with transaction.atomic():
            return work()
    for attempt in range(1, attempts + 1):
        try:
            with transaction.atomic():
                return work()
        except OperationalError as exc:
            if attempt == attempts or not is_transient(exc):
                raise
            logger.warning("transaction retried", extra={"attempt": attempt, "error": str(exc).splitlines()[0][:200]})
            time.sleep(random.uniform(0.005, 0.05) * attempt)  # noqa: S311 - jitter, not security
    raise AssertionError("unreachable")
