"""WooCommerce webhook payloads mapped into native events: pure functions, payload in, event dicts out.

Payloads are the REST API's resource objects (wc/v1-v3). Deliveries from the legacy API (WooCommerce
2.x, `{"order": {...}}` with `created_at`-style fields) are read too.

An order's status decides what it means for the store:
- pending, failed: not an order yet, but an unfinished checkout, so a cart (its id `woocommerce:order:<id>`)
  that the order converts if it is paid later;
- processing, on-hold: order_placed;
- completed: order_placed and order_fulfilled;
- cancelled, refunded: order_cancelled, with order_placed first when it had been paid; an unpaid order
  that WooCommerce cancels on its own is an abandoned checkout and stays a cart.
"""

import html

from tertulia.events.webhooks.common import (
    as_dict,
    as_list,
    currency_code,
    digest,
    event,
    first_timestamp,
    ident,
    money,
    person,
    text,
    timestamp,
    unmappable,
    url,
)

TOPICS = frozenset({
    "order.created", "order.updated",
    "product.created", "product.updated",
    "customer.created", "customer.updated",
})

CART_STATUSES = frozenset({"pending", "failed", "checkout-draft"})
PLACED_STATUSES = frozenset({"processing", "on-hold", "completed"})
CANCELLED_STATUSES = frozenset({"cancelled", "refunded"})


def woocommerce_events(*, topic: str, payload: dict, currency: str = "EUR") -> list[dict]:
    """Native events for one WooCommerce webhook. `topic` must be one of TOPICS."""
    resource = topic.split(".", 1)[0]
    if resource == "order":
        return order_events(_unwrap(payload, "order"), currency=currency)
    if resource == "product":
        return product_events(_unwrap(payload, "product"))
    if resource == "customer":
        return customer_events(_unwrap(payload, "customer"))
    raise ValueError(f"not a WooCommerce topic we map: {topic}")


def _unwrap(payload: dict, resource: str) -> dict:
    # The legacy API wraps the resource: {"order": {...}}.
    inner = payload.get(resource)
    return inner if len(payload) == 1 and isinstance(inner, dict) else payload


def _stamp(record: dict, *keys: str) -> str | None:
    """The first of `keys` holding an instant; *_gmt fields have no offset but are UTC."""
    for key in keys:
        found = timestamp(record.get(key), assume_utc=key.endswith("_gmt"))
        if found:
            return found
    return None


def _created(record: dict) -> str | None:
    return _stamp(record, "date_created_gmt", "created_at")


def _modified(record: dict) -> str | None:
    return _stamp(record, "date_modified_gmt", "updated_at", "last_update")


def _title(value: object) -> str | None:
    name = text(value)
    return html.unescape(name) if name else None


def _billing(record: dict) -> dict:
    return as_dict(record.get("billing")) or as_dict(record.get("billing_address"))


def _buyer(order: dict) -> dict | None:
    billing = _billing(order)
    customer = as_dict(order.get("customer"))  # legacy only
    return person(
        email=billing.get("email") or customer.get("email"),
        phone=billing.get("phone"),
        phone_region=billing.get("country"),
        external_id=ident(order.get("customer_id")) or ident(customer.get("id")),
        first_name=billing.get("first_name") or customer.get("first_name"),
        last_name=billing.get("last_name") or customer.get("last_name"),
    )


def _items(lines: object) -> list[dict]:
    items = []
    for line in as_list(lines):
        line = as_dict(line)
        quantity = line.get("quantity")
        if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity < 1:
            continue
        # A variation's own id when it is one; WooCommerce sends 0 for "none".
        ids = (ident(line.get("variation_id")), ident(line.get("product_id")))
        product = next((i for i in ids if i and i != "0"), None)
        sku = text(line.get("sku"), 128) or (f"woocommerce-{product}" if product else None)
        if sku is None:
            continue  # a line whose product was deleted: nothing to tie it to
        item: dict = {"sku": sku, "quantity": quantity}
        price = money(line.get("price"))
        if price is not None:
            item["price"] = price
        title = _title(line.get("name"))
        if title:
            item["title"] = title
        items.append(item)
    return items


def _coupon_codes(order: dict) -> list[str]:
    """Coupons applied to the order: `coupon_lines` is a list of {id, code, discount, ...} (legacy API too)."""
    codes = []
    for line in as_list(order.get("coupon_lines")):
        code = text(as_dict(line).get("code"), 100)
        if code and code not in codes:
            codes.append(code)
    return codes


def _paid(order: dict) -> bool:
    return bool(order.get("date_paid_gmt") or order.get("date_paid")
                or as_dict(order.get("payment_details")).get("paid") is True)


