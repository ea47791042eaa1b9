"""A person's export and erasure reach what listening heard them say and their conversations with the team."""

import pytest
from django.utils import timezone

from tertulia.customers.privacy import customer_erase, customer_export
from tertulia.customers.services import customer_resolve
from tertulia.inbox.models import Conversation, Message
from tertulia.listening.connectors import Post
from tertulia.listening.models import Mention
from tertulia.listening.selectors import matchers_forget
from tertulia.listening.services import mentions_ingest, tracked_term_add

pytestmark = pytest.mark.django_db


def test_export_and_erase_cover_mentions_and_conversations(store):
    matchers_forget()
    tracked_term_add(store=store, term="Tertulia", kind="brand")
    ana = customer_resolve(store=store, identities=[("mastodon", "ana@social.example"), ("email", "ana@example.com")])
    mentions_ingest(store_id=store.pk, posts=[
        Post(network="mastodon", external_id="1", text="¿Tertulia tiene mi pedido 123 de Ana García?",
             posted_at=timezone.now(), author_handle="ana@social.example", author_name="Ana García"),
        Post(network="email", external_id="<a1@example.com>", kind="direct", title="Mi pedido",
             text="Hola, soy Ana, calle Mayor 1", posted_at=timezone.now(), author_handle="ana@example.com"),
    ])
    exported = customer_export(store=store, customer_id=ana.pk)
    assert [m["external_id"] for m in exported["mentions"]] == ["1", "<a1@example.com>"]  # by handle and address
    assert len(exported["conversations"]) == 2 and len(exported["conversation_messages"]) == 2

    erasure = customer_erase(store=store, customer_id=ana.pk)
    assert (erasure.mentions_scrubbed, erasure.conversations_scrubbed) == (2, 2)
    for mention in Mention.objects.all():
        assert (mention.text, mention.author_handle, mention.author_name, mention.customer_id) == ("", "", "", None)
        assert mention.sentiment  # the figures stay
    for conversation in Conversation.objects.all():
        assert (conversation.contact_handle, conversation.subject, conversation.customer_id) == ("", "", None)
    assert set(Message.objects.values_list("text", flat=True)) == {""}
    again = customer_erase(store=store, customer_id=ana.pk)
    assert (again.mentions_scrubbed, again.conversations_scrubbed) == (0, 0)
