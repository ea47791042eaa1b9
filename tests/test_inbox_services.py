"""The inbox's services: threads, priority, SLA, round-robin with a cap, replies as deliveries, notes, presence."""

from datetime import timedelta

import pytest
from django.test import override_settings
from django.utils import timezone

from tertulia.catalog.models import Product
from tertulia.catalog.services import products_upsert
from tertulia.channels.models import Delivery
from tertulia.core.errors import ApiError
from tertulia.core.services import membership_grant
from tertulia.inbox import canned
from tertulia.inbox.models import AgentNotification, Conversation, ConversationEvent, Message
from tertulia.inbox.priority import priority_level, priority_score
from tertulia.inbox.selectors import conversations_view, response_times, viewers
from tertulia.inbox.services import (
    canned_reply_set,
    conversation_status_set,
    inbox_settings_update,
    note_add,
    presence_touch,
    reply_send,
    team_set,
)
from tertulia.inbox.sweep import inbox_sweep
from tertulia.listening.connectors import Post
from tertulia.listening.selectors import matchers_forget
from tertulia.listening.services import mentions_ingest, tracked_term_add
from tertulia.listening.sources import source_set

pytestmark = pytest.mark.django_db
FAKE = override_settings(TERTULIA_LISTENING_CONNECTORS={"mastodon": "listening_fake_connector"})


@pytest.fixture(autouse=True)
def _setup(store):
    matchers_forget()
    tracked_term_add(store=store, term="Tertulia", kind="brand")
    store.timezone = "UTC"
    store.save()
    # Always open, so SLA arithmetic is plain time here (business hours have their own tests).
    inbox_settings_update(store=store, changes={"business_hours": {}})
    with FAKE:
        yield


@pytest.fixture
def source(store):
    return source_set(store=store, network="mastodon", key="social", settings={}, secrets={"token": "t"})


def agent(django_user_model, store, name, role="agent"):
    user = django_user_model.objects.create_user(name, email=f"{name}@example.com", password="x", first_name=name.title())
    membership_grant(store=store, user=user, role=role)
    return user


def hear(store, source, external_id, text="¿Tertulia envía a Canarias?", **extra):
    extra.setdefault("author_handle", f"p{external_id}@social.example")
    mentions_ingest(store_id=store.pk, source_id=source.pk if source else None, posts=[Post(
        network="mastodon", external_id=external_id, text=text, posted_at=timezone.now() - timedelta(seconds=30),
        reply_ref={"visibility": "public", "acct": extra["author_handle"]}, **extra)])
    return Conversation.objects.for_store(store).order_by("-id").first()


def test_priority_weighs_intent_sentiment_reach_and_directness():
    calm = priority_score(intent="other", sentiment="neutral")
    angry = priority_score(intent="complaint", sentiment="negative", sentiment_score=-0.9, reach=20_000)
    assert calm < priority_score(intent="question") < angry
    assert priority_level(angry) == "urgent" and priority_level(calm) == "low"
    assert priority_score(intent="question", direct=True) > priority_score(intent="question")
    assert priority_score(intent="complaint", toxicity=0.95) < priority_score(intent="complaint")


def test_round_robin_respects_the_cap_and_availability(store, source, django_user_model):
    ana, luis, eva = (agent(django_user_model, store, n) for n in ("ana", "luis", "eva"))
    team = team_set(store=store, name="Atención", member_ids=[ana.pk, luis.pk, eva.pk], max_open_per_agent=2)
    from tertulia.inbox.services import team_member_available

    team_member_available(store=store, team_id=team.pk, user_id=eva.pk, available=False)
    assignees = [hear(store, source, str(n)).assignee_id for n in range(5)]
    assert assignees == [ana.pk, luis.pk, ana.pk, luis.pk, None]  # eva is away; then both are at the cap
    waiting = Conversation.objects.get(assignee__isnull=True)
    assert list(conversations_view(store=store, view="unassigned")) == [waiting]
    assert AgentNotification.objects.filter(user=ana, kind="assigned").count() == 2

    first = Conversation.objects.filter(assignee=ana).order_by("id").first()
    conversation_status_set(store=store, conversation_id=first.pk, status="resolved", actor=ana)
    inbox_sweep(wide=False)
    waiting.refresh_from_db()
    assert waiting.assignee_id == ana.pk and waiting.team_id == team.pk


