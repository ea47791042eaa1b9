"""Writes behind the operations commands: CSV import and the demo's staff login and API key."""

import csv
import secrets
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from django.contrib.auth import get_user_model
from django.db import transaction
from tqdm import tqdm

from tertulia.core.models import ApiKey, Role, Store
from tertulia.core.services import api_key_authenticate, api_key_create, api_key_revoke, membership_grant
from tertulia.events.schema import ValidEvent, validate_event
from tertulia.events.services import events_store
from tertulia.ops.csv_rows import (
    COLUMNS,
    CUSTOMER_REQUIRED_ANY,
    PRODUCT_REQUIRED,
    RowEvents,
    customer_row_events,
    product_row_events,
)

IMPORT_KINDS = ("products", "customers")


class UnusableInput(Exception):
    """The file as a whole cannot be imported (missing, unreadable, or without the needed header)."""


@dataclass(frozen=True, slots=True)
class RowProblem:
    line: int
    field: str
    code: str
    message: str


@dataclass
class ImportReport:
    kind: str
    store: str
    file: str
    rows: int = 0
    imported: int = 0  # rows that changed something
    unchanged: int = 0  # valid rows already imported before (every event a duplicate)
    rejected: int = 0
    events_created: int = 0
    events_duplicate: int = 0
    ignored_columns: list[str] = field(default_factory=list)
    problems: list[RowProblem] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def _header_key(name: str) -> str:
    return name.strip().lower().replace(" ", "_").replace("-", "_")


