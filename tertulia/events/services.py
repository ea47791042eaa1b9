"""Event ingestion: validate a batch, store each new event once, project it into current state."""

import logging
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings
from django.db import connection
from django.utils import timezone

from tertulia.catalog.services import categories_upsert, products_upsert
from tertulia.commerce.services import (
    CartState,
    OrderMoment,
    OrderPlaced,
    carts_apply,
    commerce_lock,
    order_customer_ids,
    orders_advance,
    orders_place,
)
from tertulia.core.db import (
    atomic_with_retry,
    chunks,
    db_datetime,
    db_json,
    insert_returning,
    is_postgres,
    is_sqlite,
)
from tertulia.core.errors import ApiError, ErrorDetail
from tertulia.core.models import Store
from tertulia.customers.models import Customer
from tertulia.customers.services import (
    ConsentFact,
    PersonRef,
    consents_record,
    customers_resolve,
    customers_survivors,
)
from tertulia.events.schema import ValidEvent, validate_batch

logger = logging.getLogger(__name__)

_MOMENTS = {"order_fulfilled": "fulfilled", "order_delivered": "delivered", "order_cancelled": "cancelled"}


@dataclass
class IngestResult:
    accepted: int = 0
    duplicates: int = 0
    by_type: Counter = field(default_factory=Counter)
    statuses: list[tuple[str, str]] = field(default_factory=list)  # (client id, "created" | "duplicate")

    def as_dict(self) -> dict:
        return {
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "events": [{"id": cid, "status": status} for cid, status in self.statuses],
        }


def events_ingest(*, store: Store, events: list, source: str = "api", now: datetime | None = None) -> IngestResult:
    """Store a batch all-or-nothing. Raises ApiError listing every problem if any event is invalid."""
    if not isinstance(events, list):
        raise ApiError("invalid_body", "Send one event object or {\"events\": [...]}.", 400,
                       [ErrorDetail(field="events", code="invalid_type", message="Must be a list.")])
    if not events:
        raise ApiError("empty_batch", "The batch holds no events.", 400,
                       [ErrorDetail(field="events", code="empty", message="Send at least one event.")])
    limit = settings.TERTULIA_MAX_BATCH
    if len(events) > limit:
        raise ApiError("batch_too_large", f"At most {limit} events per request; this one has {len(events)}.", 400,
                       [ErrorDetail(field="events", code="too_many", message=f"At most {limit} events.")])
    valid, problems = validate_batch(events, now)
    if problems:
        invalid = len({p.index for p in problems})
        raise ApiError("invalid_events", f"{invalid} of {len(events)} events are invalid; nothing was stored.",
                       422, problems)
    return events_store(store=store, events=valid, source=source)


def events_store(*, store: Store, events: list[ValidEvent], source: str) -> IngestResult:
    """Store validated events once each and project the new ones, in one transaction (run again on a deadlock).

    On PostgreSQL the people the batch names are resolved first, in a short transaction of their
    own: concurrent batches often share a new shopper, and a unique identity being inserted makes
    every other writer of it wait for the inserting transaction to end. Resolution is idempotent
    (a replay finds the same people), so committing it early stores nothing a retry would not.
    SQLite has a single writer, so there it stays inside the one transaction.
    """
    unique: dict[str, ValidEvent] = {}
    for event in events:
        unique.setdefault(event.client_id, event)
    batch = list(unique.values())
    early = is_postgres() and not connection.in_atomic_block
    if early:
        atomic_with_retry(lambda: _resolve_people(store, batch))
    created = atomic_with_retry(lambda: _store_once(store, batch, source, resolved=early))
    result = IngestResult()
    for event in events:
        status = "created" if event.client_id in created else "duplicate"
        if status == "created":
            created.discard(event.client_id)  # a second copy inside the same batch is a duplicate
            result.accepted += 1
            result.by_type[event.type] += 1
        else:
            result.duplicates += 1
        result.statuses.append((event.client_id, status))
    from tertulia.core import metrics

    metrics.events_ingested(source=source, by_type=result.by_type, duplicates=result.duplicates)
    return result


def _resolve_people(store: Store, batch: list[ValidEvent]) -> None:
    with_person = [e for e in batch if e.person is not None]
    if with_person:
        ids = customers_resolve(
            store=store, people=[PersonRef(e.person.identities, e.person.fields) for e in with_person]  # type: ignore[union-attr]
        )
        for event, customer_id in zip(with_person, ids, strict=True):
            event.customer_id = customer_id