def test_answers_thread_back_and_a_new_message_reopens(store, source, django_user_model):
    ana = agent(django_user_model, store, "ana")
    conversation = hear(store, source, "100", author_handle="marta@social.example")
    assert conversation.first_response_due_at == conversation.created_at + timedelta(minutes=240)  # normal: 4 h
    message = reply_send(store=store, conversation_id=conversation.pk, user=ana, text="¡Sí, en 72 horas!")
    delivery = message.delivery
    assert (delivery.channel, delivery.to_address, delivery.reply_to, delivery.sender) == (
        "mastodon", "marta@social.example", "100", f"source:{source.pk}")
    assert delivery.reply_context["visibility"] == "public" and delivery.customer_id is None
    conversation.refresh_from_db()
    assert conversation.status == "pending" and conversation.assignee_id == ana.pk
    assert conversation.first_responder_id == ana.pk and conversation.first_response_seconds is not None

    Delivery.objects.filter(pk=delivery.pk).update(provider_message_id="200", sent_at=timezone.now())
    inbox_sweep(wide=False)  # our reply's platform id joins the thread
    hear(store, source, "201", text="gracias, ¿y a Baleares?", in_reply_to="200", author_handle="marta@social.example")
    conversation.refresh_from_db()
    assert Conversation.objects.count() == 1 and conversation.status == "open"
    assert ConversationEvent.objects.filter(conversation=conversation, kind="reopened").exists()


def test_a_reply_someone_else_sent_meanwhile_stops_yours(store, source, django_user_model):
    ana, luis = agent(django_user_model, store, "ana"), agent(django_user_model, store, "luis")
    conversation = hear(store, source, "300")
    seen = Message.objects.filter(conversation=conversation).last().pk
    reply_send(store=store, conversation_id=conversation.pk, user=luis, text="Hola", seen_message_id=seen)
    with pytest.raises(ApiError) as error:
        reply_send(store=store, conversation_id=conversation.pk, user=ana, text="Hola", seen_message_id=seen)
    assert error.value.status == 409 and "Luis" in error.value.message
    assert Delivery.objects.count() == 1
    reply_send(store=store, conversation_id=conversation.pk, user=ana, text="Ampliando lo de Luis")  # sent anyway
    assert Delivery.objects.count() == 2


@pytest.mark.parametrize("text, code", [("", "required"), ("x" * 490, "too_long")])
def test_replies_are_checked_against_the_network(store, source, django_user_model, text, code):
    ana = agent(django_user_model, store, "ana")
    conversation = hear(store, source, "400")
    with pytest.raises(ApiError) as error:
        reply_send(store=store, conversation_id=conversation.pk, user=ana, text=text)
    assert error.value.details[0].code == code and not Delivery.objects.exists()


def test_posts_from_feeds_cannot_be_answered_here(store, django_user_model):
    ana = agent(django_user_model, store, "ana")
    mentions_ingest(store_id=store.pk, posts=[Post(network="rss", external_id="e1", title="Reseña",
                                                   text="Tertulia: un desastre de envío", posted_at=timezone.now())])
    conversation = Conversation.objects.get()
    with pytest.raises(ApiError) as error:
        reply_send(store=store, conversation_id=conversation.pk, user=ana, text="Lo sentimos")
    assert error.value.code == "cannot_reply"


def test_widget_questions_become_conversations_answered_on_the_product_page(store, django_user_model):
    from tertulia.ugc.models import Answer, Question
    from tertulia.ugc.services import Author, question_ask

    ana = agent(django_user_model, store, "ana")
    products_upsert(store=store, products=[(timezone.now(), {"sku": "QS-1", "title": "Queso"})])
    product = Product.objects.get(sku="QS-1")
    question_ask(store=store, product=product, text="¿Es de leche cruda?",
                 author=Author(display_name="Pilar", email="pilar@example.com"))
    question = Question.objects.get()
    assert question.status == "published", question.moderation
    assert inbox_sweep(wide=True)["questions"] == 1
    assert inbox_sweep(wide=True)["questions"] == 0  # once
    conversation = Conversation.objects.get(kind="question")
    reply_send(store=store, conversation_id=conversation.pk, user=ana, text="Sí, de leche cruda de oveja.",
               resolve=True)
    answer = Answer.objects.get()
    assert answer.by_staff and answer.status == "published" and answer.question_id == question.pk
    notice = Delivery.objects.get()
    assert notice.to_address == "pilar@example.com" and "leche cruda de oveja" in notice.body_text
    conversation.refresh_from_db()
    assert conversation.status == "resolved" and conversation.resolution_seconds is not None


