"""The dispatcher: sends due deliveries in batches under a lease, with the sending rules, retries and attempts.

One batch (`dispatch_batch`) is three short steps (docs/channels.md, "Dispatcher"):

1. **Claim and decide**, in one transaction: due `scheduled` rows become `sending` with a lease
   (`FOR UPDATE SKIP LOCKED` on PostgreSQL, so dispatchers side by side never take the same row; on
   SQLite the transaction is IMMEDIATE, which holds the write lock). The rules (channels.rules) are
   evaluated for the whole batch: skipped and postponed rows are written back at once; the rows that
   go get `attempts + 1` and a provisional `sent_at`, so the frequency cap of another dispatcher
   already counts them. On PostgreSQL an advisory lock per store serialises this step, so two
   dispatchers cannot both decide to send to one person.
2. **Prepare and send**, outside any transaction: journey steps are prepared (exit conditions checked
   again, message rendered) by journeys.services.deliveries_prepare; other deliveries are sent as
   stored. Each message goes through its adapter (channels.registry.adapter_for). Whatever an adapter
   raises is caught and classified: nothing a provider does stops the dispatcher.
3. **Record**, in one transaction: one bulk update of the rows still claimed by this dispatcher, one
   bulk insert of the DeliveryAttempt rows (the provider's answer kept on each).

Delivery is at least once: a dispatcher killed between sending and recording leaves its rows
`sending`; when their lease expires they go back to `scheduled` (`deliveries_reclaim_expired`) and
are sent again. Only the batch in flight can be sent twice; a delivery whose sends keep killing
dispatchers fails after its attempts are used up.
"""

import logging
import random
import threading
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import psycopg
from django.conf import settings
from django.db import DatabaseError, close_old_connections, connection, transaction
from django.db.models.base import ModelState
from django.utils import timezone

from tertulia.channels.base import (
    OutboundMessage,
    PermanentSendError,
    SendError,
    SendResult,
)
from tertulia.channels.models import AttemptOutcome, Delivery, DeliveryStatus
from tertulia.channels.rules import POSTPONE, SKIP, rules_evaluate
from tertulia.core import metrics
from tertulia.core.db import chunks, db_datetime, insert_returning, is_postgres

log = logging.getLogger("tertulia.dispatch")

DEFAULT_BATCH_SIZE = 500
DEFAULT_LEASE_SECONDS = 60.0
DEFAULT_MAX_ATTEMPTS = 5
DEFAULT_POLL_SECONDS = 0.25
SWEEP_EVERY_SECONDS = 1.0
# Orders are credited to messages this often: revenue figures are at most this late, and a quiet
# run (nothing new) costs a few reads.
ATTRIBUTION_EVERY_SECONDS = 15.0
# pg_advisory_xact_lock(namespace, store id): the namespace keeps our keys apart from anyone else's.
_LOCK_NAMESPACE = 0x7E47
TABLE = Delivery._meta.db_table
_SENDING = DeliveryStatus.SENDING.value

__all__ = ["deliveries_reclaim_expired", "delivery_retry_delay", "dispatch_batch", "dispatch_run", "run_dispatcher"]


def _setting(name: str, default: float) -> float:
    return float(getattr(settings, name, default))


def max_attempts() -> int:
    return int(_setting("TERTULIA_DELIVERY_MAX_ATTEMPTS", DEFAULT_MAX_ATTEMPTS))


def lease_seconds() -> float:
    return _setting("TERTULIA_DELIVERY_LEASE_SECONDS", DEFAULT_LEASE_SECONDS)


def delivery_retry_delay(attempt: int) -> timedelta:
    """Exponential backoff with jitter: base * 2**(attempt-1), capped, times a random 0.5-1.0.

    Messages that failed together (a provider outage) come back spread out, not all at once.
    """
    base = _setting("TERTULIA_DELIVERY_RETRY_BASE_SECONDS", 30.0)
    cap = _setting("TERTULIA_DELIVERY_RETRY_MAX_SECONDS", 3600.0)
    return timedelta(seconds=min(cap, base * 2 ** max(attempt - 1, 0)) * (0.5 + random.random() / 2))  # noqa: S311


