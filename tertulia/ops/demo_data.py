"""The demo store: a Spanish delicatessen with customers, consents, carts and orders, seeded as events.

Everything goes through `events_ingest` (source "demo"), so the event log, the customers' timelines
and the projections are exactly what a real store sending events would have. The same seed gives
the same shop; times are laid out over the 60 days before the moment of seeding.
"""

import random
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import transaction

from tertulia.core.models import Store
from tertulia.core.services import store_create
from tertulia.events.services import events_ingest

DEMO_SLUG = "demo"
DEMO_NAME = "Ultramarinos La Tertulia"
DEMO_WEBSITE = "https://ultramarinos-la-tertulia.example"
DEMO_SEED = 20240521
DAYS = 60

# (id, name, parent id)
CATEGORIES = [
    ("despensa", "Despensa", None),
    ("aceites", "Aceites y vinagres", "despensa"),
    ("conservas", "Conservas del mar", "despensa"),
    ("especias", "Especias y condimentos", "despensa"),
    ("bodega", "Bodega", None),
    ("vinos", "Vinos", "bodega"),
    ("cafes", "Cafés e infusiones", "bodega"),
    ("charcuteria", "Quesos e ibéricos", None),
    ("quesos", "Quesos", "charcuteria"),
    ("ibericos", "Embutidos ibéricos", "charcuteria"),
    ("dulces", "Dulces y turrones", None),
    ("regalos", "Lotes de regalo", None),
]

