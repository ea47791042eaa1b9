"""Shared set-up for the ugc tests: a catalogue and delivered orders made through events, photos, and a
switch that makes the moderation verdict predictable when a test is about ugc's side of it."""

import io
from datetime import UTC, datetime, timedelta

from PIL import Image

from tertulia.catalog.models import Product
from tertulia.commerce.models import Order
from tertulia.events.services import events_ingest
from tertulia.journeys.links import review_token_make
from tertulia.ugc import moderating

T0 = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)


def _event(event_id: str, type_: str, at: datetime, data: dict) -> dict:
    return {"id": event_id, "type": type_, "occurred_at": at.isoformat().replace("+00:00", "Z"), "data": data}


def catalogue(store, skus=("ACE-1", "ACE-2", "QUE-1")) -> dict[str, Product]:
    events = [_event(f"{store.slug}-cat-aceites", "category_upserted", T0, {"id": "aceites", "name": "Aceites"})]
    for n, sku in enumerate(skus):
        events.append(_event(f"{store.slug}-prod-{sku}", "product_upserted", T0, {
            "sku": sku, "title": f"Aceite de oliva {n + 1}", "category_id": "aceites", "price": "12.50",
            "currency": "EUR", "stock": 5, "url": f"https://{store.slug}.example/p/{sku.lower()}",
            "image_url": f"https://{store.slug}.example/img/{sku.lower()}.jpg",
            "description": "Aceite de oliva virgen extra de Jaén."}))
    events_ingest(store=store, events=events, source="test", now=T0 + timedelta(minutes=1))
    return {p.sku: p for p in Product.objects.for_store(store)}


def delivered_order(store, *, email: str, skus, order_id: str, delivered: bool = True, first_name: str = "Lucía",
                    language: str = "es") -> Order:
    at = T0 + timedelta(hours=1)
    customer = {"email": email, "first_name": first_name, "last_name": "García", "language": language}
    events = [_event(f"{order_id}-placed", "order_placed", at, {
        "order_id": order_id, "customer": customer,
        "items": [{"sku": sku, "title": sku, "quantity": 1, "price": "12.50"} for sku in skus],
        "total": f"{12.5 * len(skus):.2f}", "currency": "EUR"})]
    if delivered:
        events.append(_event(f"{order_id}-delivered", "order_delivered", at + timedelta(days=2), {"order_id": order_id}))
    events_ingest(store=store, events=events, source="test", now=at + timedelta(days=3))
    return Order.objects.for_store(store).get(external_id=order_id)


def review_token(order: Order) -> str:
    return review_token_make(store_id=order.store_id, order_id=order.pk, customer_id=order.customer_id)


def image_bytes(kind: str = "JPEG", size=(64, 48), exif_gps: bool = False, color=(200, 30, 30)) -> bytes:
    image = Image.new("RGBA" if kind == "PNG" else "RGB", size, color)
    out = io.BytesIO()
    if kind == "JPEG" and exif_gps:
        exif = Image.Exif()
        exif[0x010F] = "SpyCam Inc."  # Make
        exif[0x0131] = "secret-software 1.0"  # Software
        gps = exif.get_ifd(0x8825)
        gps[2] = (40.0, 25.0, 1.0)  # GPSLatitude
        gps[1] = "N"
        exif[0x0112] = 6  # Orientation: rotate 90
        image.save(out, format="JPEG", exif=exif.tobytes(), comment=b"hidden comment")
    else:
        image.save(out, format=kind)
    return out.getvalue()


class ScriptedModeration:
    """Stands in for the moderation app when a test is about what ugc does with a verdict.

    A text containing "[hold:<code>]" or "[reject:<code>]" gets that action and reason; anything else
    is published. Everything ugc passes along is recorded in `seen`.
    """

    def __init__(self):
        self.seen: list[dict] = []
        self.human: list[dict] = []

    def judge(self, **kwargs):
        self.seen.append(kwargs)
        text = kwargs["text"]
        for action in ("hold", "reject"):
            marker = f"[{action}:"
            if marker in text:
                code = text.split(marker, 1)[1].split("]", 1)[0]
                return moderating.Judgement(action=action, results=[{"code": code, "score": 0.9, "evidence": [code]}],
                                            policy_version=3, language=kwargs.get("language") or "es",
                                            triggered=[code])
        return moderating.Judgement(action="publish", results=[], policy_version=3, language=kwargs.get("language") or "es")

    def decide(self, **kwargs):
        self.human.append(kwargs)


def scripted_moderation(monkeypatch) -> ScriptedModeration:
    script = ScriptedModeration()
    monkeypatch.setattr("tertulia.ugc.services.content_judge", script.judge)
    monkeypatch.setattr("tertulia.ugc.services.decision_human", script.decide)
    return script