def _delimiter(first_line: str) -> str:
    # Spreadsheets set to Spanish export with semicolons; choose whichever separates the header.
    counts = {d: first_line.count(d) for d in (",", ";", "\t")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def _records(path: Path, encoding: str) -> tuple[list[str], str, int]:
    try:
        with path.open(encoding=encoding, newline="") as handle:
            first = handle.readline()
            if not first.strip():
                raise UnusableInput(f"{path} is empty: the first line must be the header.")
            delimiter = _delimiter(first)
            handle.seek(0)
            reader = csv.reader(handle, delimiter=delimiter)
            header = [_header_key(name) for name in next(reader)]
            count = sum(1 for cells in reader if any(cell.strip() for cell in cells))
    except FileNotFoundError:
        raise UnusableInput(f"No such file: {path}") from None
    except IsADirectoryError:
        raise UnusableInput(f"{path} is a directory, not a CSV file.") from None
    except UnicodeDecodeError as exc:
        raise UnusableInput(f"{path} is not {encoding} text ({exc.reason} at byte {exc.start}); "
                            "save it as 'CSV UTF-8' or pass --encoding.") from None
    except csv.Error as exc:
        raise UnusableInput(f"{path} is not readable as CSV: {exc}") from None
    return header, delimiter, count


def _check_header(kind: str, header: list[str]) -> list[str]:
    known = set(COLUMNS[kind])
    duplicated = sorted({name for name in header if name and header.count(name) > 1})
    if duplicated:
        raise UnusableInput(f"The header repeats column(s): {', '.join(duplicated)}.")
    if kind == "products":
        missing = [name for name in PRODUCT_REQUIRED if name not in header]
        if missing:
            raise UnusableInput(f"The header lacks required column(s): {', '.join(missing)}. "
                                f"Products use: {', '.join(COLUMNS[kind])}.")
    elif not any(name in header for name in CUSTOMER_REQUIRED_ANY):
        raise UnusableInput(f"The header needs at least one identity column ({', '.join(CUSTOMER_REQUIRED_ANY)}). "
                            f"Customers use: {', '.join(COLUMNS[kind])}.")
    return [name for name in header if name not in known]


def _rows(path: Path, encoding: str, delimiter: str, header: list[str]) -> Iterator[tuple[int, dict | None, str]]:
    """Yield (line, row, problem) for every non-blank record; row is None when the record is malformed."""
    with path.open(encoding=encoding, newline="") as handle:
        reader = csv.reader(handle, delimiter=delimiter)
        next(reader)
        while True:
            line = reader.line_num + 1
            try:
                cells = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                yield line, None, str(exc)
                continue
            if not any(cell.strip() for cell in cells):
                continue
            if len(cells) > len(header):
                yield line, None, f"{len(cells)} cells in a row under a header of {len(header)} columns."
                continue
            # Short rows are common when trailing cells are empty; read them as empty.
            cells = cells + [""] * (len(header) - len(cells))
            yield line, dict(zip(header, cells, strict=True)), ""


def csv_import(*, store: Store, kind: str, path: Path, batch_size: int = 500, progress: bool = True,
               encoding: str = "utf-8-sig") -> ImportReport:
    """Import a CSV of products or customers as native events; invalid rows are reported, not stored.

    Every row is validated with the same rules as POST /api/v1/events. Valid rows are stored in
    batches (each batch all-or-nothing); event ids derive from row content, so a re-run is a no-op.
    """
    if kind not in IMPORT_KINDS:
        raise UnusableInput(f"Unknown import kind '{kind}': use one of {', '.join(IMPORT_KINDS)}.")
    header, delimiter, total = _records(path, encoding)
    report = ImportReport(kind=kind, store=store.slug, file=str(path))
    report.ignored_columns = _check_header(kind, header)
    now = datetime.now(UTC)
    stamp = now.isoformat().replace("+00:00", "Z")
    pending: list[tuple[int, ValidEvent]] = []

    def flush() -> None:
        if not pending:
            return
        result = events_store(store=store, events=[event for _, event in pending], source="import")
        changed: dict[int, bool] = {}
        for (line, _), (_, status) in zip(pending, result.statuses, strict=True):
            changed[line] = changed.get(line, False) or status == "created"
        report.imported += sum(changed.values())
        report.unchanged += sum(1 for value in changed.values() if not value)
        report.events_created += result.accepted
        report.events_duplicate += result.duplicates
        pending.clear()

    bar = tqdm(total=total, unit="rows", desc=f"{kind} -> {store.slug}", disable=not progress, leave=True)
    try:
        for line, row, malformed in _rows(path, encoding, delimiter, header):
            report.rows += 1
            bar.update(1)
            if row is None:
                report.rejected += 1
                report.problems.append(RowProblem(line, "", "malformed_row", malformed))
                continue
            converted = _convert(kind, row, stamp, path.name, line)
            valid, problems = _validate(converted, line, now)
            if problems:
                report.rejected += 1
                report.problems.extend(problems)
                continue
            pending.extend((line, event) for event in valid)
            if len(pending) >= batch_size:
                flush()
        flush()
    finally:
        bar.close()
    return report


def _convert(kind: str, row: dict[str, str], stamp: str, source_name: str, line: int) -> RowEvents:
    if kind == "products":
        return product_row_events(row, occurred_at=stamp)
    return customer_row_events(row, occurred_at=stamp, source_name=source_name, line=line)


def _validate(converted: RowEvents, line: int, now: datetime) -> tuple[list[ValidEvent], list[RowProblem]]:
    valid: list[ValidEvent] = []
    problems: dict[tuple[str, str], RowProblem] = {}
    for raw in converted.events:
        event, details = validate_event(raw, None, now)
        if event is not None:
            valid.append(event)
        for detail in details:
            column = converted.column_of(raw, detail.field)
            problems.setdefault((column, detail.code), RowProblem(line, column, detail.code, detail.message))
    return valid, list(problems.values())


# --- The demo's staff login and API key -----------------------------------------------------

DEMO_USERNAME = "demo"
DEMO_KEY_NAME = "demo"


@dataclass(frozen=True, slots=True)
class DemoAccess:
    username: str
    password: str
    api_key: str
    reused: bool


def demo_access_ensure(*, store: Store, username: str = DEMO_USERNAME, password: str | None = None,
                       api_key: str | None = None) -> DemoAccess:
    """Keep the demo's login and key if they still work, otherwise issue new ones.

    The key's secret exists only in the credentials file; when that file is lost the old demo
    keys are revoked and a new one is issued.
    """
    user_model = get_user_model()
    with transaction.atomic():
        user = user_model.objects.filter(username=username).first()
        password_ok = bool(user and password and user.check_password(password))
        if not password_ok:
            password = secrets.token_urlsafe(12)
            if user is None:
                user = user_model.objects.create_superuser(username=username, email="", password=password)
            else:
                user.set_password(password)
                user.is_staff = user.is_superuser = user.is_active = True
                user.save()
        membership_grant(store=store, user=user, role=Role.OWNER)
        key = api_key_authenticate(secret=api_key) if api_key else None
        key_ok = key is not None and key.store_id == store.pk
        if not key_ok:
            for stale in ApiKey.objects.for_store(store).filter(name=DEMO_KEY_NAME, revoked_at__isnull=True):
                api_key_revoke(store=store, key_id=stale.pk)
            api_key = api_key_create(store=store, name=DEMO_KEY_NAME).secret
    assert password is not None and api_key is not None
    return DemoAccess(username=username, password=password, api_key=api_key, reused=password_ok and key_ok)