# (sku, title, category id, price in EUR, description)
PRODUCTS = [
    ("ACE-001", "Aceite de oliva virgen extra picual 500 ml", "aceites", "12.50",
     "Cosecha temprana de Jaén. Frutado intenso con notas de tomatera y un amargor elegante."),
    ("ACE-002", "Aceite de oliva virgen extra arbequina 500 ml", "aceites", "11.90",
     "De las Garrigues, suave y almendrado; ideal para pescados y repostería."),
    ("ACE-003", "Aceite de oliva virgen extra hojiblanca 2 l", "aceites", "29.00",
     "Lata familiar de Antequera para el uso diario en la cocina."),
    ("ACE-004", "Vinagre de Jerez reserva 250 ml", "aceites", "7.90",
     "Envejecido en botas de roble por el sistema de criaderas y soleras."),
    ("ACE-005", "Vinagre de Módena con higos 250 ml", "aceites", "6.50",
     "Reducción dulce para ensaladas, quesos y carnes a la plancha."),
    ("CON-001", "Bonito del norte en aceite de oliva 250 g", "conservas", "9.95",
     "Pescado en temporada en el Cantábrico y envasado a mano en Santoña."),
    ("CON-002", "Anchoas del Cantábrico 00 en aceite, 10 filetes", "conservas", "14.80",
     "Maduradas en salazón durante meses y limpiadas una a una."),
    ("CON-003", "Mejillones gallegos en escabeche 8/12 piezas", "conservas", "5.90",
     "Mejillón de batea de las rías gallegas, frito y escabechado al estilo tradicional."),
    ("CON-004", "Berberechos al natural 35/45 piezas", "conservas", "12.40",
     "De la ría de Noia, grandes y limpios de arena."),
    ("CON-005", "Ventresca de atún rojo en aceite 115 g", "conservas", "16.50",
     "La parte más jugosa del atún de almadraba de Barbate."),
    ("CON-006", "Sardinillas en aceite de oliva 16/20 piezas", "conservas", "4.75",
     "Pequeñas, tiernas y perfectas para el aperitivo."),
    ("ESP-001", "Pimentón de la Vera dulce D.O. 75 g", "especias", "3.90",
     "Secado al humo de encina; el color y el aroma de un buen guiso."),
    ("ESP-002", "Pimentón de la Vera picante D.O. 75 g", "especias", "3.90",
     "El mismo ahumado de la Vera con un punto de picor."),
    ("ESP-003", "Azafrán de La Mancha en hebra 1 g", "especias", "8.50",
     "Denominación de origen; unas hebras bastan para una paella para cuatro."),
    ("ESP-004", "Sal en escamas de Añana 125 g", "especias", "4.20",
     "Sal de manantial evaporada al sol en el valle salado de Añana."),
    ("ESP-005", "Mezcla de especias para paella 20 g", "especias", "2.95",
     "Pimentón, azafrán, ajo y romero en su justa medida."),
    ("VIN-001", "Rioja crianza 75 cl", "vinos", "13.90",
     "Tempranillo con doce meses en barrica; fruta madura y notas de vainilla."),
    ("VIN-002", "Ribera del Duero roble 75 cl", "vinos", "10.50",
     "Tinto fino joven con paso breve por madera, directo y frutal."),
    ("VIN-003", "Albariño Rías Baixas 75 cl", "vinos", "12.90",
     "Blanco fresco y floral, pensado para mariscos y pescados."),
    ("VIN-004", "Verdejo Rueda 75 cl", "vinos", "8.90",
     "Aromas de hinojo y hierba recién cortada, final ligeramente amargo."),
    ("VIN-005", "Cava brut nature reserva 75 cl", "vinos", "11.50",
     "Quince meses de crianza en botella, burbuja fina."),
    ("VIN-006", "Fino de Jerez 75 cl", "vinos", "9.80",
     "Crianza biológica bajo velo de flor; seco, salino y almendrado."),
    ("VIN-007", "Pedro Ximénez 37,5 cl", "vinos", "14.50",
     "Vino dulce de uvas pasificadas, con higos y dátiles en nariz."),
    ("CAF-001", "Café de Colombia en grano 1 kg", "cafes", "21.00",
     "Tueste natural en Salamanca; notas de cacao y caramelo."),
    ("CAF-002", "Café de Etiopía molido 250 g", "cafes", "8.90",
     "Variedad yirgacheffe, floral y cítrico, molido para cafetera italiana."),
    ("CAF-003", "Té verde sencha 100 g", "cafes", "8.40",
     "Hojas enteras de primera cosecha."),
    ("CAF-004", "Manzanilla de Sierra Nevada 40 g", "cafes", "4.10",
     "Flor entera recolectada a mano en la Alpujarra."),
    ("CAF-005", "Poleo menta ecológico 50 g", "cafes", "3.80",
     "Infusión digestiva de cultivo ecológico."),
    ("QUE-001", "Queso manchego curado 1 kg", "quesos", "24.90",
     "Leche cruda de oveja manchega; doce meses de curación."),
    ("QUE-002", "Queso Idiazabal ahumado 500 g", "quesos", "15.80",
     "Leche de oveja latxa, ahumado con madera de haya."),
    ("QUE-003", "Torta del Casar 500 g", "quesos", "19.50",
     "Cremosa y untuosa; se abre por arriba y se come a cucharadas."),
    ("QUE-004", "Queso de Cabrales 250 g", "quesos", "11.20",
     "Azul asturiano madurado en cuevas de los Picos de Europa."),
    ("QUE-005", "Queso tetilla gallego 800 g", "quesos", "12.60",
     "Suave y mantecoso, de leche de vaca rubia gallega."),
    ("QUE-006", "Mahón-Menorca semicurado 1 kg", "quesos", "17.40",
     "Corteza frotada con aceite y pimentón; ligero punto salino."),
    ("IBE-001", "Jamón ibérico de bellota loncheado 100 g", "ibericos", "18.90",
     "Cortado a cuchillo por maestros cortadores de Guijuelo."),
    ("IBE-002", "Paleta ibérica de cebo de campo loncheada 100 g", "ibericos", "11.90",
     "Sabor intenso y veteado fino."),
    ("IBE-003", "Chorizo ibérico de bellota cular 500 g", "ibericos", "13.50",
     "Con pimentón de la Vera y curado lentamente."),
    ("IBE-004", "Salchichón ibérico de bellota 500 g", "ibericos", "12.90",
     "Pimienta negra y nuez moscada, curación natural."),
    ("IBE-005", "Lomo ibérico de bellota 250 g", "ibericos", "22.00",
     "Adobado con ajo y pimentón, pieza entera para cortar fino."),
    ("IBE-006", "Sobrasada de Mallorca 400 g", "ibericos", "9.60",
     "Elaborada con cerdo negro mallorquín."),
    ("DUL-001", "Turrón de Jijona 300 g", "dulces", "9.90",
     "Almendra marcona y miel, textura blanda."),
    ("DUL-002", "Turrón de Alicante 300 g", "dulces", "9.90",
     "Almendra entera tostada y miel, el turrón duro de siempre."),
    ("DUL-003", "Polvorones de Estepa 400 g", "dulces", "6.80",
     "Manteca, harina tostada y almendra; se deshacen en la boca."),
    ("DUL-004", "Mazapán de Toledo 250 g", "dulces", "7.50",
     "Figuritas de almendra y azúcar hechas a mano."),
    ("DUL-005", "Miel de azahar 500 g", "dulces", "8.20",
     "Miel clara y perfumada de los naranjos de Valencia."),
    ("DUL-006", "Membrillo artesano 400 g", "dulces", "4.90",
     "Hecho a fuego lento, perfecto con queso curado."),
    ("REG-001", "Lote «Aperitivo del Cantábrico»", "regalos", "45.00",
     "Anchoas, bonito, berberechos y un albariño para compartir."),
    ("REG-002", "Lote «Sabores de La Mancha»", "regalos", "59.00",
     "Queso manchego, azafrán, aceite picual y un tinto crianza."),
    ("REG-003", "Lote «Navidad en casa»", "regalos", "79.00",
     "Turrones, polvorones, cava, jamón ibérico y mazapán de Toledo."),
    ("REG-004", "Caja regalo «Desayuno andaluz»", "regalos", "34.50",
     "Aceite hojiblanca, miel de azahar, café molido y manzanilla."),
    ("REG-005", "Tarjeta regalo 50 €", "regalos", "50.00",
     "Para que elijan lo que más les apetezca de la tienda."),
]

