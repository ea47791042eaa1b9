"""Mentions from posts: what is kept, classified and linked, stored once; conversations opened for them."""

from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from tertulia.catalog.services import products_upsert
from tertulia.customers.services import customer_resolve
from tertulia.inbox.models import Conversation, Message
from tertulia.listening.connectors import Post
from tertulia.listening.models import Mention, MentionHour
from tertulia.listening.selectors import matchers_forget
from tertulia.listening.services import mentions_ingest, tracked_term_add, tracked_terms_sync_catalogue

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_matchers():
    matchers_forget()
    yield
    matchers_forget()


@pytest.fixture
def tracked(store):
    tracked_term_add(store=store, term="La Tertulia", kind="brand")
    tracked_term_add(store=store, term="#tertuliashop", kind="hashtag")
    tracked_term_add(store=store, term="tarta de queso", kind="keyword", exclude=True)
    return store


def post(external_id, text, *, kind="post", at=None, network="mastodon", **extra):
    return Post(network=network, external_id=external_id, text=text, kind=kind,
                posted_at=at or timezone.now() - timedelta(minutes=1), **extra)


def test_posts_naming_a_term_are_kept_classified_and_stored_once(tracked):
    posts = [
        post("1", "¿Tenéis envíos a Canarias en La Tertulia?"),
        post("2", "Hoy hace sol en Madrid"),
        post("3", "La Tertulia tiene la mejor tarta de queso"),  # an exclude rule wins
        post("4", "Qué desastre de pedido, La Tertulia no contesta #tertuliashop"),
    ]
    result = mentions_ingest(store_id=tracked.pk, posts=posts)
    assert (result.heard, result.stored, result.ignored, result.duplicates) == (4, 2, 2, 0)
    stored = {m.external_id: m for m in Mention.objects.for_store(tracked)}
    assert set(stored) == {"1", "4"}
    assert stored["1"].intent == "question" and stored["1"].language == "es"
    assert stored["4"].sentiment == "negative" and stored["4"].intent == "complaint"
    assert stored["4"].terms == ["#tertuliashop", "La Tertulia"]

    again = mentions_ingest(store_id=tracked.pk, posts=posts + [posts[0]])
    assert (again.stored, again.duplicates) == (0, 3)
    assert Mention.objects.for_store(tracked).count() == 2
    hour = MentionHour.objects.for_store(tracked).get()
    assert (hour.total, hour.negative, hour.question, hour.complaint) == (2, 1, 1, 1)


def test_posts_addressed_to_the_store_are_kept_whatever_they_say(tracked):
    result = mentions_ingest(store_id=tracked.pk, posts=[
        post("d1", "hola, una pregunta sobre mi pedido", kind="direct", author_handle="ana@social.example"),
        post("m1", "@tienda gracias por todo, y por la tarta de queso", kind="mention"),
    ])
    assert result.stored == 2


def test_products_named_are_linked_and_authors_matched_to_customers(store):
    products_upsert(store=store, products=[(timezone.now(), {"sku": "ACE-001", "title": "Aceite Picual"})])
    tracked_terms_sync_catalogue(store=store)
    ana = customer_resolve(store=store, identities=[("mastodon", "ana@social.example")])
    mentions_ingest(store_id=store.pk, posts=[post("p1", "¿El Aceite Picual llega en lata?",
                                                   author_handle="@Ana@social.example")])
    mention = Mention.objects.for_store(store).get()
    assert [p.sku for p in mention.products.all()] == ["ACE-001"]
    assert mention.customer_id == ana.pk


def test_an_invalid_post_is_refused_and_nothing_is_stored(tracked):
    bad = post("", "La Tertulia")
    with pytest.raises(ValueError, match="external_id"):
        mentions_ingest(store_id=tracked.pk, posts=[post("ok", "La Tertulia mola"), bad])
    naive = Post(network="mastodon", external_id="n", text="La Tertulia", posted_at=datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="aware"):
        mentions_ingest(store_id=tracked.pk, posts=[naive])
    assert not Mention.objects.exists()


def test_questions_and_complaints_open_conversations_and_replies_join_them(tracked):
    mentions_ingest(store_id=tracked.pk, posts=[
        post("10", "¿La Tertulia abre el domingo?", author_handle="luis@a.example", author_name="Luis"),
        post("11", "Me encanta La Tertulia, todo genial", author_handle="eva@a.example"),  # praise: listening only
    ])
    conversation = Conversation.objects.for_store(tracked).get()
    assert (conversation.kind, conversation.network, conversation.contact_handle) == ("mention", "mastodon",
                                                                                       "luis@a.example")
    assert conversation.status == "open" and conversation.first_response_due_at is not None
    mentions_ingest(store_id=tracked.pk, posts=[
        post("12", "@latertulia ¿y el sábado?", kind="mention", in_reply_to="10", author_handle="luis@a.example")])
    assert Conversation.objects.for_store(tracked).count() == 1
    assert list(Message.objects.filter(conversation=conversation).values_list("external_id", flat=True)) == ["10", "12"]


def test_direct_messages_from_one_person_share_a_conversation(tracked):
    for number in range(3):
        mentions_ingest(store_id=tracked.pk, posts=[
            post(f"dm{number}", f"mensaje {number}", kind="direct", author_id="77", author_handle="ana@b.example",
                 at=datetime(2026, 12, 1, 10, number, tzinfo=UTC))])
    conversation = Conversation.objects.for_store(tracked).get()
    assert conversation.kind == "direct" and conversation.message_count == 3


def test_other_names_of_a_product_link_it_and_survive_catalogue_sync(store):
    products_upsert(store=store, products=[(timezone.now(), {"sku": "IBE-001", "title": "Jamón ibérico 100 g"})])
    from tertulia.catalog.models import Product

    ham = Product.objects.get(sku="IBE-001")
    tracked_term_add(store=store, term="jamón de bellota", product=ham)
    with pytest.raises(ValueError, match="keyword"):
        tracked_term_add(store=store, term="jamón", kind="product", product=ham)
    tracked_terms_sync_catalogue(store=store)
    mentions_ingest(store_id=store.pk, posts=[post("h1", "El jamon de bellota que compré, una pasada")])
    assert [p.sku for p in Mention.objects.get().products.all()] == ["IBE-001"]


def test_catalogue_changes_reach_the_tracked_terms_within_a_sweep(store):
    from tertulia.listening.runner import listen_once
    from tertulia.listening.services import _catalogue_seen

    _catalogue_seen.clear()
    products_upsert(store=store, products=[(timezone.now(), {"sku": "TUR-1", "title": "Turrón de Jijona"})])
    listen_once(worker="w")
    mentions_ingest(store_id=store.pk, posts=[post("t1", "El turrón de jijona de este año está buenísimo")])
    assert [p.sku for p in Mention.objects.get().products.all()] == ["TUR-1"]