@dataclass(slots=True)
class _Outcome:
    """What happened to one delivery that was meant to go out in this batch."""

    delivery: Delivery
    message: OutboundMessage | None = None
    status: str = ""  # the delivery's new status
    reason: str = ""
    detail: str = ""
    attempted: bool = False  # a try that gets a DeliveryAttempt row
    attempt_outcome: str = ""
    provider: str = ""
    response: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    started_at: datetime | None = None
    finished_at: datetime | None = None
    result: SendResult | None = None


# --- one batch -------------------------------------------------------------------------------


def dispatch_batch(*, worker: str, batch_size: int = DEFAULT_BATCH_SIZE, now: datetime | None = None,
                   lease: float | None = None) -> int:
    """Claim up to `batch_size` due deliveries, apply the rules, send, record; return how many were handled.

    With `now` (tests) every time the dispatcher would read from the clock is `now` instead.
    """
    moment = now or timezone.now()
    lease = float(lease or lease_seconds())
    deliveries, verdicts = _claim_and_decide(worker=worker, batch_size=batch_size, moment=moment, lease=lease)
    if not deliveries:
        return 0
    going = [d for d in deliveries if verdicts[d.pk].action not in (SKIP, POSTPONE)]
    for delivery in deliveries:
        verdict = verdicts[delivery.pk]
        if verdict.action in (SKIP, POSTPONE):
            metrics.delivery_counted(channel=delivery.channel,
                                     outcome="skipped" if verdict.action == SKIP else "postponed")
    if going:
        outcomes = _prepare(going, moment)
        _send(outcomes, worker=worker, lease=lease, fixed_now=now)
        _record(outcomes, worker=worker, moment=moment, fixed_now=now)
        _journeys_notify([o for o in outcomes if o.status], now=moment)
    return len(deliveries)


def dispatch_run(*, worker: str, batch_size: int = DEFAULT_BATCH_SIZE, now: datetime | None = None) -> int:
    """Give back expired leases, then dispatch batches until nothing is due at `now`; return how many were handled.

    For tests and `--once`; the worker process runs `run_dispatcher` instead.
    """
    deliveries_reclaim_expired(now=now)
    handled = 0
    while True:
        count = dispatch_batch(worker=worker, batch_size=batch_size, now=now)
        handled += count
        if count < batch_size:
            return handled