def test_notes_mention_teammates_and_nobody_outside_the_store(store, source, django_user_model, other_store):
    ana, luis = agent(django_user_model, store, "ana"), agent(django_user_model, store, "luis")
    stranger = django_user_model.objects.create_user("olga", password="x")
    membership_grant(store=other_store, user=stranger, role="agent")
    conversation = hear(store, source, "500")
    note = note_add(store=store, conversation_id=conversation.pk, user=ana, text="@luis ¿lo miras? @olga @ana")
    assert list(note.mentioned_users.all()) == [luis]
    assert AgentNotification.objects.filter(kind="mentioned").count() == 1
    assert not Delivery.objects.exists()  # a note never leaves the team


def test_presence_warns_of_the_other_agent(store, source, django_user_model):
    ana, luis = agent(django_user_model, store, "ana"), agent(django_user_model, store, "luis")
    conversation = hear(store, source, "600")
    assert presence_touch(store=store, conversation_id=conversation.pk, user=ana) == []
    others = presence_touch(store=store, conversation_id=conversation.pk, user=luis, composing=True)
    assert others == [{"user_id": ana.pk, "name": "Ana", "composing": False}]
    assert viewers(store=store, conversation_id=conversation.pk, exclude_user_id=ana.pk)[0]["composing"] is True
    later = timezone.now() + timedelta(minutes=1)
    assert viewers(store=store, conversation_id=conversation.pk, now=later) == []


def test_snoozed_conversations_wake_up(store, source):
    conversation = hear(store, source, "700")
    with pytest.raises(ApiError):
        conversation_status_set(store=store, conversation_id=conversation.pk, status="snoozed")
    conversation_status_set(store=store, conversation_id=conversation.pk, status="snoozed",
                            snoozed_until=timezone.now() + timedelta(hours=2))
    assert inbox_sweep(now=timezone.now() + timedelta(hours=1), wide=False)["woken"] == 0
    assert inbox_sweep(now=timezone.now() + timedelta(hours=3), wide=False)["woken"] == 1
    conversation.refresh_from_db()
    assert conversation.status == "open"


def test_canned_replies_refuse_unknown_variables_and_fill_known_ones(store):
    with pytest.raises(ApiError) as error:
        canned_reply_set(store=store, shortcut="envio", title="Envío", body_es="Hola {{ nombre }}",
                         body_en="Hi {% if x %}")
    assert {d.field for d in error.value.details} == {"body_es", "body_en"}
    row = canned_reply_set(store=store, shortcut="envio", title="Envío", body_es="Hola {{ customer_name }}, gracias.",
                           body_en="Hi {{customer_name}}, thanks.")
    assert canned.render(row.body_es, {"customer_name": "Marta"}) == "Hola Marta, gracias."
    assert canned.render(row.body_en, {}) == "Hi, thanks."


def test_response_times_per_agent_in_business_seconds(store, source, django_user_model):
    ana = agent(django_user_model, store, "ana")
    conversation = hear(store, source, "800")
    reply_send(store=store, conversation_id=conversation.pk, user=ana, text="Hola")
    (row,) = response_times(store=store, since=timezone.now() - timedelta(days=1))
    assert (row.key, row.conversations, row.answered, row.breached) == ("ana", 1, 1, 0)
    assert 0 <= row.first_response_median < 120


def test_errors_speak_the_agents_language(store, source, django_user_model):
    from django.utils import translation

    ana = agent(django_user_model, store, "ana")
    conversation = hear(store, source, "900")
    with translation.override("es"), pytest.raises(ApiError) as error:
        reply_send(store=store, conversation_id=conversation.pk, user=ana, text="  ")
    assert error.value.message == "Escribe la respuesta." and error.value.details[0].code == "required"
