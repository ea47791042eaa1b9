"""The demo store's community: reviews (good, middling and bad, some answered by the store), questions with
answers from staff and buyers (the FAQ), comments, testimonials and a forum thread.

Everything is written through ugc.services, so moderation judges each piece as it would a shopper's.
The same seed gives the same community; times fall in the 45 days before `now`.
"""

import random
from datetime import datetime, timedelta

from django.contrib.auth import get_user_model

from tertulia.catalog.models import Category, Product
from tertulia.commerce.models import Order, OrderStatus
from tertulia.core.models import Store
from tertulia.customers.models import Customer
from tertulia.ugc import services
from tertulia.ugc.services import Author

# Reviews are put together from parts, so no two read alike (moderation rightly holds copied texts).
_OPEN = {
    "good": ["Tal y como lo describen.", "Un acierto total.", "Me ha encantado.", "Calidad de verdad, se nota.",
             "Muy contenta con la compra.", "Sabor auténtico, nada que ver con lo del supermercado.",
             "Repetiría sin dudarlo.", "Mejor de lo que esperaba."],
    "fine": ["Está bien, sin más.", "Correcto, aunque no me ha sorprendido.", "Cumple lo que promete, poco más.",
             "Ni bueno ni malo.", "Esperaba algo más por el precio."],
    "bad": ["No me ha convencido.", "Decepcionante.", "No lo volvería a comprar.", "Me esperaba mucho más.",
            "Una pena, tenía buenas referencias.", "No ha estado a la altura."],
}
_PURPOSE = ["para una cena con amigos", "para regalar a mis padres", "para probar algo distinto",
            "para la comida de Navidad", "para el día a día en casa", "para una cata con la familia",
            "por recomendación de una compañera", "después de verlo en redes"]
_DELIVERY = {
    "good": ["El envío llegó en dos días y muy bien embalado.", "Venía con una nota escrita a mano, un detalle bonito.",
             "El paquete llegó antes de lo previsto.", "Todo llegó perfecto y bien protegido."],
    "fine": ["El envío tardó algo más de lo previsto.", "El embalaje era justo, pero llegó entero.",
             "La entrega fue correcta."],
    "bad": ["La caja llegó golpeada y un envase roto.", "El envío se retrasó más de una semana.",
            "La fecha de consumo preferente era muy cercana y nadie avisó.",
            "Escribí a atención al cliente y tardaron días en contestar."],
}
_CLOSE = {
    "good": ["Volveré a pedir.", "Lo recomiendo.", "Cinco estrellas merecidas.", "Ya he pedido otro."],
    "fine": ["Para el día a día vale.", "Quizá pruebe otra variedad.", "Aceptable."],
    "bad": ["No creo que repita.", "Espero que lo mejoren.", "Por ese precio no compensa."],
}
_TITLES = {5: ["Excelente", "De diez", "Un acierto"], 4: ["Muy bueno", "Recomendable", "Rico"], 3: ["Correcto", "Normal"],
           2: ["Regular", "No me convenció"], 1: ["Decepcionante", "Llegó dañado"]}
_REVIEWS_EN = [
    (5, "Lovely", "Bought the {p} as a gift for my parents in Madrid and they loved it. Fast delivery, well packed."),
    (4, "Very good", "Really tasty {p}, well packed. Shipping to the UK took a week, which is fair enough."),
    (2, "Not for me", "The {p} seems fine but the flavour was too strong for my taste, and delivery was slow."),
]


def _review_text(rng: random.Random, rating: int, title: str) -> str:
    band = "good" if rating >= 4 else ("fine" if rating == 3 else "bad")
    return " ".join([rng.choice(_OPEN[band]), f"Pedí {title.lower()} {rng.choice(_PURPOSE)}.",
                     rng.choice(_DELIVERY[band]), rng.choice(_CLOSE[band])])