def _claim_and_decide(*, worker: str, batch_size: int, moment: datetime, lease: float):
    if not is_postgres() and not _due_exists(moment):
        # Idle polls stay read-only, so an idle dispatcher never takes SQLite's write lock.
        return [], {}
    lock_sql = " FOR UPDATE SKIP LOCKED" if is_postgres() else ""
    sqlite = not is_postgres()
    fields = _loaded_fields()
    sql = (
        f"UPDATE {TABLE} SET status = %s, claimed_by = %s, lease_expires_at = %s, updated_at = %s "  # noqa: S608 - fixed identifiers
        f"WHERE id IN (SELECT id FROM {TABLE} WHERE status = %s AND due_at <= %s "
        f"ORDER BY due_at, id LIMIT %s{lock_sql}) RETURNING {', '.join(f.column for f in fields)}"
    )
    params = [_SENDING, worker, db_datetime(moment + timedelta(seconds=lease), sqlite=sqlite),
              db_datetime(moment, sqlite=sqlite), DeliveryStatus.SCHEDULED.value, db_datetime(moment, sqlite=sqlite),
              batch_size]
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            claimed = cursor.fetchall()
        if not claimed:
            return [], {}
        deliveries = sorted((_delivery_from_row(fields, row) for row in claimed), key=lambda d: (d.due_at, d.pk))
        if is_postgres():
            with connection.cursor() as cursor:
                for store_id in sorted({d.store_id for d in deliveries}):
                    cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [_LOCK_NAMESPACE, store_id])
        verdicts = rules_evaluate(deliveries=deliveries, now=moment)
        stamp = db_datetime(moment, sqlite=sqlite)
        rows = []
        going = []
        for delivery in deliveries:
            verdict = verdicts[delivery.pk]
            if verdict.action == SKIP:
                rows.append((delivery.pk, DeliveryStatus.SKIPPED.value, db_datetime(delivery.due_at, sqlite=sqlite), None, "", None,
                             verdict.reason, verdict.detail, stamp))
            elif verdict.action == POSTPONE:
                rows.append((delivery.pk, DeliveryStatus.SCHEDULED.value, db_datetime(verdict.due_at, sqlite=sqlite), None, "",
                             None, verdict.reason, verdict.detail, stamp))
            else:
                going.append(delivery.pk)
                delivery.attempts += 1
                delivery.sent_at = moment
        _update_claimed(worker=worker, columns=["status", "due_at", "sent_at", "claimed_by", "lease_expires_at",
                                                "reason", "detail", "updated_at"], rows=rows)
        # Provisional sent_at: the frequency cap counts a message from the moment its send starts.
        _update_ids(f"UPDATE {TABLE} SET attempts = attempts + 1, sent_at = %s WHERE id IN ({{ids}})",  # noqa: S608
                    [stamp], going)
    return deliveries, verdicts


_FIELDS: list = []
_KINDS: list[tuple[str, str]] = []  # (attname, "dt" | "json" | "") per concrete field, in column order


def _loaded_fields() -> list:
    if not _FIELDS:
        _FIELDS.extend(Delivery._meta.concrete_fields)
        _KINDS.extend((f.attname, {"DateTimeField": "dt", "JSONField": "json"}.get(f.get_internal_type(), ""))
                      for f in _FIELDS)
    return _FIELDS


def _delivery_from_row(fields: list, row: Sequence[Any]) -> Delivery:
    """A Delivery from a RETURNING row, built directly: the ORM's own read costs as much as the rest of the claim."""
    data = {}
    for (attname, kind), value in zip(_KINDS, row, strict=True):
        if value is not None and kind:
            if kind == "dt":
                if not isinstance(value, datetime):
                    value = datetime.fromisoformat(value)
                if value.tzinfo is None:
                    value = value.replace(tzinfo=UTC)
            elif isinstance(value, str | bytes):
                value = orjson.loads(value)
        data[attname] = value
    delivery = Delivery.__new__(Delivery)
    delivery._state = ModelState()
    delivery._state.adding = False
    delivery._state.db = connection.alias
    delivery.__dict__.update(data)
    return delivery


def _due_exists(moment: datetime) -> bool:
    return Delivery.objects.filter(status=DeliveryStatus.SCHEDULED, due_at__lte=moment).exists()


# --- prepare ---------------------------------------------------------------------------------


def _prepare(deliveries: list[Delivery], moment: datetime) -> list[_Outcome]:
    outcomes = [_Outcome(delivery=d) for d in deliveries]
    journey = [o for o in outcomes if o.delivery.enrollment_id is not None]
    for outcome in outcomes:
        if outcome.delivery.enrollment_id is None:
            _use_stored(outcome)
    if journey:
        _prepare_journey_steps(_deliveries_prepare(), journey, moment)
    return outcomes


