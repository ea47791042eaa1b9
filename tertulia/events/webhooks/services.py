"""Writes for webhook deliveries: verify a signature, refuse a replayed delivery, store its events once."""

import base64
import hashlib
import hmac

from django.db import IntegrityError

from tertulia.core.db import atomic_with_retry
from tertulia.core.errors import ApiError
from tertulia.core.models import Store
from tertulia.events.models import WebhookDelivery
from tertulia.events.schema import nul_problems, validate_batch
from tertulia.events.services import IngestResult, events_store


def signature_verify(*, body: bytes, secret: str, presented: str | None) -> None:
    """Raise a 401 unless `presented` is base64(HMAC-SHA256(body, secret)), compared in constant time."""
    if not presented:
        raise ApiError("missing_signature", "The webhook carries no signature header.", 401)
    if not secret:
        raise ApiError("invalid_signature", "This store has no webhook secret set, so no signature can match.", 401)
    expected = base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest())
    if not hmac.compare_digest(expected, presented.strip().encode("utf-8", "replace")):
        raise ApiError("invalid_signature", "The webhook signature does not match the body and the store's secret.",
                       401)


def delivery_seen(*, store: Store, provider: str, delivery_id: str | None) -> bool:
    if not delivery_id:
        return False
    return WebhookDelivery.objects.for_store(store).filter(provider=provider, delivery_id=delivery_id[:200]).exists()


def delivery_receive(*, store: Store, provider: str, delivery_id: str | None, topic: str,
                     events: list[dict]) -> IngestResult | None:
    """Validate and store one delivery's events all-or-nothing; None when the delivery id was already taken.

    Without a delivery id the events are still stored once each: their client ids come from the payload.
    """
    valid, problems = validate_batch(events)
    problems += nul_problems(events)  # PostgreSQL stores no U+0000; a delivery is a few events, so always look
    if problems:
        invalid = len({p.index for p in problems})
        raise ApiError("invalid_events", f"{invalid} of {len(events)} mapped events are invalid; nothing was stored.",
                       422, problems)
    try:
        def receive() -> IngestResult:
            delivery = None
            if delivery_id:
                delivery = WebhookDelivery.objects.create(store=store, provider=provider,
                                                          delivery_id=delivery_id[:200], topic=topic[:64])
            stored = events_store(store=store, events=valid, source=provider) if valid else IngestResult()
            if delivery is not None and stored.accepted:
                WebhookDelivery.objects.filter(pk=delivery.pk).update(events_created=stored.accepted)
            return stored

        result = atomic_with_retry(receive)
    except IntegrityError:
        # Two copies of one delivery raced; the other one stored it.
        if delivery_seen(store=store, provider=provider, delivery_id=delivery_id):
            return None
        raise
    return result