_FIRST_ES = [
    "Lucía", "María", "Carmen", "Sofía", "Paula", "Laura", "Marta", "Elena", "Irene", "Alba", "Sara", "Julia",
    "Nerea", "Ainhoa", "Claudia", "Rocío", "Pilar", "Montserrat", "Noelia", "Cristina",
    "Javier", "Alejandro", "Pablo", "Daniel", "Hugo", "Álvaro", "Diego", "Sergio", "Jorge", "Adrián",
    "Manuel", "Carlos", "David", "Iker", "Jordi", "Andrés", "Rubén", "Óscar", "Raúl", "Ignacio",
]
_LAST_ES = [
    "García", "Fernández", "González", "Rodríguez", "López", "Martínez", "Sánchez", "Pérez", "Gómez", "Martín",
    "Jiménez", "Ruiz", "Hernández", "Díaz", "Moreno", "Muñoz", "Álvarez", "Romero", "Navarro", "Torres",
    "Domínguez", "Gil", "Vázquez", "Serrano", "Ramos", "Blanco", "Castro", "Ortega", "Rubio", "Iglesias",
    "Puig", "Etxeberria", "Castells", "Otero", "Suárez",
]
_FIRST_EN = ["Emma", "Olivia", "Grace", "Chloe", "Sophie", "James", "Oliver", "Harry", "Thomas", "Jack"]
_LAST_EN = ["Smith", "Jones", "Taylor", "Brown", "Wilson", "Clarke", "Evans", "Walker", "Wright", "Hughes"]
_DOMAINS = ["example.com", "example.es", "example.org", "example.net"]
_ZONES_ES = ["Europe/Madrid"] * 16 + ["Atlantic/Canary"] * 2 + ["America/Mexico_City", "America/Bogota"]
_ZONES_EN = ["Europe/London"] * 3 + ["Europe/Madrid", "America/New_York"]
_CONSENT_SOURCES = {
    "email": [("checkout", "Quiero recibir novedades y ofertas por correo electrónico."),
              ("newsletter_form", "Suscríbete a nuestro boletín semanal."),
              ("popup", "10 % de descuento en tu primer pedido si te suscribes.")],
    "sms": [("checkout", "Avísame por SMS del estado de mi pedido y de ofertas.")],
    "social_dm": [("instagram_dm", "Respondió «sí» a nuestro mensaje directo.")],
}


@dataclass(frozen=True, slots=True)
class DemoSummary:
    store: Store
    events: int


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _ascii(text: str) -> str:
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower().replace(" ", "")


def _event(event_id: str, type_: str, at: datetime, data: dict) -> dict:
    return {"id": f"demo:{event_id}", "type": type_, "occurred_at": _iso(at), "data": data}