def _prepare_journey_steps(prepare, outcomes: list[_Outcome], moment: datetime) -> None:
    try:
        prepared = prepare(deliveries=[o.delivery for o in outcomes], now=moment)
    except Exception:  # noqa: BLE001 - one bad step must not hold back the batch: try them one by one
        log.exception("deliveries_prepare failed for a batch; preparing one by one", extra={"count": len(outcomes)})
        prepared = {}
        for outcome in outcomes:
            try:
                prepared.update(prepare(deliveries=[outcome.delivery], now=moment))
            except Exception as exc:  # noqa: BLE001 - recorded as a failed try of this delivery
                _fail_try(outcome, exc, moment, reason="prepare_error")
    for outcome in outcomes:
        if outcome.status:
            continue
        result = prepared.get(outcome.delivery.pk)
        if result is None:
            _fail_try(outcome, RuntimeError("deliveries_prepare returned nothing for this delivery"), moment,
                      reason="prepare_error")
        elif _is_skip(result):
            outcome.status = DeliveryStatus.SKIPPED.value
            outcome.reason = str(getattr(result, "reason", "") or "skipped")[:32]
            outcome.detail = str(getattr(result, "detail", "") or "")
        else:
            delivery = outcome.delivery
            delivery.to_address = getattr(result, "to", "") or ""
            delivery.subject = getattr(result, "subject", "") or ""
            delivery.body_text = getattr(result, "text", "") or ""
            delivery.body_html = getattr(result, "html", "") or ""
            delivery.links = list(getattr(result, "links", None) or [])
            delivery.language = getattr(result, "language", "") or ""
            _use_stored(outcome, headers=dict(getattr(result, "headers", None) or {}))


def _is_skip(result: Any) -> bool:
    return type(result).__name__ == "Skip" or not hasattr(result, "to")


def _use_stored(outcome: _Outcome, *, headers: dict[str, str] | None = None) -> None:
    delivery = outcome.delivery
    if not delivery.to_address:
        outcome.status = DeliveryStatus.SKIPPED.value
        outcome.reason = "no_address"
        outcome.detail = f"No {delivery.channel} address to send to."
        return
    outcome.message = OutboundMessage(
        delivery_id=delivery.pk, store_id=delivery.store_id, channel=delivery.channel, to=delivery.to_address,
        text=delivery.body_text, subject=delivery.subject, html=delivery.body_html, language=delivery.language,
        headers=headers or {}, in_reply_to=delivery.reply_to, reply_context=dict(delivery.reply_context or {}),
        sender=delivery.sender, created_at=delivery.created_at,
    )


def _fail_try(outcome: _Outcome, exc: BaseException, moment: datetime, *, reason: str) -> None:
    outcome.attempted = True
    outcome.started_at = outcome.finished_at = moment
    outcome.attempt_outcome = AttemptOutcome.TRANSIENT_ERROR.value
    outcome.error = "".join(traceback.format_exception_only(exc)).strip()
    _retry_or_fail(outcome, moment, reason=reason)


def _retry_or_fail(outcome: _Outcome, moment: datetime, *, reason: str) -> None:
    outcome.reason = reason[:32]
    outcome.detail = outcome.error
    if outcome.attempt_outcome == AttemptOutcome.TRANSIENT_ERROR.value and outcome.delivery.attempts < max_attempts():
        outcome.status = DeliveryStatus.SCHEDULED.value
        due = moment + delivery_retry_delay(outcome.delivery.attempts)
        reset = provider_reset(outcome.response, moment) if reason == "rate_limited" else None
        outcome.delivery.due_at = max(due, reset) if reset is not None else due
    else:
        outcome.status = DeliveryStatus.FAILED.value


MAX_PROVIDER_WAIT = timedelta(hours=1)