def _store_once(store: Store, batch: list[ValidEvent], source: str, *, resolved: bool) -> set[str]:
    if resolved:
        # A merge committed since resolution may have folded one of our people into another.
        survivors = customers_survivors(store=store, customer_ids={e.customer_id for e in batch if e.customer_id})
        for event in batch:
            if event.customer_id in survivors:
                event.customer_id = survivors[event.customer_id]
    else:
        _resolve_people(store, batch)
    moments = [e for e in batch if e.type in _MOMENTS]
    if moments:
        owners = order_customer_ids(store=store, order_ids={e.data["order_id"] for e in moments})
        for event in moments:
            event.customer_id = owners.get(event.data["order_id"])
    created = _insert(store, batch, source)
    _project(store, [e for e in batch if e.client_id in created])
    return created


def _insert(store: Store, events: list[ValidEvent], source: str) -> set[str]:
    lite = is_sqlite()
    received = db_datetime(timezone.now(), sqlite=lite)
    columns = ["store_id", "client_id", "type", "occurred_at", "received_at", "source", "payload", "customer_id"]
    created: set[str] = set()
    for part in chunks(sorted(events, key=lambda e: e.client_id), 500):
        rows = [
            (store.pk, e.client_id, e.type, db_datetime(e.occurred_at, sqlite=lite), received, source, db_json(e.raw), e.customer_id)
            for e in part
        ]
        created.update(
            row[0] for row in insert_returning("events_event", columns, rows, conflict=["store_id", "client_id"],
                                               returning=["client_id"])
        )
    return created


def _project(store: Store, events: list[ValidEvent]) -> None:
    by_type: dict[str, list[ValidEvent]] = {}
    for event in events:
        by_type.setdefault(event.type, []).append(event)
    if "category_upserted" in by_type:
        categories_upsert(store=store, categories=[(e.occurred_at, e.data) for e in by_type["category_upserted"]])
    if "product_upserted" in by_type:
        products_upsert(store=store, products=[(e.occurred_at, e.data) for e in by_type["product_upserted"]])
    for event in sorted(by_type.get("customer_upserted", []), key=lambda e: e.occurred_at):
        _apply_profile(store, event)
    consents_record(store=store, facts=[
        ConsentFact(event.customer_id, event.data["channel"], event.data["status"],  # type: ignore[arg-type]
                    event.data["source"], event.occurred_at, {**event.data["evidence"], "event_id": event.client_id})
        for event in by_type.get("consent_changed", [])
    ])
    commerce_lock(
        store=store,
        cart_ids={e.data["cart_id"] for e in events if e.type in ("cart_updated", "checkout_started", "order_placed")
                  and e.data.get("cart_id")},
        order_ids={e.data["order_id"] for e in events if e.type == "order_placed" or e.type in _MOMENTS},
    )
    carts = [
        CartState(e.data["cart_id"], e.occurred_at, e.customer_id, e.data["items"], e.data["total"],
                  e.data["currency"], e.data["recovery_url"], checkout=e.type == "checkout_started")
        for e in by_type.get("cart_updated", []) + by_type.get("checkout_started", [])
    ]
    if carts:
        carts_apply(store=store, states=carts)
    placed = [
        OrderPlaced(e.data["order_id"], e.occurred_at, e.customer_id, e.data["cart_id"], e.data["items"],
                    e.data["total"], e.data["currency"], e.data.get("discount_codes") or [])
        for e in by_type.get("order_placed", [])
    ]
    if placed:
        orders_place(store=store, orders=placed)
        if any(o.discount_codes for o in placed):
            # Imported here: journeys builds on events and commerce, not the other way round.
            from tertulia.journeys.codes import orders_codes_redeem

            orders_codes_redeem(store=store, order_ids={o.order_id for o in placed if o.discount_codes})
    moments = [
        OrderMoment(e.data["order_id"], e.occurred_at, _MOMENTS[e.type])
        for kind in _MOMENTS for e in by_type.get(kind, [])
    ]
    if moments:
        orders_advance(store=store, moments=moments)


def _apply_profile(store: Store, event: ValidEvent) -> None:
    fields = event.person.fields if event.person else {}
    updated = (
        Customer.objects.for_store(store)
        .filter(pk=event.customer_id)
        .exclude(profile_updated_at__gt=event.occurred_at)
        .update(profile_updated_at=event.occurred_at, updated_at=timezone.now(), **fields)
    )
    if not updated:
        logger.info("older customer update ignored", extra={"event": event.client_id})




__all__ = ["IngestResult", "events_ingest", "events_store"]
