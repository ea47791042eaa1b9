"""A replayed stream of social posts about the demo store, in Spanish and English, for `tertulia demo`.

The texts were written for this project (its licence applies) in the shapes people use on Mastodon,
Bluesky and X: questions before buying, complaints about a delivery, praise, purchase intent, comparison
with a competitor, advice, chatter that names nothing the store tracks. `DemoReplay` feeds them to the
sandbox servers (listening.sandbox.*) over time, so the demo's connectors hear them exactly as they would
hear the real platforms, and the listening view and the inbox fill while one watches. Some authors are
demo customers (their handles are on their profiles), so the inbox shows their orders beside the post.
"""

import logging
import random
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

log = logging.getLogger("tertulia.demo")

# Product aliases the demo store tracks, linked to the product (people write "jamón ibérico", not the SKU).
ALIASES: dict[str, list[str]] = {
    "ACE-001": ["aceite picual"],
    "CON-002": ["anchoas del Cantábrico"],
    "IBE-001": ["jamón ibérico de bellota", "jamón de bellota"],
    "DUL-001": ["turrón de Jijona"],
    "QUE-003": ["Torta del Casar"],
    "VIN-005": ["cava brut nature"],
    "REG-003": ["lote Navidad en casa", "lote de Navidad"],
    "CAF-001": ["café de Colombia"],
    "ESP-003": ["azafrán de La Mancha"],
    "QUE-001": ["manchego curado"],
}
BRAND_TERMS = ["La Tertulia", "Ultramarinos La Tertulia", "#latertulia", "@latertulia"]
COMPETITOR_TERMS = ["Delicatessen Quintana"]
EXCLUDED_TERMS = ["tertulia literaria"]  # the word is common: a book club is not the shop