def provider_reset(response: dict[str, Any], moment: datetime) -> datetime | None:
    """When a provider said its rate limit resets (Retry-After seconds, or a reset time as ISO 8601 or a unix
    timestamp, as adapters record them), at most an hour away; None if it did not say."""
    seconds = response.get("retry_after")
    if isinstance(seconds, int | float) and not isinstance(seconds, bool) and seconds > 0:
        return moment + min(timedelta(seconds=float(seconds)), MAX_PROVIDER_WAIT)
    for key in ("rate_limit_reset", "ratelimit_reset"):
        value = response.get(key)
        at = None
        if isinstance(value, int | float) and not isinstance(value, bool):
            at = datetime.fromtimestamp(float(value), UTC)
        elif isinstance(value, str):
            try:
                at = datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                at = None
            if at is not None and at.tzinfo is None:
                at = at.replace(tzinfo=UTC)
        elif isinstance(value, datetime):
            at = value if value.tzinfo else value.replace(tzinfo=UTC)
        if at is not None and at > moment:
            return min(at, moment + MAX_PROVIDER_WAIT)
    return None


# --- send ------------------------------------------------------------------------------------


def _send(outcomes: list[_Outcome], *, worker: str, lease: float, fixed_now: datetime | None) -> None:
    adapters: dict[tuple[int, str, str], Any] = {}
    renewed = time.monotonic()
    for outcome in outcomes:
        if outcome.status or outcome.message is None:
            continue
        if time.monotonic() - renewed > lease / 3:
            # A slow provider: keep the claim on what is still to send.
            _lease_renew(worker=worker, lease=lease)
            renewed = time.monotonic()
        message = outcome.message
        outcome.attempted = True
        outcome.started_at = fixed_now or timezone.now()
        try:
            key = (message.store_id, message.channel, message.sender)
            if key not in adapters:
                adapters[key] = _adapter_for(store_id=message.store_id, channel=message.channel, sender=message.sender)
            adapter = adapters[key]
            outcome.provider = getattr(adapter, "provider", "")
            result = adapter.send(message)
        except SendError as exc:
            outcome.provider = exc.provider or outcome.provider
            outcome.response = exc.response
            outcome.error = str(exc)
            outcome.attempt_outcome = (AttemptOutcome.PERMANENT_ERROR.value if isinstance(exc, PermanentSendError)
                                       else AttemptOutcome.TRANSIENT_ERROR.value)
            outcome.finished_at = fixed_now or timezone.now()
            _retry_or_fail(outcome, outcome.finished_at, reason=exc.code or "provider_error")
            continue
        except Exception as exc:  # noqa: BLE001 - a broken adapter or network is a failed try, never a crash
            outcome.error = "".join(traceback.format_exception_only(exc)).strip()
            outcome.attempt_outcome = AttemptOutcome.TRANSIENT_ERROR.value
            outcome.finished_at = fixed_now or timezone.now()
            _retry_or_fail(outcome, outcome.finished_at, reason="provider_error")
            continue
        outcome.finished_at = fixed_now or timezone.now()
        outcome.result = result
        outcome.provider = result.provider or outcome.provider
        outcome.response = dict(result.response or {})
        outcome.attempt_outcome = AttemptOutcome.SENT.value
        outcome.status = DeliveryStatus.SENT.value
        outcome.delivery.sent_at = outcome.finished_at


def _adapter_for(*, store_id: int, channel: str, sender: str = ""):
    from tertulia.channels.registry import adapter_for

    return adapter_for(store_id=store_id, channel=channel, sender=sender)


def _lease_renew(*, worker: str, lease: float) -> None:
    try:
        Delivery.objects.filter(status=DeliveryStatus.SENDING, claimed_by=worker).update(
            lease_expires_at=timezone.now() + timedelta(seconds=lease))
    except DatabaseError:
        log.exception("lease renewal failed", extra={"worker": worker})


# --- record ----------------------------------------------------------------------------------


_RECORD_COLUMNS = ["status", "due_at", "sent_at", "claimed_by", "lease_expires_at", "reason", "detail", "provider",
                   "provider_message_id", "provider_status", "to_address", "subject", "body_text", "body_html",
                   "links", "language", "updated_at"]


