"""Shopify webhook payloads mapped into native events: pure functions, payload in, event dicts out.

Client ids are built from the payload alone (ids, tokens and Shopify's own timestamps), so the same
change delivered twice under two webhook ids is still stored once.
"""

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
    "checkouts/create", "checkouts/update",
    "orders/create", "orders/fulfilled", "orders/cancelled",
    "products/create", "products/update",
    "customers/create", "customers/update",
})

# Shopify consent states that say something; "not_subscribed" (never asked) and "redacted" do not,
# and recording them as a withdrawal would override an opt-in the store got elsewhere.
_CONSENT_STATES = {"subscribed": "subscribed", "unsubscribed": "unsubscribed", "pending": "pending_confirmation"}


def shopify_events(*, topic: str, payload: dict, shop_url: str = "", currency: str = "EUR") -> list[dict]:
    """Native events for one Shopify webhook. `topic` must be one of TOPICS."""
    resource = topic.split("/", 1)[0]
    if resource == "checkouts":
        return checkout_events(payload, currency=currency)
    if resource == "orders":
        return order_events(payload, topic=topic, currency=currency)
    if resource == "products":
        return product_events(payload, shop_url=shop_url)
    if resource == "customers":
        return customer_events(payload)
    raise ValueError(f"not a Shopify topic we map: {topic}")


def _stamp(payload: dict, *keys: str) -> str:
    return first_timestamp(*(timestamp(payload.get(key)) for key in keys), field=keys[0])


def _region(*addresses: object) -> str | None:
    for address in addresses:
        code = as_dict(address).get("country_code")
        if isinstance(code, str) and code:
            return code
    return None


def _buyer(payload: dict) -> dict | None:
    """Who a checkout or order belongs to: its customer object, falling back to the contact fields."""
    customer = as_dict(payload.get("customer"))
    return person(
        email=customer.get("email") or payload.get("email") or payload.get("contact_email"),
        phone=customer.get("phone") or payload.get("phone"),
        phone_region=_region(payload.get("billing_address"), payload.get("shipping_address"),
                             customer.get("default_address")),
        external_id=ident(customer.get("id")),
        first_name=customer.get("first_name"),
        last_name=customer.get("last_name"),
        language=payload.get("customer_locale"),
    )


def _items(lines: object) -> list[dict]:
    items = []
    for line in as_list(lines):
        line = as_dict(line)
        quantity = line.get("quantity")
        if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity < 1:
            continue
        variant_id, product_id = ident(line.get("variant_id")), ident(line.get("product_id"))
        sku = text(line.get("sku"), 128) or (f"shopify-{variant_id}" if variant_id else None) or (
            f"shopify-product-{product_id}" if product_id else None)
        if sku is None:
            continue  # a custom line (tip, gift wrap) with nothing to tie it to a product
        item: dict = {"sku": sku, "quantity": quantity}
        price = money(line.get("price"))
        if price is not None:
            item["price"] = price
        title = text(line.get("name")) or text(line.get("title"))
        if title:
            item["title"] = title
        items.append(item)
    return items


def _discount_codes(payload: dict) -> list[str]:
    """Codes the buyer entered: `discount_codes` is a list of {code, amount, type} on orders and checkouts."""
    codes = []
    for entry in as_list(payload.get("discount_codes")):
        code = text(as_dict(entry).get("code"), 100)
        if code and code not in codes:
            codes.append(code)
    return codes


def _with_customer(data: dict, buyer: dict | None) -> dict:
    if buyer is not None:
        data["customer"] = buyer
    return data


def _marketing_opt_in(payload: dict, buyer: dict | None, *, key: str, occurred_at: str) -> list[dict]:
    """A ticked 'email me offers' box at checkout is an opt-in; an unticked one says nothing."""
    if payload.get("buyer_accepts_marketing") is not True or buyer is None or "email" not in buyer:
        return []
    evidence = {"provider": "shopify", "field": "buyer_accepts_marketing", "value": True, "record": key}
    return [event(f"{key}:consent:email:subscribed", "consent_changed", occurred_at,
                  {"channel": "email", "status": "subscribed", "source": "shopify", "evidence": evidence,
                   "customer": buyer})]