_REPLIES = {
    1: "Sentimos mucho lo ocurrido. Te hemos escrito para enviarte uno nuevo sin coste; gracias por contárnoslo.",
    2: "Gracias por tu opinión sincera. Hemos revisado los plazos con la agencia de transporte para que no se repita.",
}
# Category id -> (question, staff answer, buyer answer)
_QUESTIONS = {
    "aceites": ("¿Es de primera prensa en frío?", "Sí, extracción en frío por debajo de 27 °C, de la última cosecha.",
                "Yo lo uso en crudo y se nota el frutado; para freír uso otro más suave."),
    "conservas": ("¿Cuánto aguanta una vez abierta la lata?", "Pásalo a un recipiente de cristal con su aceite y consúmelo en dos o tres días, en nevera.",
                  "A mí me dura un par de días en la nevera cubierto de aceite, sin problema."),
    "especias": ("¿Pierde aroma con el tiempo?", "Guárdalo cerrado, lejos de la luz y del calor: mantiene el aroma más de un año.",
                 "En un bote hermético me ha durado meses sin perder nada."),
    "vinos": ("¿A qué temperatura se sirve?", "Los tintos entre 14 y 16 °C; los blancos y el cava, entre 6 y 8 °C.",
              "Yo lo meto media hora en la nevera antes de abrirlo y queda perfecto."),
    "cafes": ("¿Sirve para cafetera italiana?", "Sí; para italiana recomendamos molienda media. El de grano lo molemos si lo pides.",
              "Lo uso en la italiana todos los días y sale muy bien."),
    "quesos": ("¿Hay que conservarlo en la nevera?", "Sí, envuelto en papel de quesería; sácalo media hora antes de comerlo.",
               "En la parte baja de la nevera envuelto en papel, y aguanta semanas."),
    "ibericos": ("¿Viene envasado al vacío?", "Sí, loncheado y al vacío; ábrelo unos minutos antes y a temperatura ambiente.",
                 "Viene al vacío y con las lonchas separadas por papel, muy cómodo."),
    "dulces": ("¿Lleva gluten?", "Los turrones no llevan gluten; los polvorones sí, porque llevan harina de trigo.",
               "Mi hija es celíaca y el turrón de Jijona lo toma sin problema."),
    "regalos": ("¿Se puede enviar con un mensaje de regalo?", "Sí: escribe el mensaje en las notas del pedido y lo incluimos a mano.",
                "Lo mandé a casa de mis padres con una nota y llegó perfecto."),
}
_TESTIMONIALS = [
    (5, "Lucía M.", "Siempre llega todo a tiempo y bien embalado. Da gusto comprar en una tienda que cuida los detalles."),
    (5, "Javier", "Me ayudaron por teléfono a elegir un lote para la empresa y acertamos de pleno."),
    (4, "Emma", "Great Spanish products delivered to London. Customer service answered within the hour."),
    (4, "", "Buenos productos y buenos precios. Mejoraría el seguimiento del envío."),
]
_COMMENTS = [
    ("¿Alguien lo ha probado en tostadas con tomate por la mañana?", ["Es como mejor está, con un poco de sal en escamas.",
                                                                       "Yo le añado un poco de ajo y queda de lujo."]),
]
_THREAD = ("¿Cómo conserváis el aceite una vez abierto?",
           "Tengo varias botellas abiertas y no sé si la luz de la cocina les afecta. ¿Qué hacéis vosotros?",
           ["Lejos de la luz y del calor, y con el tapón bien cerrado. En lata aguanta mejor que en botella clara.",
            "Yo lo paso a una aceitera opaca y compro formatos pequeños para gastarlo antes de que pierda aroma."])


def _short(title: str) -> str:
    return title.split(" ")[0].lower() if title else "el producto"


def _buyers(store: Store) -> dict[str, list[int]]:
    """Customers who bought each SKU (not cancelled), in a stable order."""
    buyers: dict[str, list[int]] = {}
    orders = (Order.objects.for_store(store).filter(customer__isnull=False).exclude(status=OrderStatus.CANCELLED)
              .order_by("id").values_list("customer_id", "items"))
    for customer_id, items in orders:
        for line in items or []:
            sku = line.get("sku") if isinstance(line, dict) else None
            if sku and customer_id not in buyers.setdefault(sku, []):
                buyers[sku].append(customer_id)
    return buyers


def _name(customer: Customer | None, rng: random.Random) -> str:
    if customer is None or rng.random() < 0.15:
        return ""  # anonymous
    initial = f" {customer.last_name[:1]}." if customer.last_name else ""
    return f"{customer.first_name}{initial}".strip()