def _record(outcomes: list[_Outcome], *, worker: str, moment: datetime, fixed_now: datetime | None) -> None:
    sqlite = not is_postgres()
    stamp = db_datetime(fixed_now or timezone.now(), sqlite=sqlite)
    rows = []
    attempts = []
    for outcome in outcomes:
        delivery = outcome.delivery
        if not outcome.status:  # cannot happen; never leave a row claimed by mistake
            _fail_try(outcome, RuntimeError("no outcome"), moment, reason="dispatch_error")
        sent = outcome.status == DeliveryStatus.SENT.value
        result = outcome.result
        rows.append((
            delivery.pk, outcome.status, db_datetime(delivery.due_at, sqlite=sqlite),
            db_datetime(delivery.sent_at, sqlite=sqlite) if sent else None,
            worker if sent else "", None, "" if sent else outcome.reason, "" if sent else outcome.detail,
            outcome.provider[:32], (result.provider_message_id if result else "")[:200],
            (result.provider_status if result else "")[:32], delivery.to_address[:320], delivery.subject[:300],
            delivery.body_text, delivery.body_html, orjson.dumps(delivery.links).decode(), delivery.language[:8],
            stamp,
        ))
        if outcome.attempted:
            attempts.append((
                delivery.store_id, delivery.pk, delivery.attempts, db_datetime(outcome.started_at, sqlite=sqlite),
                db_datetime(outcome.finished_at, sqlite=sqlite), outcome.attempt_outcome, outcome.provider[:32],
                orjson.dumps(_jsonable(outcome.response)).decode(), outcome.error,
            ))

    def write() -> int:
        with transaction.atomic():
            kept = _update_claimed(worker=worker, columns=_RECORD_COLUMNS, rows=rows)
            for part in chunks(attempts, 500):
                # A try is history even when the lease was lost meanwhile; its number is unique per delivery.
                insert_returning(
                    "channels_deliveryattempt",
                    ["store_id", "delivery_id", "number", "started_at", "finished_at", "outcome", "provider",
                     "provider_response", "error"],
                    part, conflict=["delivery_id", "number"], returning=["id"],
                )
            return kept

    kept = _with_retries(write)
    if kept < len(rows):
        log.warning("deliveries finished after their lease was lost", extra={"worker": worker,
                                                                              "lost": len(rows) - kept})
    for outcome in outcomes:
        channel = outcome.delivery.channel
        label = {"scheduled": "retry"}.get(outcome.status, outcome.status)
        metrics.delivery_counted(channel=channel, outcome=label)
        if outcome.status == DeliveryStatus.SENT.value:
            metrics.delivery_lag(channel=channel,
                                 seconds=(outcome.delivery.sent_at - outcome.delivery.due_at).total_seconds()
                                 if fixed_now is None else 0.0)
    _log_batch(outcomes, worker)


def _jsonable(value: Any) -> Any:
    try:
        orjson.dumps(value)
        return value
    except TypeError:
        return {"repr": repr(value)[:2000]}


def _log_batch(outcomes: list[_Outcome], worker: str) -> None:
    counts: dict[str, int] = {}
    for outcome in outcomes:
        counts[outcome.status] = counts.get(outcome.status, 0) + 1
        if outcome.status in (DeliveryStatus.FAILED.value, DeliveryStatus.SCHEDULED.value) and outcome.attempted:
            log.warning("delivery %s", "failed" if outcome.status == "failed" else "will be retried",
                        extra={"worker": worker, "delivery_id": outcome.delivery.pk, "reason": outcome.reason,
                               "attempt": outcome.delivery.attempts, "error": outcome.error[:500]})
    log.info("deliveries dispatched", extra={"worker": worker, **counts})


def _with_retries(work, attempts: int = 3):
    for attempt in range(1, attempts + 1):
        try:
            return work()
        except DatabaseError:
            if attempt == attempts or connection.in_atomic_block:
                raise
            log.warning("recording deliveries failed; trying again", exc_info=True)
            time.sleep(0.05 * attempt)
    raise AssertionError("unreachable")