def demo_events_build(*, seed: int = DEMO_SEED, now: datetime) -> list[list[dict]]:
    """The demo's events in phases (catalogue, people, carts, orders, order moments, journey showcase)."""
    rng = random.Random(seed)
    start = now - timedelta(days=DAYS)
    catalogue = [
        _event(f"category:{cid}", "category_upserted", start,
               {"id": cid, "name": name, **({"parent_id": parent} if parent else {}),
                "url": f"{DEMO_WEBSITE}/categoria/{cid}"})
        for cid, name, parent in CATEGORIES
    ]
    for sku, title, category, price, description in PRODUCTS:
        catalogue.append(_event(f"product:{sku}", "product_upserted", start + timedelta(minutes=rng.randint(1, 90)), {
            "sku": sku, "title": title, "description": description, "category_id": category,
            "price": price, "currency": "EUR", "stock": rng.choice([0, 3, 8, 12, 25, 40, 60, 120]),
            "url": f"{DEMO_WEBSITE}/productos/{sku.lower()}", "image_url": f"{DEMO_WEBSITE}/img/{sku.lower()}.jpg",
        }))

    people, customers = [], []
    used_emails: set[str] = set()
    for number in range(200):
        english = rng.random() < 0.15
        first = rng.choice(_FIRST_EN if english else _FIRST_ES)
        last = rng.choice(_LAST_EN if english else _LAST_ES)
        email = f"{_ascii(first)}.{_ascii(last)}@{rng.choice(_DOMAINS)}"
        while email in used_emails:
            email = f"{_ascii(first)}.{_ascii(last)}{rng.randint(2, 99)}@{rng.choice(_DOMAINS)}"
        used_emails.add(email)
        joined = start + timedelta(minutes=rng.randint(120, (DAYS - 1) * 24 * 60))
        person: dict = {
            "email": email, "external_id": f"C-{1001 + number}", "first_name": first, "last_name": last,
            "language": "en" if english else "es", "timezone": rng.choice(_ZONES_EN if english else _ZONES_ES),
        }
        if rng.random() < 0.7:
            # Spanish mobiles: 6xx xxx xxx, all valid in E.164 as +346...
            person["phone"] = f"+346{rng.randint(0, 99_999_999):08d}"
        handles = {}
        handle = f"{_ascii(first)}{rng.choice(['', '_', '.'])}{_ascii(last)[:rng.randint(3, 6)]}"
        if rng.random() < 0.35:
            handles["instagram"] = handle
        if rng.random() < 0.12:
            handles["x"] = handle.replace(".", "_")
        if rng.random() < 0.08:
            handles["mastodon"] = f"{handle.replace('.', '_')}@mastodon.social"
        if rng.random() < 0.08:
            handles["bluesky"] = f"{handle.replace('_', '')}.bsky.social"
        if handles:
            person["handles"] = handles
        customers.append((person, joined))
        ref = f"customer:{person['external_id']}"
        people.append(_event(ref, "customer_upserted", joined, {"customer": person}))
        identity = {"email": email}
        people.extend(_consents(rng, ref, identity, person, joined, now))

    carts, orders, moments = [], [], []
    order_number = 10001
    for number in range(320):
        person, joined = rng.choice(customers)
        recent = rng.random() < 0.12
        earliest = max(joined, now - timedelta(hours=6)) if recent else joined
        began = earliest + (now - earliest) * rng.random() * (1.0 if recent else 0.9)
        cart_id = f"demo-cart-{number + 1:04d}"
        lines: dict[str, dict] = {}
        moment = began
        steps = rng.randint(1, 3)
        customer = {"email": person["email"]}
        for step in range(steps):
            if moment >= now:
                break
            sku, title, _, price, _ = rng.choice(PRODUCTS)
            line = lines.setdefault(sku, {"sku": sku, "title": title, "quantity": 0, "price": price})
            line["quantity"] += rng.randint(1, 2)
            carts.append(_event(f"cart:{cart_id}:{step}", "cart_updated", moment, {
                "cart_id": cart_id, "customer": customer, "items": [dict(x) for x in lines.values()],
                "total": _total(lines), "currency": "EUR", "recovery_url": f"{DEMO_WEBSITE}/carrito/{cart_id}/recuperar",
            }))
            moment += timedelta(minutes=rng.randint(1, 12))
        if moment >= now:
            continue
        converts = not recent and rng.random() < 0.5
        if converts or rng.random() < 0.3:
            carts.append(_event(f"cart:{cart_id}:checkout", "checkout_started", moment, {
                "cart_id": cart_id, "customer": customer, "items": [dict(x) for x in lines.values()],
                "total": _total(lines), "currency": "EUR",
            }))
            moment += timedelta(minutes=rng.randint(2, 20))
        if not converts or moment >= now:
            continue
        order_id = f"LT-{order_number}"
        order_number += 1
        orders.append(_event(f"order:{order_id}:placed", "order_placed", moment, {
            "order_id": order_id, "cart_id": cart_id, "customer": customer,
            "items": [dict(x) for x in lines.values()], "total": _total(lines), "currency": "EUR",
        }))
        moments.extend(_order_moments(rng, order_id, moment, now))
    return [catalogue, people, carts, orders, moments,
            *_journey_showcase(seed=seed, now=now, people=people, orders=orders)]


