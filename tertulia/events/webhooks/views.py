"""Webhook endpoints: plain Django views, authenticated by each platform's signature instead of an API key."""

import logging
import re
from collections.abc import Callable

import orjson
from django.http import HttpRequest, HttpResponse

from tertulia.core.errors import ApiError, ErrorDetail
from tertulia.core.models import Store
from tertulia.core.views import webhook_view
from tertulia.events.webhooks import shopify, woocommerce
from tertulia.events.webhooks.services import delivery_receive, delivery_seen, signature_verify

logger = logging.getLogger("tertulia.webhooks")

# WooCommerce checks a new webhook's URL with an unsigned, form-encoded POST of just this.
_WOOCOMMERCE_PING = re.compile(rb"^webhook_id=\d+$")
_SHOP_DOMAIN = re.compile(r"^[a-z0-9][a-z0-9.-]{0,252}$")


def _json(data: dict, status: int = 200) -> HttpResponse:
    return HttpResponse(orjson.dumps(data), status=status, content_type="application/json")


def _store(slug: str) -> Store:
    store = Store.objects.filter(slug=slug).first()
    if store is None:
        raise ApiError("unknown_store", f"No store '{slug}'. Check the webhook URL.", 404)
    return store


def _payload(body: bytes) -> dict:
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ApiError("invalid_json", f"The body is not valid JSON: {exc}.", 400,
                       [ErrorDetail(field="", code="invalid_json", message=str(exc))]) from None
    if not isinstance(payload, dict):
        raise ApiError("invalid_body", "The body must be a JSON object.", 400,
                       [ErrorDetail(field="", code="invalid_type", message="Must be an object.")])
    return payload


def _receive(request: HttpRequest, *, store: Store, provider: str, topic: str, delivery_id: str | None,
             topics: frozenset[str], mapper: Callable[[dict], list[dict]]) -> HttpResponse:
    context = {"provider": provider, "store": store.slug, "topic": topic, "delivery_id": delivery_id}
    if topic not in topics:
        logger.info("webhook topic ignored", extra=context)
        return _json({"ignored": True, "topic": topic}, 202)
    if delivery_seen(store=store, provider=provider, delivery_id=delivery_id):
        logger.info("webhook delivery replayed", extra=context)
        return _json({"duplicate": True})
    payload = _payload(request.body)
    try:
        events = mapper(payload)
    except ApiError:
        raise
    except (TypeError, ValueError, AttributeError, KeyError) as exc:
        # The mappers read loose input defensively; a shape they still trip on is the sender's to fix.
        logger.warning("webhook payload not mappable", extra={**context, "error": repr(exc)})
        raise ApiError("unmappable_payload", f"The {topic} payload cannot be mapped to store events.", 422) from None
    result = delivery_receive(store=store, provider=provider, delivery_id=delivery_id, topic=topic, events=events)
    if result is None:
        return _json({"duplicate": True})
    logger.info("webhook stored", extra={**context, "accepted": result.accepted, "duplicates": result.duplicates})
    return _json({"duplicate": False, "topic": topic, **result.as_dict()})


def _shop_url(request: HttpRequest, store: Store) -> str:
    if store.website_url:
        return store.website_url
    domain = (request.headers.get("X-Shopify-Shop-Domain") or "").strip().lower()
    return f"https://{domain}" if _SHOP_DOMAIN.match(domain) else ""


@webhook_view
def shopify_webhook(request: HttpRequest, store_slug: str) -> HttpResponse:
    store = _store(store_slug)
    signature_verify(body=request.body, secret=store.shopify_secret,
                     presented=request.headers.get("X-Shopify-Hmac-Sha256"))
    topic = (request.headers.get("X-Shopify-Topic") or "").strip()
    shop_url = _shop_url(request, store)
    return _receive(
        request, store=store, provider="shopify", topic=topic,
        delivery_id=(request.headers.get("X-Shopify-Webhook-Id") or "").strip() or None,
        topics=shopify.TOPICS,
        mapper=lambda payload: shopify.shopify_events(topic=topic, payload=payload, shop_url=shop_url,
                                                      currency=store.currency),
    )


@webhook_view
def woocommerce_webhook(request: HttpRequest, store_slug: str) -> HttpResponse:
    store = _store(store_slug)
    topic = (request.headers.get("X-WC-Webhook-Topic") or "").strip()
    if not topic and _WOOCOMMERCE_PING.match(request.body.strip()):
        logger.info("woocommerce ping answered", extra={"provider": "woocommerce", "store": store.slug})
        return _json({"ping": True})
    signature_verify(body=request.body, secret=store.woocommerce_secret,
                     presented=request.headers.get("X-WC-Webhook-Signature"))
    return _receive(
        request, store=store, provider="woocommerce", topic=topic,
        delivery_id=(request.headers.get("X-WC-Webhook-Delivery-ID") or "").strip() or None,
        topics=woocommerce.TOPICS,
        mapper=lambda payload: woocommerce.woocommerce_events(topic=topic, payload=payload,
                                                              currency=store.currency),
    )
