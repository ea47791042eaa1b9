"""Small helpers for the few hot paths that write many rows at once in one SQL statement."""

import functools
import logging
import random
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import orjson
import psycopg
from django.apps import apps
from django.db import OperationalError, connection, transaction
from django.db.models import F
from django.db.models.fields.json import JSONField

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
    """Run `<sql_prefix> AND <column> IN (...)` without the ORM's per-value overhead.

    On PostgreSQL the values travel as one binary array (`= ANY(...)`); on SQLite in chunks of `?`.
    """
    if not values:
        return []
    if connection.vendor == "postgresql":
        return _execute_fetchall(f"{sql_prefix.replace('%s', '%b')} AND {column} = ANY(%b)", [*fixed, list(values)])
    rows: list[tuple] = []
    for part in chunks(list(values), 900):
        rows.extend(_execute_fetchall(f"{sql_prefix} AND {column} IN ({', '.join(['%s'] * len(part))})", [*fixed, *part]))
    return rows


def execute_many(sql: str, rows: Sequence[Sequence[Any]]) -> None:
    """One statement for many parameter rows, bound by the driver (pipelined on PostgreSQL)."""
    if not rows:
        return
    with connection.cursor() as cursor:
        cursor.executemany(sql, rows)


def db_json(value: Any) -> str:
    return orjson.dumps(value).decode()


def insert_returning(
    table: str,
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    conflict: Sequence[str] | None,
    returning: Sequence[str],
    update: str | None = None,
) -> list[tuple]:
    """INSERT many rows; on conflict do nothing (or `update`, a SET ... [WHERE ...] clause); return rows written.

    Both PostgreSQL and SQLite (3.35+) speak this dialect of upsert and RETURNING. Rows come back in
    insertion order, as Django's own bulk_create assumes. On PostgreSQL the rows travel as one array
    per column and are spread by unnest(): a 500-row VALUES list would be 6,000 parameters to parse
    and plan on every call, which costs more than the insert itself.
    """
    if not rows:
        return []
    if conflict is None:
        tail = f"RETURNING {', '.join(returning)}"
    else:
        action = f"DO UPDATE SET {update}" if update else "DO NOTHING"
        tail = f"ON CONFLICT ({', '.join(conflict)}) {action} RETURNING {', '.join(returning)}"
    if connection.vendor == "postgresql":
        types = _column_types(table)
        arrays = ", ".join(f"%b::{types[column]}[]" for column in columns)
        sql = f"INSERT INTO {table} ({', '.join(columns)}) SELECT * FROM unnest({arrays}) {tail}"  # noqa: S608 - identifiers are our constants; values are bound parameters
        return _execute_fetchall(sql, [list(column) for column in zip(*rows, strict=True)])
    row_sql = "(" + ", ".join(["%s"] * len(columns)) + ")"
    sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES {', '.join([row_sql] * len(rows))} {tail}"  # noqa: S608 - identifiers are our constants; values are bound parameters
    return _execute_fetchall(sql, [value for row in rows for value in row])


def insert_rows(table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]], *, returning: Sequence[str]) -> list[tuple]:
    """Plain multi-row INSERT ... RETURNING, rows returned in insertion order."""
    return insert_returning(table, columns, rows, conflict=None, returning=returning)


@functools.cache
def _column_types(table: str) -> dict[str, str]:
    """PostgreSQL column types of one of our tables, read from its model (for the unnest() casts)."""
    for model in apps.get_models():
        if model._meta.db_table == table:
            types = {}
            for field in model._meta.concrete_fields:
                kind = field.rel_db_type(connection) if field.is_relation else field.db_type(connection)
                types[field.column] = kind.replace("serial", "integer") if kind else "text"
            return types
    raise LookupError(f"No model has the table {table}")


def _execute_fetchall(sql: str, params: list[Any]) -> list[tuple]:
    if connection.vendor == "sqlite":
        # Django's SQLite cursor rewrites %s to ? with a regex over the whole statement, which costs
        # more than the insert itself for a 500-row VALUES list; the sqlite3 connection takes ? as is.
        connection.ensure_connection()
        with connection.wrap_database_errors:
            return connection.connection.execute(sql.replace("%s", "?"), params).fetchall()
    # Binary parameters (%b) need psycopg's server-side binding cursor; Django's cursor binds on the
    # client and would quote every element of the arrays into the SQL text (JSON quotes make that slow).
    connection.ensure_connection()
    with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cursor:
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


def store_scope(queryset, store_id: int):
    """`queryset` limited to one store, for keyed reads and writes (ids, customer ids) of a batch.

    SQLite without table statistics prefers any index that starts with store_id, and so reads the
    store's whole range (100,000 customers, consents, enrollments, say) to pick 500 ids out of it, once
    per batch. There the condition goes on `store_id + 0`, which no index serves, so the id's own
    index is used; the rows and the scoping are the same. PostgreSQL plans with statistics.
    """
    if is_sqlite():
        return queryset.alias(scope_store_id=F("store_id") + 0).filter(scope_store_id=store_id)
    return queryset.filter(store_id=store_id)


def keyed(column: str) -> str:
    """The SQL for a condition column that must not pick the index on SQLite (see store_scope)."""
    return f"+{column}" if is_sqlite() else column


def column_values(model, rows: list[dict[str, Any]]) -> tuple[list[str], list[tuple]]:
    """Columns and values for a raw bulk insert of `model`, with every field's default filled in.

    Built from the model so a field added later (with a default) needs no change here.
    """
    lite = is_sqlite()
    fields = [f for f in model._meta.concrete_fields if not f.primary_key]
    given = set().union(*(row.keys() for row in rows)) if rows else set()
    columns: list[str] = []
    plan: list[tuple[str | None, Any]] = []  # (key in the row, converter) or (None, the constant value)
    for f in fields:
        fn: Any = None
        if isinstance(f, JSONField):
            fn = db_json
        elif f.get_internal_type() == "DateTimeField":
            fn = lambda v: db_datetime(v, sqlite=lite)  # noqa: E731 - one small converter per column
        columns.append(f.column)
        key = f.attname if f.attname in given else f.name if f.name in given else None
        if key is not None:
            plan.append((key, fn))
            continue
        default = f.get_default()  # "" for text fields without a default, as Django's own inserts
        if default is None and not f.null:
            raise ValueError(f"{model.__name__}.{f.name} needs a value")
        # A column no row gives holds the same value in every row: converted once.
        plan.append((None, fn(default) if fn is not None and default is not None else default))
    values = [
        tuple((row[key] if fn is None or row[key] is None else fn(row[key])) if key is not None else fn
              for key, fn in plan)
        for row in rows
    ]
    return columns, values