# (language, kind, text): {product} is one of the aliases above, {store} the shop's handle.
POSTS: list[tuple[str, str, str]] = [
    ("es", "post", "¿Alguien ha comprado el {product} de La Tertulia? ¿Merece la pena o es marketing?"),
    ("es", "post", "Llevo 10 días esperando mi pedido de La Tertulia y nadie contesta. Fatal."),
    ("es", "post", "Qué maravilla el {product} de Ultramarinos La Tertulia, repetiré seguro 😍"),
    ("es", "post", "Quiero comprar el {product} para Navidad, ¿La Tertulia envía a Canarias?"),
    ("es", "post", "El {product} me llegó roto y La Tertulia todavía no me ha devuelto el dinero."),
    ("es", "post", "Comparando el {product} de La Tertulia con el de Delicatessen Quintana: el de La Tertulia gana."),
    ("es", "post", "#latertulia hoy cena con {product} y un buen tinto. Gracias por el envío tan rápido."),
    ("es", "post", "¿Cuánto tarda La Tertulia en enviar a Valencia? Necesito el {product} para el sábado."),
    ("es", "post", "Me lo voy a pedir ya: el {product} de La Tertulia está de oferta."),
    ("es", "post", "Pésima experiencia con La Tertulia: paquete abierto y sin {product}."),
    ("es", "post", "Recomiendo mucho La Tertulia, atención al cliente de diez."),
    ("es", "post", "¿El {product} de La Tertulia lleva lactosa? Mi hija es intolerante."),
    ("es", "post", "Regalé el {product} de La Tertulia y triunfé. Buenísimo."),
    ("es", "post", "No entiendo por qué La Tertulia cobra 9 € de envío, es un abuso."),
    ("es", "post", "¿Dónde puedo comprar el {product}? Lo probé en casa de un amigo, era de La Tertulia."),
    ("es", "post", "Esta tarde tertulia literaria en la biblioteca, ¡venid!"),
    ("es", "post", "Hoy he hecho paella con el {product} y ha quedado de lujo. #latertulia"),
    ("es", "post", "¿Tiene La Tertulia tienda física en Madrid o solo online?"),
    ("es", "post", "El pedido de La Tertulia llegó tarde y con el {product} caducado. No vuelvo."),
    ("es", "post", "Ojo: La Tertulia tiene el {product} al mismo precio que Delicatessen Quintana pero con envío gratis."),
    ("es", "mention", "{store} ¿me podéis decir si el {product} es apto para celíacos?"),
    ("es", "mention", "{store} mi pedido 1042 no ha llegado, ¿qué pasa?"),
    ("es", "mention", "{store} gracias por el detalle que venía en la caja, ¡qué bonito!"),
    ("es", "mention", "{store} ¿hacéis lotes de empresa? Queremos 40 cestas de Navidad."),
    ("es", "mention", "{store} el repartidor dejó la caja en la calle bajo la lluvia. Muy mal."),
    ("es", "mention", "{store} ¿cuándo volvéis a tener el {product}? Lo quiero comprar."),
    ("es", "mention", "{store} sois los mejores, el {product} estaba espectacular"),
    ("es", "direct", "Hola, os escribo por privado: me cobrasteis dos veces el pedido. ¿Podéis revisarlo?"),
    ("es", "direct", "Buenas, ¿me podéis mandar factura del último pedido a nombre de mi empresa?"),
    ("es", "direct", "Hola, quiero cambiar la dirección de entrega de mi pedido de hoy, ¿es posible?"),
    ("en", "post", "Has anyone tried the {product} from La Tertulia? Thinking of ordering some."),
    ("en", "post", "La Tertulia shipped my order to London in three days. Impressive!"),
    ("en", "post", "Still waiting for my La Tertulia order after two weeks. Not happy at all."),
    ("en", "post", "I want to buy the {product} from La Tertulia as a gift, do they ship to Ireland?"),
    ("en", "post", "The {product} from La Tertulia is the best I've had outside Spain. #latertulia"),
    ("en", "post", "La Tertulia or Delicatessen Quintana for Spanish ham? Which one is better?"),
    ("en", "post", "Terrible customer service from La Tertulia, my box arrived crushed."),
    ("en", "post", "Ordering the {product} from La Tertulia tonight, can't wait."),
    ("en", "mention", "{store} is the {product} suitable for vegetarians?"),
    ("en", "mention", "{store} my parcel has been stuck in customs for a week, can you help?"),
    ("en", "mention", "{store} thank you, the {product} was a hit at our dinner party!"),
    ("en", "direct", "Hi! I'd like to change the delivery date of my order, is that possible?"),
]
# A run of complaints the replay sends close together once, so the demo shows a negative-spike alert.
SPIKE: list[tuple[str, str, str]] = [
    ("es", "post", "Otra vez sin noticias de mi pedido de La Tertulia. Esto es un desastre."),
    ("es", "post", "La Tertulia no responde ni al teléfono ni al correo. Vergüenza."),
    ("es", "post", "Pedido de La Tertulia perdido, y encima me piden que espere. Lamentable."),
    ("es", "post", "Tercera semana esperando a La Tertulia. No lo recomiendo a nadie."),
    ("en", "post", "La Tertulia lost my order and won't answer. Awful."),
    ("es", "post", "¿Soy el único al que La Tertulia no le ha entregado nada este mes? Fatal."),
    ("es", "post", "Me arrepiento de haber comprado en La Tertulia, qué mal servicio."),
]
# Authors who are not customers of the demo store.
STRANGERS: dict[str, list[tuple[str, str]]] = {
    "mastodon": [("lucia_cocina@mastodon.social", "Lucía"), ("pepe_gourmet@mastodon.online", "Pepe"),
                 ("foodie_madrid@mastodon.social", "Foodie Madrid"), ("ann_travels@mastodon.social", "Ann")],
    "bluesky": [("marta-come.bsky.social", "Marta"), ("tapasfan.bsky.social", "Tapas Fan"),
                ("jorge.bsky.social", "Jorge")],
    "x": [("chef_ramon", "Ramón"), ("spanishfoodlover", "S. Food Lover"), ("laura_vlc", "Laura")],
}