def _with_customer(data: dict, buyer: dict | None) -> dict:
    if buyer is not None:
        data["customer"] = buyer
    return data


def order_events(order: dict, *, currency: str) -> list[dict]:
    order_id = ident(order.get("id"))
    if order_id is None:
        raise unmappable("id", "an order needs an id.")
    status = order.get("status")
    if not isinstance(status, str):
        raise unmappable("status", "an order needs a status.")
    created = first_timestamp(_created(order), _modified(order), field="date_created_gmt")
    modified = _modified(order) or created
    buyer = _buyer(order)
    key = f"woocommerce:order:{order_id}"
    cart_id = key
    items = _items(order.get("line_items"))
    total = money(order.get("total"))
    order_currency = currency_code(order.get("currency"), currency)
    if status in CART_STATUSES:
        cart = {"cart_id": cart_id, "items": items, "total": total or "0.00", "currency": order_currency,
                "recovery_url": url(order.get("payment_url"))}
        started = {"cart_id": cart_id, "currency": order_currency, "recovery_url": cart["recovery_url"]}
        return [
            event(f"{key}:started", "checkout_started", created, _with_customer(started, buyer)),
            event(f"{key}:cart:{modified}", "cart_updated", modified, _with_customer(cart, buyer)),
        ]
    placed_data = {"order_id": order_id, "cart_id": cart_id, "items": items, "total": total, "currency": order_currency}
    codes = _coupon_codes(order)
    if codes:
        placed_data["discount_codes"] = codes
    placed = event(f"{key}:placed", "order_placed", created, _with_customer(placed_data, buyer))
    if status in PLACED_STATUSES:
        events = [placed]
        if status == "completed":
            fulfilled_at = _stamp(order, "date_completed_gmt", "completed_at") or modified
            events.append(event(f"{key}:fulfilled", "order_fulfilled", fulfilled_at, {"order_id": order_id}))
        return events
    if status in CANCELLED_STATUSES and _paid(order):
        return [placed, event(f"{key}:cancelled", "order_cancelled", modified,
                              {"order_id": order_id, "reason": status})]
    return []


def product_events(product: dict) -> list[dict]:
    product_id = ident(product.get("id"))
    if product_id is None:
        raise unmappable("id", "a product needs an id.")
    updated = first_timestamp(_modified(product), _created(product), field="date_modified_gmt")
    events = []
    category_id = None
    for category in as_list(product.get("categories")):
        if isinstance(category, str) and category.strip():  # legacy API: names only
            category_id = category_id or category.strip()[:128]
            continue
        category = as_dict(category)
        cid, name = ident(category.get("id")), _title(category.get("name"))
        if cid is None or name is None:
            continue
        category_id = category_id or cid
        data = {"id": cid, "name": name[:200]}
        events.append(event(f"woocommerce:category:{cid}:{digest(data)}", "category_upserted", updated, data))
    image = next((url(as_dict(i).get("src")) for i in as_list(product.get("images")) if url(as_dict(i).get("src"))),
                 None)
    stock = product.get("stock_quantity")
    data = {
        "sku": text(product.get("sku"), 128) or f"woocommerce-{product_id}",
        "external_id": product_id,
        "title": _title(product.get("name")) or _title(product.get("title")) or product_id,
        "description": text(product.get("short_description"), 20000) or text(product.get("description"), 20000),
        "url": url(product.get("permalink")),
        "image_url": image,
        "price": money(product.get("price")),
        "stock": stock if isinstance(stock, int) and not isinstance(stock, bool) else None,
        "category_id": category_id,
        "active": product.get("status") in (None, "publish"),
    }
    data = {k: v for k, v in data.items() if v is not None}
    # Stock moves with orders without always touching date_modified, so the content is in the id.
    events.append(event(f"woocommerce:product:{product_id}:{updated}:{digest(data)}", "product_upserted",
                        updated, data))
    return events


def customer_events(customer: dict) -> list[dict]:
    customer_id = ident(customer.get("id"))
    if customer_id is None:
        raise unmappable("id", "a customer needs an id.")
    updated = first_timestamp(_modified(customer), _created(customer), field="date_modified_gmt")
    billing = _billing(customer)
    buyer = person(
        email=customer.get("email") or billing.get("email"), phone=billing.get("phone"),
        phone_region=billing.get("country"), external_id=customer_id,
        first_name=customer.get("first_name") or billing.get("first_name"),
        last_name=customer.get("last_name") or billing.get("last_name"),
    )
    if buyer is None:
        raise unmappable("id", "a customer needs an id, an e-mail or a phone.")
    return [event(f"woocommerce:customer:{customer_id}:{updated}", "customer_upserted", updated,
                  {"customer": buyer})]