def _journey_showcase(*, seed: int, now: datetime, people: list[dict], orders: list[dict]) -> list[list[dict]]:
    """Facts that set every journey going as soon as the demo runs (its own random stream: the shop above stays the same).

    Shoppers of the seed who agreed to e-mail and left a cart in the last two hours (their recovery
    e-mails are due at once), two who left one moments before seeding (due in about a minute), buyers
    of the last hours (thank you), and people whose only order was three months ago (win-back).
    """
    rng = random.Random(seed + 3)
    status: dict[str, str] = {}
    for event in people:
        data = event["data"]
        if event["type"] == "consent_changed" and data["channel"] == "email":
            status[data["customer"]["email"]] = data["status"]  # events are in time order per person
    reachable = sorted(email for email, state in status.items() if state == "subscribed")
    buyers = {order["data"]["customer"]["email"] for order in orders}
    never_bought = [email for email in reachable if email not in buyers]
    visitors = rng.sample(reachable, 12)
    chosen = set(visitors)
    thanked = rng.sample([e for e in reachable if e not in chosen], 3)
    chosen.update(thanked)
    lapsed = rng.sample([e for e in never_bought if e not in chosen], 4)

    events: list[dict] = []
    moments: list[dict] = []  # a phase of their own: a moment finds its buyer on an order already stored

    def basket() -> dict[str, dict]:
        lines: dict[str, dict] = {}
        for _ in range(rng.randint(1, 3)):
            sku, title, _, price, _ = rng.choice(PRODUCTS)
            lines.setdefault(sku, {"sku": sku, "title": title, "quantity": 0, "price": price})["quantity"] += 1
        return lines

    def cart(cart_id: str, email: str, at: datetime, lines: dict[str, dict]) -> dict:
        return _event(f"showcase:cart:{cart_id}", "cart_updated", at, {
            "cart_id": cart_id, "customer": {"email": email}, "items": [dict(x) for x in lines.values()],
            "total": _total(lines), "currency": "EUR", "recovery_url": f"{DEMO_WEBSITE}/carrito/{cart_id}/recuperar"})

    ago = [40, 55, 70, 85, 100, 115, 35, 50, 65, 80, 29, 29.5]  # minutes before seeding
    for number, (email, minutes) in enumerate(zip(visitors, ago, strict=True)):
        events.append(cart(f"demo-cart-recent-{number + 1:02d}", email, now - timedelta(minutes=minutes), basket()))
    for number, email in enumerate(thanked + lapsed):
        recent = number < len(thanked)
        placed = now - (timedelta(hours=rng.randint(2, 8)) if recent else timedelta(days=90, hours=rng.randint(2, 60)))
        lines = basket()
        cart_id = f"demo-cart-showcase-{number + 1:02d}"
        order_id = f"LT-{'H' if recent else 'W'}{number + 1}"
        events.append(cart(cart_id, email, placed - timedelta(minutes=rng.randint(5, 20)), lines))
        events.append(_event(f"showcase:order:{order_id}:placed", "order_placed", placed, {
            "order_id": order_id, "cart_id": cart_id, "customer": {"email": email},
            "items": [dict(x) for x in lines.values()], "total": _total(lines), "currency": "EUR"}))
        if not recent:
            moments.append(_event(f"showcase:order:{order_id}:delivered", "order_delivered",
                                  placed + timedelta(days=2), {"order_id": order_id}))
    return [events, moments]


def _total(lines: dict[str, dict]) -> str:
    return str(sum((Decimal(line["price"]) * line["quantity"] for line in lines.values()), Decimal("0")))


