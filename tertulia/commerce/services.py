"""Projection of cart and order events into current state, a batch at a time.

The rules that make out-of-order delivery safe live in the SQL below:
- a cart state is applied only if it is at least as new as the one stored;
- a converted cart (an order was placed from it) is never reopened by a late `cart_updated`;
- each order moment (placed, fulfilled, delivered, cancelled) keeps its own timestamp, and the
  status is derived from them, so the moments may arrive in any order.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from django.db import connection
from django.utils import timezone

from tertulia.core.db import chunks, db_datetime, db_json, insert_returning, is_postgres, is_sqlite
from tertulia.core.models import Store

CART = "commerce_cart"
ORDER = "commerce_order"


@dataclass(slots=True)
class CartState:
    cart_id: str
    occurred_at: datetime
    customer_id: int | None
    items: list[dict] | None
    total: Decimal | None
    currency: str | None
    recovery_url: str | None
    checkout: bool = False


@dataclass(slots=True)
class OrderPlaced:
    order_id: str
    occurred_at: datetime
    customer_id: int | None
    cart_id: str | None
    items: list[dict]
    total: Decimal
    currency: str
    discount_codes: list[str] = field(default_factory=list)  # discount and referral codes used at checkout


@dataclass(slots=True)
class OrderMoment:
    order_id: str
    occurred_at: datetime
    moment: str  # fulfilled, delivered, cancelled


def _latest(states, key):
    """The newest state per key, sorted by key so concurrent writers lock rows in the same order."""
    latest = {}
    for state in states:
        current = latest.get(key(state))
        if current is None or state.occurred_at >= current.occurred_at:
            latest[key(state)] = state
    return [latest[k] for k in sorted(latest)]


def commerce_lock(*, store: Store, cart_ids: set[str], order_ids: set[str]) -> None:
    """Take every cart and order row a batch will write, in key order, before writing any (PostgreSQL).

    A batch writes carts in two statements (new states, then conversion by orders), so two
    concurrent batches could each hold a cart the other needs next: a deadlock that PostgreSQL
    only breaks after a second. Locking all the rows in one sorted statement first means every
    writer takes them in the same order. Rows not seen yet are created empty, which the state
    rules treat as older than anything. SQLite has one writer at a time and needs none of this.
    """
    if not is_postgres():
        return
    now = timezone.now()
    for table, keys in ((CART, cart_ids), (ORDER, order_ids)):
        for part in chunks(sorted(keys), 1000):
            insert_returning(
                table,
                ["store_id", "external_id", "status", "items", "total", "currency", "created_at", "updated_at"]
                + (["recovery_url", "order_external_id"] if table == CART else ["cart_external_id", "discount_codes"]),
                [(store.pk, key, "open" if table == CART else "placed", "[]", "0", "", now, now)
                 + (("", "") if table == CART else ("", "[]")) for key in part],
                conflict=["store_id", "external_id"], returning=["id"],
                update=f"updated_at = {table}.updated_at",
            )


def carts_apply(*, store: Store, states: Sequence[CartState]) -> int:
    """Upsert cart states (from cart_updated and checkout_started); returns carts changed."""
    changed = 0
    lite = is_sqlite()
    now = db_datetime(timezone.now(), sqlite=lite)
    columns = ["store_id", "external_id", "customer_id", "status", "items", "total", "currency", "recovery_url",
               "checkout_started_at", "last_event_at", "order_external_id", "created_at", "updated_at"]
    common = f"""
        customer_id = COALESCE(excluded.customer_id, {CART}.customer_id),
        currency = CASE WHEN excluded.currency = '' THEN {CART}.currency ELSE excluded.currency END,
        recovery_url = CASE WHEN excluded.recovery_url = '' THEN {CART}.recovery_url ELSE excluded.recovery_url END,
        checkout_started_at = COALESCE({CART}.checkout_started_at, excluded.checkout_started_at),
        last_event_at = excluded.last_event_at,
        updated_at = excluded.updated_at
    """
    guard = f"""
        WHERE {CART}.status <> 'converted'
          AND ({CART}.last_event_at IS NULL OR excluded.last_event_at >= {CART}.last_event_at)
    """
    with_content = f"items = excluded.items, status = excluded.status, total = excluded.total, {common} {guard}"
    # A checkout_started that carries no items keeps the items the cart already has.
    bare = f"{common} {guard}"
    content = [s for s in states if s.items is not None]
    for group, update in (
        (_latest([s for s in content if not s.checkout], lambda s: s.cart_id), with_content),
        (_latest([s for s in content if s.checkout], lambda s: s.cart_id), with_content),
        (_latest([s for s in states if s.items is None], lambda s: s.cart_id), bare),
    ):
        for part in chunks(group, 500):
            rows = [
                (
                    store.pk, s.cart_id, s.customer_id, "open" if s.items or s.items is None else "emptied",
                    db_json(s.items or []), str(s.total or 0), s.currency or "", s.recovery_url or "",
                    db_datetime(s.occurred_at, sqlite=lite) if s.checkout else None, db_datetime(s.occurred_at, sqlite=lite), "", now, now,
                )
                for s in part
            ]
            changed += len(insert_returning(CART, columns, rows, conflict=["store_id", "external_id"],
                                            returning=["id"], update=update))
    # When a checkout began is a fact of its own: a late or stale checkout_started still moves the
    # start earlier, even though its cart contents lost to a newer state (or the cart is converted).
    earliest: dict[str, datetime] = {}
    for s in states:
        if s.checkout and (s.cart_id not in earliest or s.occurred_at < earliest[s.cart_id]):
            earliest[s.cart_id] = s.occurred_at
    if earliest:
        with connection.cursor() as cursor:
            cursor.executemany(
                f"UPDATE {CART} SET checkout_started_at = %s WHERE store_id = %s AND external_id = %s "  # noqa: S608 - identifiers are our constants; values are bound parameters
                "AND (checkout_started_at IS NULL OR checkout_started_at > %s)",
                [(db_datetime(at, sqlite=lite), store.pk, cart_id, db_datetime(at, sqlite=lite))
                 for cart_id, at in earliest.items()],
            )
    return changed


def orders_place(*, store: Store, orders: Sequence[OrderPlaced]) -> int:
    """Upsert placed orders and mark their carts converted (creating a closed cart if none arrived yet)."""
    lite = is_sqlite()
    now = db_datetime(timezone.now(), sqlite=lite)
    latest = _latest(orders, lambda o: o.order_id)
    columns = ["store_id", "external_id", "cart_external_id", "customer_id", "status", "items", "total", "currency",
               "discount_codes", "placed_at", "last_event_at", "created_at", "updated_at"]
    update = f"""
        cart_external_id = excluded.cart_external_id,
        customer_id = COALESCE(excluded.customer_id, {ORDER}.customer_id),
        items = excluded.items, total = excluded.total, currency = excluded.currency,
        discount_codes = excluded.discount_codes,
        placed_at = excluded.placed_at,
        last_event_at = CASE WHEN {ORDER}.last_event_at IS NULL OR excluded.last_event_at > {ORDER}.last_event_at
                             THEN excluded.last_event_at ELSE {ORDER}.last_event_at END,
        updated_at = excluded.updated_at
        WHERE {ORDER}.placed_at IS NULL OR excluded.placed_at >= {ORDER}.placed_at
    """
    changed = 0
    for part in chunks(latest, 500):
        rows = [
            (store.pk, o.order_id, o.cart_id or "", o.customer_id, "placed", db_json(o.items), str(o.total),
             o.currency, db_json(o.discount_codes), db_datetime(o.occurred_at, sqlite=lite),
             db_datetime(o.occurred_at, sqlite=lite), now, now)
            for o in part
        ]
        changed += len(insert_returning(ORDER, columns, rows, conflict=["store_id", "external_id"],
                                        returning=["id"], update=update))
    carts = _latest([o for o in latest if o.cart_id], lambda o: o.cart_id)
    cart_columns = ["store_id", "external_id", "customer_id", "status", "items", "total", "currency", "recovery_url",
                    "last_event_at", "order_external_id", "created_at", "updated_at"]
    cart_update = f"""
        status = 'converted', order_external_id = excluded.order_external_id,
        customer_id = COALESCE({CART}.customer_id, excluded.customer_id), updated_at = excluded.updated_at
    """
    for part in chunks(carts, 500):
        rows = [
            (store.pk, o.cart_id, o.customer_id, "converted", db_json(o.items), str(o.total), o.currency, "",
             db_datetime(o.occurred_at, sqlite=lite), o.order_id, now, now)
            for o in part
        ]
        insert_returning(CART, cart_columns, rows, conflict=["store_id", "external_id"], returning=["id"], update=cart_update)
    return changed


_STATUS_SQL = (
    "CASE WHEN cancelled_at IS NOT NULL THEN 'cancelled' WHEN delivered_at IS NOT NULL THEN 'delivered' "
    "WHEN fulfilled_at IS NOT NULL THEN 'fulfilled' ELSE 'placed' END"
)


def orders_advance(*, store: Store, moments: Sequence[OrderMoment]) -> int:
    """Record fulfilment, delivery and cancellation; an order not seen yet is created as a stub."""
    lite = is_sqlite()
    now = db_datetime(timezone.now(), sqlite=lite)
    touched: set[str] = set()
    for moment in ("fulfilled", "delivered", "cancelled"):
        # The earliest report of a moment is when it happened; later replays don't move it.
        earliest: dict[str, OrderMoment] = {}
        for m in moments:
            if m.moment == moment and (m.order_id not in earliest or m.occurred_at < earliest[m.order_id].occurred_at):
                earliest[m.order_id] = m
        column = f"{moment}_at"
        columns = ["store_id", "external_id", "cart_external_id", "status", "items", "total", "currency",
                   "discount_codes", column, "last_event_at", "created_at", "updated_at"]
        update = f"""
            {column} = CASE WHEN {ORDER}.{column} IS NULL OR excluded.{column} < {ORDER}.{column}
                            THEN excluded.{column} ELSE {ORDER}.{column} END,
            last_event_at = CASE WHEN {ORDER}.last_event_at IS NULL OR excluded.last_event_at > {ORDER}.last_event_at
                                 THEN excluded.last_event_at ELSE {ORDER}.last_event_at END,
            updated_at = excluded.updated_at
        """
        for part in chunks([earliest[k] for k in sorted(earliest)], 500):
            rows = [
                (store.pk, m.order_id, "", moment, db_json([]), "0", "", "[]", db_datetime(m.occurred_at, sqlite=lite),
                 db_datetime(m.occurred_at, sqlite=lite), now, now)
                for m in part
            ]
            insert_returning(ORDER, columns, rows, conflict=["store_id", "external_id"], returning=["id"], update=update)
            touched.update(m.order_id for m in part)
    for part in chunks(sorted(touched), 500):
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {ORDER} SET status = {_STATUS_SQL} WHERE store_id = %s AND external_id IN "  # noqa: S608 - identifiers are our constants; values are bound parameters
                f"({', '.join(['%s'] * len(part))})",
                [store.pk, *part],
            )
    return len(touched)


def order_customer_ids(*, store: Store, order_ids: set[str]) -> dict[str, int]:
    from tertulia.commerce.models import Order

    if not order_ids:
        return {}
    return {
        external_id: customer_id
        for external_id, customer_id in Order.objects.for_store(store)
        .filter(external_id__in=order_ids, customer_id__isnull=False)
        .values_list("external_id", "customer_id")
    }