def _journeys_notify(outcomes: list[_Outcome], *, now: datetime) -> None:
    """Tell the journeys engine how its steps ended (to complete enrollments), if it wants to know."""
    if not any(o.delivery.enrollment_id for o in outcomes):
        return
    # Imported here: journeys sits above channels (it imports channels' models and tracking).
    from tertulia.journeys.services import deliveries_finished

    try:
        deliveries_finished(deliveries=[o.delivery for o in outcomes if o.delivery.enrollment_id], now=now)
    except Exception:  # noqa: BLE001 - bookkeeping of the engine; the sends are recorded already
        log.exception("journeys.deliveries_finished failed")


def _deliveries_prepare():
    # Imported here: journeys sits above channels (it imports channels' models and tracking).
    from tertulia.journeys.services import deliveries_prepare

    return deliveries_prepare


# --- leases ----------------------------------------------------------------------------------


def deliveries_reclaim_expired(*, now: datetime | None = None) -> int:
    """Give back deliveries whose dispatcher stopped renewing its lease; returns how many.

    A delivery with tries left goes back to `scheduled` (keeping its due time, so it goes first);
    one whose tries are used up fails (`lease_expired`), so a message that kills its dispatcher
    every time cannot loop forever.
    """
    moment = now or timezone.now()
    expired = Delivery.objects.filter(status=DeliveryStatus.SENDING, lease_expires_at__lt=moment)
    if not is_postgres() and not expired.exists():
        return 0
    common = {"lease_expires_at": None, "sent_at": None, "updated_at": moment, "reason": "lease_expired"}
    with transaction.atomic():
        failed = expired.filter(attempts__gte=max_attempts()).update(
            status=DeliveryStatus.FAILED, detail="The dispatcher's lease expired on every try.", **common)
        requeued = expired.update(status=DeliveryStatus.SCHEDULED, claimed_by="",
                                  detail="A dispatcher's lease expired; sent again.", **common)
    if failed or requeued:
        log.warning("expired delivery leases reclaimed", extra={"requeued": requeued, "failed": failed})
    return failed + requeued


# --- bulk SQL --------------------------------------------------------------------------------


def _update_ids(sql: str, params: list[Any], ids: Sequence[int]) -> None:
    """Run `sql` (with an `{ids}` slot in its WHERE) for many ids."""
    if not ids:
        return
    with connection.cursor() as cursor:
        if is_postgres():
            cursor.execute(sql.replace("id IN ({ids})", "id = ANY(%s)"), [*params, list(ids)])
            return
        for part in chunks(list(ids), 900):
            cursor.execute(sql.replace("{ids}", ", ".join(["%s"] * len(part))), [*params, *part])