@dataclass(slots=True)
class ReplayPost:
    network: str
    language: str
    kind: str  # post, mention, direct
    text: str
    author_handle: str
    author_name: str
    followers: int
    age_seconds: float = 0.0  # how long ago it was written (the opening burst is the last days' history)


def replay_posts(*, seed: int = 7, customers: dict[str, list[tuple[str, str]]] | None = None,
                 networks: Sequence[str] = ("mastodon", "bluesky", "x"), store_handles: dict[str, str] | None = None,
                 rounds: int = 3) -> list[ReplayPost]:
    """The demo's stream in order: every post of the corpus on each network in turn, some by customers."""
    rng = random.Random(seed)  # noqa: S311 - demo data, not security
    customers = customers or {}
    store_handles = store_handles or {}
    out: list[ReplayPost] = []
    aliases = [alias for names in ALIASES.values() for alias in names]
    for round_number in range(rounds):
        corpus = list(POSTS)
        rng.shuffle(corpus)
        for index, (language, kind, text) in enumerate(corpus):
            network = networks[(index + round_number) % len(networks)]
            people = (customers.get(network) or []) if rng.random() < 0.4 else []
            handle, name = rng.choice(people or STRANGERS[network])
            body = text.format(product=rng.choice(aliases), store=store_handles.get(network, "@latertulia"))
            out.append(ReplayPost(network=network, language=language, kind=kind, text=body, author_handle=handle,
                                  author_name=name, followers=int(rng.lognormvariate(4.5, 1.6))))
    return out


def spike_posts(*, networks: Sequence[str] = ("mastodon", "bluesky", "x")) -> list[ReplayPost]:
    out = []
    for index, (language, kind, text) in enumerate(SPIKE):
        network = networks[index % len(networks)]
        handle, name = STRANGERS[network][index % len(STRANGERS[network])]
        out.append(ReplayPost(network=network, language=language, kind=kind, text=text, author_handle=handle,
                              author_name=name, followers=150 + 40 * index))
    return out


class DemoReplay:
    """Publishes the stream through `publish(post)` (one callable per network): a burst at once, then one post
    every `interval` seconds, and the spike of complaints once after `spike_after` posts."""

    def __init__(self, *, publishers: dict[str, Callable[[ReplayPost], None]], posts: list[ReplayPost],
                 burst: int = 24, interval: float = 20.0, spike_after: int = 36) -> None:
        self.publishers = publishers
        self.posts = [p for p in posts if p.network in publishers]
        self.burst = burst
        self.interval = interval
        self.spike_after = spike_after
        self.stop = threading.Event()
        self.published = 0
        self.thread = threading.Thread(target=self._run, name="demo-replay", daemon=True)

    def start(self) -> "DemoReplay":
        self.thread.start()
        return self

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=5)

    def _publish(self, post: ReplayPost) -> None:
        try:
            self.publishers[post.network](post)
            self.published += 1
        except Exception:  # noqa: BLE001 - the demo's replay must never take the demo down
            log.exception("demo replay could not publish a post", extra={"network": post.network})

    def _run(self) -> None:
        spiked = False
        for index, post in enumerate(self.posts):
            if self.stop.is_set():
                return
            if index >= self.burst and self.stop.wait(self.interval):
                return
            if index < self.burst:
                # The opening burst is what was said over the last two days (a baseline for the spike alert),
                # the oldest first; the rest is said now.
                post.age_seconds = (self.burst - index) * 2 * 3600.0
            self._publish(post)
            if not spiked and index + 1 >= self.spike_after:
                spiked = True
                for complaint in spike_posts(networks=[n for n in ("mastodon", "bluesky", "x")
                                                       if n in self.publishers]):
                    self._publish(complaint)