def _consents(rng: random.Random, ref: str, identity: dict, person: dict, joined: datetime, now: datetime) -> list[dict]:
    events = []
    wanted = {"email": 0.75, "sms": 0.4 if "phone" in person else 0.0, "social_dm": 0.5 if "handles" in person else 0.0}
    for channel, chance in wanted.items():
        if rng.random() >= chance:
            continue
        source, text = rng.choice(_CONSENT_SOURCES[channel])
        evidence = {"text": text, "ip": f"203.0.113.{rng.randint(1, 254)}"}
        at = joined + timedelta(seconds=rng.randint(5, 600))
        if channel == "email" and source == "newsletter_form":
            # Double opt-in: pending until the link in the confirmation e-mail is followed.
            events.append(_event(f"{ref}:{channel}:pending", "consent_changed", at, {
                "customer": identity, "channel": channel, "status": "pending_confirmation", "source": source,
                "evidence": evidence}))
            if rng.random() < 0.15:
                continue  # never confirmed
            at += timedelta(minutes=rng.randint(2, 180))
            evidence = {**evidence, "confirmed_via": "enlace de confirmación"}
        events.append(_event(f"{ref}:{channel}:subscribed", "consent_changed", at, {
            "customer": identity, "channel": channel, "status": "subscribed", "source": source, "evidence": evidence}))
        if rng.random() < 0.12:
            left = at + (now - at) * rng.random()
            events.append(_event(f"{ref}:{channel}:unsubscribed", "consent_changed", left, {
                "customer": identity, "channel": channel, "status": "unsubscribed",
                "source": "unsubscribe_link" if channel == "email" else "reply_stop",
                "evidence": {"text": "Baja solicitada por el cliente."}}))
    return events


def _order_moments(rng: random.Random, order_id: str, placed: datetime, now: datetime) -> list[dict]:
    if rng.random() < 0.06:
        at = placed + timedelta(hours=rng.randint(1, 20))
        if at < now:
            return [_event(f"order:{order_id}:cancelled", "order_cancelled", at,
                           {"order_id": order_id, "reason": rng.choice(["Pedido duplicado", "Sin stock", "El cliente cambió de opinión"])})]
        return []
    events = []
    fulfilled = placed + timedelta(hours=rng.randint(6, 40))
    if fulfilled < now:
        events.append(_event(f"order:{order_id}:fulfilled", "order_fulfilled", fulfilled, {
            "order_id": order_id, "tracking_url": f"https://seguimiento.example/envios/{order_id}"}))
        delivered = fulfilled + timedelta(hours=rng.randint(20, 96))
        if delivered < now:
            events.append(_event(f"order:{order_id}:delivered", "order_delivered", delivered, {"order_id": order_id}))
    return events


def demo_store_seed(*, slug: str = DEMO_SLUG, seed: int = DEMO_SEED, now: datetime | None = None) -> DemoSummary:
    """Create the demo store and feed it its history; all or nothing."""
    now = now or datetime.now(UTC)
    limit = settings.TERTULIA_MAX_BATCH
    stored = 0
    with transaction.atomic():
        store = store_create(slug=slug, name=DEMO_NAME, currency="EUR", language="es",
                             timezone_name="Europe/Madrid", website_url=DEMO_WEBSITE)
        # Every journey on from the start: the worker's first sweeps enroll the showcase's shoppers.
        from tertulia.journeys.definitions import journeys_ensure_defaults

        journeys_ensure_defaults(store=store)
        # No quiet hours in the demo: whoever starts it at night still sees the recovery e-mails within a
        # minute (a real store keeps the 21:00-08:00 default, or sets its own).
        from datetime import time as clock

        from tertulia.channels.rules import delivery_settings_update

        delivery_settings_update(store=store, quiet_hours_start=clock(0, 0), quiet_hours_end=clock(0, 0))
        for phase in demo_events_build(seed=seed, now=now):
            for offset in range(0, len(phase), limit):
                stored += events_ingest(store=store, events=phase[offset:offset + limit], source="demo",
                                        now=now).accepted
        demo_community_seed(store=store, seed=seed, now=now)
    return DemoSummary(store=store, events=stored)


def demo_community_seed(*, store: Store, seed: int = DEMO_SEED, now: datetime) -> int:
    """Reviews (some negative, some answered by the store), questions and answers that make the FAQ, comments,
    testimonials and a forum thread, written through ugc's services so moderation judges each one."""
    from tertulia.ugc.demo import community_seed

    return community_seed(store=store, seed=seed, now=now)