def _update_claimed(*, worker: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> int:
    """Set `columns` per row (rows are (id, *values)) where the row is still `sending` and claimed by `worker`.

    Returns how many rows were changed (fewer when a lease was lost to another dispatcher).
    """
    if not rows:
        return 0
    if is_postgres():
        types = _column_types()
        arrays = ", ".join(f"%b::{types[name]}[]" for name in ("id", *columns))
        sets = ", ".join(f"{name} = v.{name}" for name in columns)
        sql = (f"UPDATE {TABLE} AS d SET {sets} FROM unnest({arrays}) AS v(id, {', '.join(columns)}) "  # noqa: S608 - fixed identifiers
               "WHERE d.id = v.id AND d.claimed_by = %b AND d.status = %b")
        params = [list(column) for column in zip(*rows, strict=True)] + [worker, _SENDING]
        connection.ensure_connection()
        with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cursor:
            cursor.execute(sql, params)
            return cursor.rowcount
    sql = (f"UPDATE {TABLE} SET {', '.join(f'{name} = ?' for name in columns)} "  # noqa: S608 - fixed identifiers
           "WHERE id = ? AND claimed_by = ? AND status = ?")
    connection.ensure_connection()
    with connection.wrap_database_errors:
        cursor = connection.connection.executemany(sql, [(*row[1:], row[0], worker, _SENDING) for row in rows])
        return cursor.rowcount


_TYPES: dict[str, str] = {}


def _column_types() -> dict[str, str]:
    if not _TYPES:
        for model_field in Delivery._meta.concrete_fields:
            kind = model_field.rel_db_type(connection) if model_field.is_relation else model_field.db_type(connection)
            _TYPES[model_field.column] = kind or "text"
        _TYPES["id"] = "bigint"
    return _TYPES


# --- the loop --------------------------------------------------------------------------------


def run_dispatcher(*, stop: threading.Event, name: str, poll_interval: float = DEFAULT_POLL_SECONDS,
                   batch_size: int | None = None, sweep: bool = True) -> int:
    """Dispatch due deliveries until `stop` is set; return how many were handled. Started by the worker.

    About once a second it also runs the journeys' trigger sweep (enrolling abandoned carts and the
    like), every ATTRIBUTION_EVERY_SECONDS the attribution of new orders, and about twice per lease it gives back expired leases. Nothing raised in here stops the
    loop: a database outage is waited out, any other error is logged and the loop carries on.
    """
    batch_size = int(batch_size or _setting("TERTULIA_DISPATCH_BATCH_SIZE", DEFAULT_BATCH_SIZE))
    lease = lease_seconds()
    reclaim_every = min(lease / 2, 10.0)
    handled = 0
    next_sweep = next_reclaim = next_attribution = 0.0
    log.info("dispatcher started", extra={"worker": name, "batch_size": batch_size})
    try:
        while not stop.is_set():
            try:
                if not connection.in_atomic_block:
                    close_old_connections()
                if sweep and time.monotonic() >= next_sweep:
                    next_sweep = time.monotonic() + SWEEP_EVERY_SECONDS
                    sweep_triggers()
                if time.monotonic() >= next_reclaim:
                    deliveries_reclaim_expired()
                    next_reclaim = time.monotonic() + reclaim_every
                if sweep and time.monotonic() >= next_attribution:
                    next_attribution = time.monotonic() + ATTRIBUTION_EVERY_SECONDS
                    attribute_orders()
                count = dispatch_batch(worker=name, batch_size=batch_size, lease=lease)
                handled += count
                if count == 0:
                    wait = poll_interval if not sweep else min(poll_interval, max(next_sweep - time.monotonic(), 0.01))
                    stop.wait(wait)
            except DatabaseError:
                log.exception("dispatcher lost the database", extra={"worker": name})
                if not connection.in_atomic_block:
                    connection.close()
                stop.wait(max(poll_interval, 1.0))
            except Exception:  # noqa: BLE001 - the dispatcher outlives its bugs; claims come back by lease
                log.exception("dispatcher error", extra={"worker": name})
                stop.wait(max(poll_interval, 1.0))
    finally:
        log.info("dispatcher stopped", extra={"worker": name, "handled": handled})
    return handled


def attribute_orders() -> None:
    """Credit new orders to the messages that brought them, and mark enrollments converted (journeys.attribution)."""
    from tertulia.journeys.attribution import orders_attribute

    _beside_the_sends(orders_attribute, "journeys attribution")


def sweep_triggers() -> None:
    """Enroll whoever a trigger has come due for (journeys.triggers)."""
    from tertulia.journeys.triggers import triggers_sweep

    _beside_the_sends(triggers_sweep, "journeys trigger sweep")


def _beside_the_sends(task, label: str) -> None:
    """Run one of the loop's periodic journeys tasks: a database outage goes up to the loop (which waits
    it out); any other failure is logged, because it must not stop the sends."""
    try:
        task(now=timezone.now())
    except DatabaseError:
        raise
    except Exception:  # noqa: BLE001 - see the docstring
        log.exception(f"{label} failed")