def checkout_events(payload: dict, *, currency: str) -> list[dict]:
    token = ident(payload.get("token")) or ident(payload.get("id"))
    if token is None:
        raise unmappable("token", "a checkout needs a token or an id.")
    updated = _stamp(payload, "updated_at", "created_at")
    created = _stamp(payload, "created_at", "updated_at")
    buyer = _buyer(payload)
    cart_currency = currency_code(payload.get("currency"), currency)
    recovery = url(payload.get("abandoned_checkout_url"))
    cart = {
        "cart_id": token,
        "items": _items(payload.get("line_items")),
        "total": money(payload.get("total_price")) or "0.00",
        "currency": cart_currency,
        "recovery_url": recovery,
    }
    started = {"cart_id": token, "currency": cart_currency, "recovery_url": recovery}
    key = f"shopify:checkout:{token}"
    return [
        event(f"{key}:started", "checkout_started", created, _with_customer(started, buyer)),
        event(f"{key}:{updated}", "cart_updated", updated, _with_customer(cart, buyer)),
        *_marketing_opt_in(payload, buyer, key=key, occurred_at=updated),
    ]


def _fulfilled_at(payload: dict) -> tuple[str, str | None]:
    """When the order was fulfilled and where to track it: its latest fulfilment, or the order's update."""
    latest: tuple[str, str | None] | None = None
    for fulfilment in as_list(payload.get("fulfillments")):
        fulfilment = as_dict(fulfilment)
        at = timestamp(fulfilment.get("created_at")) or timestamp(fulfilment.get("updated_at"))
        if at and (latest is None or at > latest[0]):
            latest = (at, url(fulfilment.get("tracking_url")))
    return latest or (_stamp(payload, "updated_at", "created_at"), None)


def order_events(payload: dict, *, topic: str, currency: str) -> list[dict]:
    order_id = ident(payload.get("id"))
    if order_id is None:
        raise unmappable("id", "an order needs an id.")
    placed_at = _stamp(payload, "created_at", "processed_at", "updated_at")
    buyer = _buyer(payload)
    key = f"shopify:order:{order_id}"
    placed = {
        "order_id": order_id,
        "cart_id": ident(payload.get("checkout_token")) or ident(payload.get("cart_token")),
        "items": _items(payload.get("line_items")),
        "total": money(payload.get("total_price")) or money(payload.get("current_total_price")),
        "currency": currency_code(payload.get("currency"), currency),
    }
    codes = _discount_codes(payload)
    if codes:
        placed["discount_codes"] = codes
    events = [event(f"{key}:placed", "order_placed", placed_at, _with_customer(placed, buyer))]
    # The topic says what happened; the payload's own state is trusted too, so a fulfilment or a
    # cancellation reported on another topic is not lost. Ids per moment keep replays harmless.
    if topic == "orders/fulfilled" or payload.get("fulfillment_status") == "fulfilled":
        at, tracking = _fulfilled_at(payload)
        events.append(event(f"{key}:fulfilled", "order_fulfilled", at,
                            {"order_id": order_id, "tracking_url": tracking}))
    if topic == "orders/cancelled" or timestamp(payload.get("cancelled_at")):
        at = _stamp(payload, "cancelled_at", "updated_at", "created_at")
        events.append(event(f"{key}:cancelled", "order_cancelled", at,
                            {"order_id": order_id, "reason": text(payload.get("cancel_reason"))}))
    events.extend(_marketing_opt_in(payload, buyer, key=key, occurred_at=placed_at))
    return events


def _variant_label(variant: dict) -> str | None:
    label = text(variant.get("title"))
    if not label:
        options = [text(variant.get(f"option{n}")) for n in (1, 2, 3)]
        label = " / ".join(o for o in options if o) or None
    return None if label == "Default Title" else label