def community_seed(*, store: Store, seed: int, now: datetime) -> int:
    """Seed the community of the demo store; returns how many pieces of content were written."""
    rng = random.Random(seed + 4)
    written = 0
    staff, _ = get_user_model().objects.get_or_create(username="equipo-demo", defaults={"first_name": "Equipo"})
    buyers = _buyers(store)
    customers = {c.pk: c for c in Customer.objects.for_store(store)}
    products = list(Product.objects.for_store(store).select_related("category").order_by("id"))
    start = now - timedelta(days=45)

    def moment() -> datetime:
        return start + timedelta(minutes=rng.randint(0, 44 * 24 * 60))

    for index, product in enumerate(products):
        count = rng.choice([0, 2, 3, 3, 4, 5, 6]) if index % 7 else 8
        people = list(buyers.get(product.sku, []))
        rng.shuffle(people)
        for n in range(count):
            customer_id = people[n] if n < len(people) else None
            customer = customers.get(customer_id) if customer_id else None
            english = customer is not None and customer.language == "en"
            if english:
                rating, title, text = rng.choice(_REVIEWS_EN)
                text = text.format(p=_short(product.title))
            else:
                rating = rng.choice([5, 5, 5, 4, 4, 4, 3, 3, 2, 1])
                title, text = rng.choice(_TITLES[rating]), _review_text(rng, rating, product.title)
            result = services.review_submit(
                store=store, product=product, rating=rating, title=title, text=text,
                author=Author(display_name=_name(customer, rng), customer_id=customer_id,
                              device_id=f"demo-device-{index:03d}-{n:02d}"),
                language="en" if english else "es", now=moment())
            written += 1
            if result.status == "published" and rating <= 2 and rng.random() < 0.8:
                services.store_reply(store=store, review_id=result.id, text=_REPLIES[rating], user=staff)
            if result.status == "published":
                for voter in range(rng.randint(0, 4)):
                    services.vote_cast(store=store, content_type="review", object_id=result.id,
                                       device_id=f"demo-voter-{voter:03d}-{index:03d}")

    for index, product in enumerate(products):
        category = product.category
        entry = _QUESTIONS.get(category.external_id if category else "")
        if entry is None or index % 2:
            continue
        question_text, staff_text, buyer_text = entry
        asked_at = moment()
        question = services.question_ask(store=store, product=product, text=question_text,
                                         author=Author(device_id=f"demo-asker-{index:03d}"), now=asked_at)
        written += 1
        if question.status != "published":
            continue
        services.answer_post(store=store, question_id=question.id, text=staff_text, staff_user=staff,
                             now=min(now, asked_at + timedelta(hours=rng.randint(1, 6))))
        people = buyers.get(product.sku, [])
        if people:
            buyer = customers.get(people[0])
            answer = services.answer_post(store=store, question_id=question.id, text=buyer_text,
                                          author=Author(display_name=_name(buyer, rng), customer_id=people[0],
                                                        device_id=f"demo-buyer-{index:03d}"),
                                          now=min(now, asked_at + timedelta(hours=rng.randint(6, 72))))
            if answer.status == "published":
                for voter in range(rng.randint(1, 5)):
                    services.vote_cast(store=store, content_type="answer", object_id=answer.id,
                                       device_id=f"demo-voter-{voter:03d}-q{index:03d}")
        written += 2

    if products:
        text, replies = _COMMENTS[0]
        root = services.comment_post(store=store, product=products[0], text=text,
                                     author=Author(display_name="Pilar", device_id="demo-comment-000"), now=moment())
        for n, reply in enumerate(replies):
            if root.status == "published":
                services.comment_post(store=store, product=products[0], text=reply, parent_id=root.id,
                                      author=Author(display_name=["Andrés", "Nerea"][n % 2],
                                                    device_id=f"demo-comment-{n + 1:03d}"), now=moment())
        written += 1 + len(replies)
    for n, (rating, name, text) in enumerate(_TESTIMONIALS):
        services.testimonial_submit(store=store, text=text, rating=rating,
                                    author=Author(display_name=name, device_id=f"demo-testimonial-{n:03d}"),
                                    language="en" if n == 2 else "es", now=moment())
        written += 1
    forum_category = Category.objects.for_store(store).filter(external_id="aceites").first()
    if forum_category is not None:
        title, text, replies = _THREAD
        thread = services.forum_post(store=store, category=forum_category, title=title, text=text,
                                     author=Author(display_name="Marta", device_id="demo-forum-000"), now=moment())
        if thread.status == "published":
            for n, reply in enumerate(replies):
                services.forum_post(store=store, thread_id=thread.id, text=reply,
                                    author=Author(display_name=["Rubén", "Sofía"][n], device_id=f"demo-forum-{n + 1:03d}"),
                                    now=moment())
        written += 1 + len(replies)
    return written