def product_events(payload: dict, *, shop_url: str) -> list[dict]:
    product_id = ident(payload.get("id"))
    if product_id is None:
        raise unmappable("id", "a product needs an id.")
    updated = _stamp(payload, "updated_at", "created_at")
    title = text(payload.get("title")) or product_id
    images = {ident(as_dict(i).get("id")): url(as_dict(i).get("src")) for i in as_list(payload.get("images"))}
    default_image = url(as_dict(payload.get("image")).get("src")) or next((s for s in images.values() if s), None)
    handle = text(payload.get("handle"))
    page = f"{shop_url.rstrip('/')}/products/{handle}" if shop_url and handle else None
    status = payload.get("status")
    variants = [as_dict(v) for v in as_list(payload.get("variants"))]
    several = len(variants) > 1
    events = []
    for variant in variants:
        variant_id = ident(variant.get("id"))
        sku = text(variant.get("sku"), 128) or (f"shopify-{variant_id}" if variant_id else None)
        if sku is None:
            continue
        label = _variant_label(variant) if several else None
        stock = variant.get("inventory_quantity")
        data = {
            "sku": sku,
            "external_id": variant_id,
            "title": f"{title} - {label}" if label else title,
            "description": text(payload.get("body_html"), 20000),
            "url": f"{page}?variant={variant_id}" if page and several and variant_id else page,
            "image_url": images.get(ident(variant.get("image_id"))) or default_image,
            "price": money(variant.get("price")),
            "stock": stock if isinstance(stock, int) and not isinstance(stock, bool) else None,
            "category_id": text(payload.get("product_type"), 128),
            "active": status in (None, "active"),
        }
        data = {k: v for k, v in data.items() if v is not None}
        # Stock can change without Shopify moving the product's updated_at, so the content is in the id.
        events.append(event(f"shopify:product:{product_id}:variant:{variant_id or sku}:{updated}:{digest(data)}",
                            "product_upserted", updated, data))
    return events


def _consent(payload: dict, buyer: dict, *, customer_id: str, updated: str, field: str, channel: str,
             identity: str) -> list[dict]:
    consent = as_dict(payload.get(field))
    state = consent.get("state")
    status = _CONSENT_STATES.get(state) if isinstance(state, str) else None
    if status is None or identity not in buyer:
        return []
    at = timestamp(consent.get("consent_updated_at")) or updated
    evidence = {"provider": "shopify", "field": field, "state": consent.get("state"),
                "opt_in_level": consent.get("opt_in_level"), "consent_updated_at": consent.get("consent_updated_at")}
    if consent.get("consent_collected_from"):
        evidence["collected_from"] = consent["consent_collected_from"]
    return [event(f"shopify:customer:{customer_id}:consent:{channel}:{status}:{at}", "consent_changed", at,
                  {"channel": channel, "status": status, "source": "shopify", "evidence": evidence,
                   "customer": buyer})]


def _legacy_email_consent(payload: dict, buyer: dict, *, customer_id: str, updated: str) -> list[dict]:
    """Older payloads carry only `accepts_marketing`; false counts as a withdrawal only once it has a date."""
    accepts = payload.get("accepts_marketing")
    changed_at = timestamp(payload.get("accepts_marketing_updated_at"))
    if "email" not in buyer or not isinstance(accepts, bool) or (not accepts and not changed_at):
        return []
    status = "subscribed" if accepts else "unsubscribed"
    at = changed_at or updated
    evidence = {"provider": "shopify", "field": "accepts_marketing", "value": accepts,
                "accepts_marketing_updated_at": payload.get("accepts_marketing_updated_at"),
                "opt_in_level": payload.get("marketing_opt_in_level")}
    return [event(f"shopify:customer:{customer_id}:consent:email:{status}:{at}", "consent_changed", at,
                  {"channel": "email", "status": status, "source": "shopify", "evidence": evidence,
                   "customer": buyer})]


def customer_events(payload: dict) -> list[dict]:
    customer_id = ident(payload.get("id"))
    if customer_id is None:
        raise unmappable("id", "a customer needs an id.")
    updated = _stamp(payload, "updated_at", "created_at")
    buyer = person(
        email=payload.get("email"), phone=payload.get("phone"),
        phone_region=_region(payload.get("default_address"), *as_list(payload.get("addresses"))),
        external_id=customer_id, first_name=payload.get("first_name"), last_name=payload.get("last_name"),
        language=payload.get("locale"),
    )
    if buyer is None:
        raise unmappable("id", "a customer needs an id, an e-mail or a phone.")
    events = [event(f"shopify:customer:{customer_id}:{updated}", "customer_upserted", updated, {"customer": buyer})]
    if isinstance(payload.get("email_marketing_consent"), dict):
        events += _consent(payload, buyer, customer_id=customer_id, updated=updated,
                           field="email_marketing_consent", channel="email", identity="email")
    else:
        events += _legacy_email_consent(payload, buyer, customer_id=customer_id, updated=updated)
    events += _consent(payload, buyer, customer_id=customer_id, updated=updated,
                       field="sms_marketing_consent", channel="sms", identity="phone")
    return events
