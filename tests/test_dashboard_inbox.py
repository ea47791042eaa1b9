"""Dashboard inbox through HTTP: views and filters, a conversation's page, replies, notes, assignment, status,
presence, roles, store isolation, the settings pages, and a reply that really leaves over SMTP."""

import email
import email.policy
import re
from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest
from conftest import make_event
from django.contrib.auth import get_user_model
from django.test import Client, override_settings
from django.utils import timezone
from fakes.smtp import SmtpServer

from tertulia.channels.adapters.email import connections_close
from tertulia.channels.dispatch import dispatch_run
from tertulia.channels.models import Delivery
from tertulia.channels.registry import adapters_forget
from tertulia.core.services import membership_grant
from tertulia.events.services import events_ingest
from tertulia.inbox import services
from tertulia.inbox.models import (
    AgentNotification,
    CannedReply,
    Conversation,
    InboxSettings,
    Message,
    Presence,
    Team,
)
from tertulia.listening.connectors import Post
from tertulia.listening.models import Source
from tertulia.listening.selectors import matchers_forget
from tertulia.listening.services import mentions_ingest

pytestmark = pytest.mark.django_db
PASSWORD = "a-long-staff-password"


@pytest.fixture(autouse=True)
def _setup(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    matchers_forget()
    adapters_forget()
    yield
    connections_close()
    adapters_forget()
    matchers_forget()


def member(store, role, name, first_name=""):
    user = get_user_model().objects.create_user(name, password=PASSWORD, first_name=first_name)
    membership_grant(store=store, user=user, role=role)
    return user


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def mail(external_id, text, *, author="ana@example.com", name="Ana García", title="¿Dónde está mi pedido?",
         at=None, in_reply_to="", network="email", kind="direct", **extra):
    return Post(network=network, kind=kind, external_id=external_id, text=text, title=title, author_handle=author,
                author_name=name, posted_at=at or timezone.now() - timedelta(minutes=10), in_reply_to=in_reply_to,
                **extra)


def hear(store, *posts):
    mentions_ingest(store_id=store.pk, posts=list(posts))


def conversation_of(store, external_id) -> Conversation:
    return Message.objects.for_store(store).get(external_id=external_id).conversation


def listed(response) -> list[int]:
    return [int(n) for n in re.findall(r'class="inbox-row[^"]*"[^>]*data-conversation="(\d+)"', response.content.decode())]


@pytest.fixture
def agent(store):
    return member(store, "agent", "lucia", "Lucía")


@pytest.fixture
def inbox(store, agent):
    """Three e-mails and a post heard through an inbound webhook, one of them past its first-answer target."""
    hear(store, mail("<m1@example.com>", "Hola, mi pedido no ha llegado y estoy harta. ¿Qué pasa?"))
    hear(store, mail("<m2@example.com>", "¿Tenéis la taza grande en azul?", author="bea@example.com", name="Bea",
                     title="Taza azul"))
    hear(store, mail("<m3@example.com>", "Gracias por todo", author="carla@example.com", name="Carla",
                     title="Gracias"))
    hear(store, mail("hook:1", "¿Abrís el domingo?", network="webhook", kind="mention", author="@dani", name="Dani",
                     title=""))
    one, two, three, hook = (conversation_of(store, key) for key in
                             ("<m1@example.com>", "<m2@example.com>", "<m3@example.com>", "hook:1"))
    services.conversation_assign(store=store, conversation_id=two.pk, assignee_id=agent.pk)
    Conversation.objects.filter(pk=one.pk).update(first_response_due_at=timezone.now() - timedelta(minutes=5))
    services.conversation_status_set(store=store, conversation_id=three.pk, status="resolved")
    return {"one": one, "two": two, "three": three, "hook": hook}


# --- access ---------------------------------------------------------------------------------------------

def test_pages_need_a_signed_in_member(client, store, inbox):
    one = inbox["one"]
    for path in ("/app/inbox/", f"/app/inbox/{one.pk}/", "/app/inbox/canned/", "/app/inbox/settings/"):
        response = client.get(path)
        assert response.status_code == 302 and response["Location"].startswith("/app/login/")
    response = client.post(f"/app/inbox/{one.pk}/presence/", {"composing": "1"})
    assert response.status_code == 401 and response.json()["error"]["code"] == "not_authenticated"
    stranger = get_user_model().objects.create_user("nadie", password=PASSWORD)
    assert signed_in(stranger).get("/app/inbox/").status_code == 403


def test_another_stores_conversation_is_not_found(store, other_store, inbox):
    hear(other_store, mail("<x1@example.com>", "Hola desde la otra tienda", author="otra@example.com"))
    theirs = conversation_of(other_store, "<x1@example.com>")
    client = signed_in(member(store, "owner", "olga"))
    assert client.get(f"/app/inbox/{theirs.pk}/").status_code == 404
    for action, data in (("reply", {"text": "hola"}), ("note", {"text": "nota"}), ("assign", {"assignee": "me"}),
                         ("status", {"status": "resolved"}), ("priority", {"priority": "low"})):
        assert client.post(f"/app/inbox/{theirs.pk}/{action}/", data).status_code == 404
    response = client.post(f"/app/inbox/{theirs.pk}/presence/", {"composing": "0"})
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
    assert theirs.pk not in listed(client.get("/app/inbox/?view=all"))
    assert not Message.objects.for_store(other_store).filter(direction="outbound").exists()
    theirs.refresh_from_db()
    assert theirs.status == "open" and theirs.priority != "low"


# --- the list -------------------------------------------------------------------------------------------

def test_views_have_counts_and_each_lists_its_conversations(store, agent, inbox):
    client = signed_in(agent)
    one, two, three, hook = inbox["one"], inbox["two"], inbox["three"], inbox["hook"]
    page = client.get("/app/inbox/")
    assert page.status_code == 200
    assert listed(page) == [two.pk]  # an agent with conversations of their own starts with "mine"
    body = page.content.decode()
    assert re.search(r'data-view="mine">[^<]*<span class="count">1</span>', body)
    assert re.search(r'data-view="open">[^<]*<span class="count">3</span>', body)
    assert re.search(r'data-view="breaching">[^<]*<span class="count count-bad">1</span>', body)
    assert set(listed(client.get("/app/inbox/?view=unassigned"))) == {one.pk, hook.pk}
    assert listed(client.get("/app/inbox/?view=breaching")) == [one.pk]
    assert listed(client.get("/app/inbox/?view=resolved")) == [three.pk]
    assert set(listed(client.get("/app/inbox/?view=all"))) == {one.pk, two.pk, three.pk, hook.pk}
    team = services.team_set(store=store, name="Atención", member_ids=[agent.pk], auto_assign=False)
    services.conversation_assign(store=store, conversation_id=hook.pk, team_id=team.pk)
    assert listed(client.get(f"/app/inbox/?view=team&team={team.pk}")) == [hook.pk]


def test_filters_by_kind_network_priority_and_text(store, agent, inbox):
    client = signed_in(agent)
    one, two, hook = inbox["one"], inbox["two"], inbox["hook"]
    assert listed(client.get("/app/inbox/?view=open&kind=mention")) == [hook.pk]
    assert listed(client.get("/app/inbox/?view=open&network=webhook")) == [hook.pk]
    assert set(listed(client.get("/app/inbox/?view=open&network=email"))) == {one.pk, two.pk}
    assert listed(client.get("/app/inbox/?view=open&q=taza")) == [two.pk]
    assert listed(client.get("/app/inbox/?view=open&q=bea@example")) == [two.pk]
    services.conversation_priority_set(store=store, conversation_id=one.pk, priority="urgent")
    assert listed(client.get("/app/inbox/?view=open&priority=urgent")) == [one.pk]
    # Unknown values are ignored rather than trusted.
    assert set(listed(client.get("/app/inbox/?view=open&kind=<b>&network=nope"))) == {one.pk, two.pk, hook.pk}


def test_a_row_shows_priority_contact_assignee_and_an_overdue_sla_in_red(store, agent, inbox):
    body = signed_in(agent).get("/app/inbox/?view=open").content.decode()
    row_one = body[body.index(f'data-conversation="{inbox["one"].pk}"'):]
    row_one = row_one[: row_one.index("</li>")]
    assert "¿Dónde está mi pedido?" in row_one and "Ana García" in row_one and "ana@example.com" in row_one
    assert "Correo electrónico" in row_one  # Spanish, the default language
    assert 'class="sla sla-breached"' in row_one and "Vencido" in row_one and "Sin asignar" in row_one
    priority = inbox["one"].priority
    assert f'<span class="prio prio-{priority}">' in row_one
    row_two = body[body.index(f'data-conversation="{inbox["two"].pk}"'):]
    row_two = row_two[: row_two.index("</li>")]
    assert '<span class="inbox-assignee">Lucía</span>' in row_two
    assert "sla-breached" not in row_two and "Vence" in row_two


# --- one conversation -----------------------------------------------------------------------------------

def test_the_page_shows_the_thread_the_person_and_their_orders(store, agent, inbox):
    events_ingest(store=store, events=[make_event("order_placed", {
        "order_id": "o-77", "customer": {"email": "ana@example.com", "first_name": "Ana"}, "currency": "EUR",
        "total": "30.00", "items": [{"sku": "TAZA", "quantity": 1, "price": "30.00"}]})])
    hear(store, mail("<m4@example.com>", "Sigo esperando", in_reply_to="<m1@example.com>",
                     at=timezone.now() - timedelta(minutes=2)))
    one = inbox["one"]
    services.reply_send(store=store, conversation_id=one.pk, user=agent, text="Lo miramos ahora mismo.")
    failed = services.reply_send(store=store, conversation_id=one.pk, user=agent, text="Segundo intento.")
    Delivery.objects.filter(pk=failed.delivery_id).update(status="failed", reason="permanent_error",
                                                          detail="550 5.1.1 No such user here")
    services.note_add(store=store, conversation_id=one.pk, user=agent, text="Revisar con almacén")
    one.refresh_from_db()
    # Heard before the order, the first e-mail had nobody to link; the second brought the person with it.
    assert one.customer_id == Message.objects.for_store(store).get(external_id="<m4@example.com>").mention.customer_id
    assert one.customer_id is not None
    body = signed_in(agent).get(f"/app/inbox/{one.pk}/").content.decode()
    thread = body[body.index('<ol class="thread"'):body.index("</ol>", body.index('<ol class="thread"'))]
    kinds = re.findall(r'class="(msg msg-\w+|thread-event[^"]*)"', thread)
    assert kinds.count("msg msg-inbound") == 2 and kinds.count("msg msg-outbound") == 2 and kinds.count("msg msg-note") == 1
    assert any(k.startswith("thread-event") for k in kinds)
    assert thread.index("mi pedido no ha llegado") < thread.index("Sigo esperando") < thread.index("Lo miramos")
    assert 'data-delivery="scheduled"' in thread and 'data-delivery="failed"' in thread
    assert "550 5.1.1 No such user here" in thread
    assert "Revisar con almacén" in thread
    assert "Conversación abierta" in thread and "Fallido" in thread
    person = body[body.index('class="panel conv-person"'):]
    assert f'href="/app/customers/{one.customer_id}/"' in person
    assert "o-77" in person
    assert 'data-limit="20000"' in body  # an e-mail's limit


def test_a_reply_without_scripts_goes_out_as_a_delivery_and_can_resolve(store, agent, inbox):
    client = signed_in(agent)
    one = inbox["one"]
    page = client.get(f"/app/inbox/{one.pk}/?back=view%3Dbreaching")
    seen = re.search(r'name="seen_message_id" value="(\d+)"', page.content.decode())[1]
    response = client.post(f"/app/inbox/{one.pk}/reply/", {
        "text": "Hola Ana, ya está en camino.", "action": "send", "seen_message_id": seen, "back": "view=breaching"})
    assert response.status_code == 302
    assert response["Location"] == f"/app/inbox/{one.pk}/?back=view%3Dbreaching"
    delivery = Delivery.objects.for_store(store).get(channel="email")
    assert (delivery.to_address, delivery.reply_to, delivery.subject) == (
        "ana@example.com", "<m1@example.com>", "Re: ¿Dónde está mi pedido?")
    assert delivery.body_text == "Hola Ana, ya está en camino."
    one.refresh_from_db()
    assert one.status == "pending" and one.assignee_id == agent.pk and one.first_response_at is not None
    page = client.get(response["Location"])
    assert "notice-ok" in page.content.decode()
    assert 'href="/app/inbox/?view=breaching" id="inbox-back"' in page.content.decode()

    response = client.post(f"/app/inbox/{inbox['two'].pk}/reply/", {"text": "Sí, la tenemos.", "action": "resolve"})
    assert response.status_code == 302
    two = Conversation.objects.get(pk=inbox["two"].pk)
    assert two.status == "resolved" and two.resolved_by_id == agent.pk


def test_reply_errors_are_shown_beside_the_box_and_keep_the_text(store, agent, inbox):
    client = signed_in(agent)
    one = inbox["one"]
    response = client.post(f"/app/inbox/{one.pk}/reply/", {"text": "   ", "action": "send"})
    assert response.status_code == 422
    body = response.content.decode()
    assert re.search(r'<p class="field-error" id="reply-text-error">[^<]+</p>', body)
    assert 'aria-invalid="true"' in body

    source = Source.objects.create(store=store, network="mastodon", key="cuenta")
    hear(store, Post(network="mastodon", kind="mention", external_id="109", text="@tienda ¿hacéis envíos?",
                     posted_at=timezone.now() - timedelta(minutes=3), author_handle="eva@social.example",
                     author_name="Eva"))
    toot = conversation_of(store, "109")
    Conversation.objects.filter(pk=toot.pk).update(source=source)
    long_text = "x" * 490
    response = client.post(f"/app/inbox/{toot.pk}/reply/", {"text": long_text, "action": "send"})
    assert response.status_code == 422
    body = response.content.decode()
    error = re.search(r'id="reply-text-error">([^<]+)<', body)[1]
    assert "480" in error  # 500 minus the "@eva@social.example " a Mastodon reply starts with
    assert long_text in body  # the text stays in the box
    assert not Delivery.objects.for_store(store).exists()

    hook = inbox["hook"]
    page = client.get(f"/app/inbox/{hook.pk}/").content.decode()
    assert 'id="reply-form"' not in page and "notice-warn" in page
    response = client.post(f"/app/inbox/{hook.pk}/reply/", {"text": "Sí, de 10 a 14.", "action": "send"})
    assert response.status_code == 422
    assert re.search(r'id="reply-form-error">[^<]*webhook', response.content.decode())


def test_someone_elses_answer_meanwhile_answers_409_and_send_anyway_sends(store, agent, inbox):
    marta = member(store, "agent", "marta", "Marta")
    client = signed_in(agent)
    one = inbox["one"]
    seen = re.search(r'name="seen_message_id" value="(\d+)"',
                     client.get(f"/app/inbox/{one.pk}/").content.decode())[1]
    services.reply_send(store=store, conversation_id=one.pk, user=marta, text="Ya te lo he mirado yo.")
    response = client.post(f"/app/inbox/{one.pk}/reply/", {"text": "Mi respuesta", "seen_message_id": seen,
                                                           "action": "send"})
    assert response.status_code == 409
    body = response.content.decode()
    assert 'id="reply-changed"' in body and "Marta" in body
    assert 'name="force" value="1"' in body and "Mi respuesta" in body and "Ya te lo he mirado yo." in body
    assert Message.objects.for_store(store).filter(direction="outbound").count() == 1
    response = client.post(f"/app/inbox/{one.pk}/reply/", {"text": "Mi respuesta", "seen_message_id": seen,
                                                           "force": "1"})
    assert response.status_code == 302
    assert Message.objects.for_store(store).filter(direction="outbound").count() == 2


def test_the_canned_picker_without_scripts_fills_the_reply_in_the_chosen_language(store, agent, inbox):
    store.website_url = "https://tienda.example"
    store.save()
    reply = services.canned_reply_set(
        store=store, shortcut="envio", title="Envío en camino",
        body_es="Hola {{ customer_name }}, soy {{ agent_name }} de {{ store_name }}. {{ store_url }}",
        body_en="Hi {{ customer_name }}, this is {{ agent_name }} from {{ store_name }}. {{ order_number }}")
    client = signed_in(agent)
    one = inbox["one"]
    body = client.get(f"/app/inbox/{one.pk}/").content.decode()
    assert 'name="language" value="es" checked' in body  # the conversation's language (Spanish)
    assert "Envío en camino" in body and 'id="inbox-canned-data"' in body
    body = client.get(f"/app/inbox/{one.pk}/?canned={reply.pk}&lang=en").content.decode()
    text = re.search(r'<textarea id="reply-text"[^>]*>([^<]*)</textarea>', body)[1]
    assert text == "Hi Ana García, this is Lucía from Tienda de prueba."
    assert f'id="reply-canned-id" value="{reply.pk}"' in body
    body = client.get(f"/app/inbox/{one.pk}/?canned={reply.pk}").content.decode()
    assert "Hola Ana García, soy Lucía de Tienda de prueba. https://tienda.example" in body
    response = client.post(f"/app/inbox/{one.pk}/reply/", {"text": "Hola", "canned_reply_id": str(reply.pk)})
    assert response.status_code == 302
    assert Message.objects.for_store(store).get(direction="outbound").canned_reply_id == reply.pk


def test_a_note_mentioning_someone_notifies_them_until_they_open_it(store, agent, inbox):
    marta = member(store, "community_manager", "marta", "Marta")
    one = inbox["one"]
    response = signed_in(agent).post(f"/app/inbox/{one.pk}/note/", {"text": "@marta ¿lo miras tú? <b>urge</b>"})
    assert response.status_code == 302
    note = Message.objects.for_store(store).get(direction="note")
    assert list(note.mentioned_users.all()) == [marta]
    theirs = signed_in(marta)
    page = theirs.get("/app/inbox/?view=open").content.decode()
    assert 'data-badge="inbox"' in page
    notes = page[page.index('class="panel inbox-notifications"'):]
    assert f'href="/app/inbox/{one.pk}/"' in notes
    body = theirs.get(f"/app/inbox/{one.pk}/").content.decode()
    assert "@marta ¿lo miras tú? &lt;b&gt;urge&lt;/b&gt;" in body and "<b>urge</b>" not in body
    assert not AgentNotification.objects.for_store(store).filter(user=marta, read_at__isnull=True).exists()
    page = theirs.get("/app/inbox/?view=open").content.decode()
    assert 'class="panel inbox-notifications"' not in page
    response = signed_in(agent).post(f"/app/inbox/{one.pk}/note/", {"text": ""})
    assert response.status_code == 422 and 'id="note-text-error"' in response.content.decode()


def test_assign_status_snooze_and_priority_forms(store, agent, inbox):
    client = signed_in(agent)
    one = inbox["one"]
    marta = member(store, "agent", "marta")
    team = services.team_set(store=store, name="Soporte", member_ids=[agent.pk, marta.pk], auto_assign=False)
    assert client.post(f"/app/inbox/{one.pk}/assign/", {"assignee": "me"}).status_code == 302
    assert Conversation.objects.get(pk=one.pk).assignee_id == agent.pk
    assert client.post(f"/app/inbox/{one.pk}/assign/", {"assignee": str(marta.pk), "team": str(team.pk)}).status_code == 302
    one.refresh_from_db()
    assert (one.assignee_id, one.team_id) == (marta.pk, team.pk)
    assert AgentNotification.objects.for_store(store).filter(user=marta, kind="assigned").exists()
    analyst = member(store, "analyst", "ana_lista")
    response = client.post(f"/app/inbox/{one.pk}/assign/", {"assignee": str(analyst.pk)})
    assert response.status_code == 422 and 'id="assignee-error"' in response.content.decode()
    assert client.post(f"/app/inbox/{one.pk}/assign/", {"assignee": ""}).status_code == 302
    assert Conversation.objects.get(pk=one.pk).assignee_id is None

    assert client.post(f"/app/inbox/{one.pk}/status/", {"status": "pending"}).status_code == 302
    assert Conversation.objects.get(pk=one.pk).status == "pending"
    later = (timezone.localtime(timezone.now(), ZoneInfo(store.timezone)) + timedelta(days=2)).strftime("%Y-%m-%dT%H:%M")
    assert client.post(f"/app/inbox/{one.pk}/status/", {"status": "snoozed", "until": later}).status_code == 302
    one.refresh_from_db()
    assert one.status == "snoozed" and one.snoozed_until > timezone.now() + timedelta(days=1)
    for bad in ("", "mañana", "2001-01-01T10:00"):
        response = client.post(f"/app/inbox/{one.pk}/status/", {"status": "snoozed", "until": bad})
        assert response.status_code == 422 and 'id="snooze-error"' in response.content.decode()
    assert client.post(f"/app/inbox/{one.pk}/status/", {"status": "resolved"}).status_code == 302
    assert Conversation.objects.get(pk=one.pk).status == "resolved"
    assert 'id="inbox-reopen"' in client.get(f"/app/inbox/{one.pk}/").content.decode()
    assert client.post(f"/app/inbox/{one.pk}/status/", {"status": "open"}).status_code == 302
    assert Conversation.objects.get(pk=one.pk).status == "open"
    assert client.post(f"/app/inbox/{one.pk}/priority/", {"priority": "urgent"}).status_code == 302
    assert Conversation.objects.get(pk=one.pk).priority == "urgent"
    assert client.post(f"/app/inbox/{one.pk}/priority/", {"priority": "extreme"}).status_code == 422
    body = client.get(f"/app/inbox/{one.pk}/").content.decode()
    assert "thread-event" in body and "Urgente" in body


def test_presence_says_who_else_is_here_and_who_is_writing(store, agent, inbox):
    marta = member(store, "agent", "marta", "Marta")
    one = inbox["one"]
    mine, theirs = signed_in(agent), signed_in(marta)
    assert 'data-viewer' not in mine.get(f"/app/inbox/{one.pk}/").content.decode()
    body = theirs.get(f"/app/inbox/{one.pk}/").content.decode()
    assert re.search(r"<p data-viewer>Lucía [^<]+</p>", body)  # the server says so too, without scripts
    response = mine.post(f"/app/inbox/{one.pk}/presence/", {"composing": "1"}, headers={"Accept": "application/json"})
    assert response.status_code == 200
    payload = response.json()
    assert [v["name"] for v in payload["viewers"]] == ["Marta"] and payload["viewers"][0]["composing"] is False
    assert payload["newest_message_id"] == Message.objects.for_store(store).filter(conversation=one).latest("id").pk
    viewers = theirs.post(f"/app/inbox/{one.pk}/presence/", {"composing": "0"}).json()["viewers"]
    assert viewers[0]["name"] == "Lucía" and viewers[0]["composing"] is True
    assert "Lucía" in viewers[0]["text"]
    mine.post(f"/app/inbox/{one.pk}/presence/", {"leave": "1"})
    assert theirs.post(f"/app/inbox/{one.pk}/presence/", {}).json()["viewers"] == []
    assert Presence.objects.for_store(store).filter(user=marta).exists()
    assert mine.get(f"/app/inbox/{one.pk}/presence/").status_code == 405


def test_readers_see_no_forms_and_their_posts_are_forbidden(store, inbox):
    one = inbox["one"]
    for role in ("analyst", "moderator"):
        client = signed_in(member(store, role, f"{role}1"))
        body = client.get(f"/app/inbox/{one.pk}/").content.decode()
        assert "mi pedido no ha llegado" in body
        for form in ('id="reply-form"', 'id="note-form"', 'id="inbox-resolve"', 'id="inbox-assign-me"'):
            assert form not in body
        for action, data in (("reply", {"text": "hola"}), ("note", {"text": "nota"}), ("assign", {"assignee": "me"}),
                             ("status", {"status": "resolved"}), ("priority", {"priority": "low"})):
            assert client.post(f"/app/inbox/{one.pk}/{action}/", data).status_code == 403
        response = client.post(f"/app/inbox/{one.pk}/reply/", {"text": "hola"}, headers={"Accept": "application/json"})
        assert response.status_code == 403 and response.json()["error"]["code"] == "forbidden"
        assert client.get("/app/inbox/canned/").status_code == 403
    assert not Message.objects.for_store(store).exclude(direction="inbound").exists()
    one.refresh_from_db()
    assert one.status == "open" and one.assignee_id is None


# --- settings ---------------------------------------------------------------------------------------

def test_canned_replies_are_created_edited_and_deleted_with_errors_beside_their_fields(store, agent):
    client = signed_in(member(store, "community_manager", "carmen"))
    assert client.get("/app/inbox/canned/new/").status_code == 200
    response = client.post("/app/inbox/canned/new/", {"shortcut": "gracias", "title": "Gracias",
                                                      "body_es": "Gracias {{ nombre }}", "body_en": ""})
    assert response.status_code == 422
    body = response.content.decode()
    assert re.search(r'id="body-es-error">[^<]*nombre', body) and 'id="body-en-error"' in body
    assert not CannedReply.objects.for_store(store).exists()
    response = client.post("/app/inbox/canned/new/", {"shortcut": "gracias", "title": "Gracias",
                                                      "body_es": "Gracias, {{ customer_name }}.",
                                                      "body_en": "Thank you, {{ customer_name }}."})
    assert response.status_code == 302
    reply = CannedReply.objects.for_store(store).get()
    response = client.post("/app/inbox/canned/new/", {"shortcut": "gracias", "title": "Otra", "body_es": "a",
                                                      "body_en": "b"})
    assert response.status_code == 422 and 'id="shortcut-error"' in response.content.decode()
    assert CannedReply.objects.for_store(store).get().title == "Gracias"
    page = client.get(f"/app/inbox/canned/{reply.pk}/").content.decode()
    assert "{{ customer_name }}" in page and "order_number" in page  # the variables are listed
    response = client.post(f"/app/inbox/canned/{reply.pk}/", {"title": "Gracias de nuevo",
                                                              "body_es": "Gracias otra vez.", "body_en": "Thanks again."})
    assert response.status_code == 302
    reply.refresh_from_db()
    assert (reply.shortcut, reply.title, reply.body_en) == ("gracias", "Gracias de nuevo", "Thanks again.")
    assert "gracias" in client.get("/app/inbox/canned/").content.decode()
    assert client.post(f"/app/inbox/canned/{reply.pk}/delete/").status_code == 302
    assert not CannedReply.objects.for_store(store).exists()
    assert client.post(f"/app/inbox/canned/{reply.pk}/delete/").status_code == 404
    agent_client = signed_in(agent)
    assert agent_client.get("/app/inbox/canned/").status_code == 403
    assert agent_client.post("/app/inbox/canned/new/", {"shortcut": "x", "title": "x", "body_es": "x",
                                                        "body_en": "x"}).status_code == 403
    assert not CannedReply.objects.for_store(store).exists()


def test_teams_are_created_and_edited(store, agent):
    marta = member(store, "agent", "marta")
    analyst = member(store, "analyst", "ana_lista")
    client = signed_in(member(store, "manager", "manu"))
    response = client.post("/app/inbox/teams/", {"name": "Soporte", "members": [str(agent.pk), str(marta.pk)],
                                                 "away": [str(marta.pk)], "auto_assign": "on",
                                                 "max_open_per_agent": "5"})
    assert response.status_code == 302
    team = Team.objects.for_store(store).get()
    assert (team.auto_assign, team.max_open_per_agent) == (True, 5)
    members = {m.user_id: m.available for m in team.memberships.all()}
    assert members == {agent.pk: True, marta.pk: False}
    page = client.get("/app/inbox/teams/").content.decode()
    assert "Soporte" in page
    response = client.post("/app/inbox/teams/", {"name": "Soporte", "members": [str(marta.pk)], "max_open_per_agent": "9"})
    assert response.status_code == 422 and 'id="team-name-error"' in response.content.decode()
    assert Team.objects.for_store(store).get().max_open_per_agent == 5
    response = client.post(f"/app/inbox/teams/{team.pk}/", {"name": "Soporte", "members": [str(analyst.pk)],
                                                             "max_open_per_agent": "5"})
    assert response.status_code == 422
    assert re.search(r'<p class="field-error">[^<]+</p>', response.content.decode())
    response = client.post(f"/app/inbox/teams/{team.pk}/", {"name": "", "max_open_per_agent": "0"})
    assert response.status_code == 422 and 'id="team-name-error"' in response.content.decode()
    response = client.post(f"/app/inbox/teams/{team.pk}/", {"name": "Postventa", "members": [str(marta.pk)],
                                                            "max_open_per_agent": "3"})
    assert response.status_code == 302
    team.refresh_from_db()
    assert (team.name, team.auto_assign, team.max_open_per_agent) == ("Postventa", False, 3)
    assert [m.user_id for m in team.memberships.all()] == [marta.pk]
    assert client.get("/app/inbox/teams/999999/").status_code == 404


def test_inbox_settings_are_saved_and_refused_with_the_field_at_fault(store, agent):
    team = services.team_set(store=store, name="Preguntas")
    client = signed_in(member(store, "owner", "olga"))
    page = client.get("/app/inbox/settings/").content.decode()
    assert 'name="hours_mon" value="09:00-18:00"' in page and 'name="first_urgent"' in page
    form = {f"hours_{day}": "09:00-14:00, 16:00-19:00" for day in ("mon", "tue", "wed", "thu", "fri")}
    form.update(hours_sat="10:00-13:00", hours_sun="", holidays="2026-12-25\n2027-01-06",
                route_question=str(team.pk), default_team="", posts_to_inbox="addressed", reviews_to_inbox="all")
    for level, first, resolution in (("urgent", 15, 120), ("high", 30, 240), ("normal", 120, 960), ("low", 480, 2880)):
        form[f"first_{level}"], form[f"resolution_{level}"] = str(first), str(resolution)
    assert client.post("/app/inbox/settings/", form).status_code == 302
    row = InboxSettings.objects.for_store(store).get()
    assert row.business_hours["mon"] == [["09:00", "14:00"], ["16:00", "19:00"]] and row.business_hours["sun"] == []
    assert row.holidays == ["2026-12-25", "2027-01-06"]
    assert row.first_response_minutes == {"urgent": 15, "high": 30, "normal": 120, "low": 480}
    assert row.routing == {"question": team.pk} and row.posts_to_inbox == "addressed" and row.reviews_to_inbox == "all"
    assert 'value="09:00-14:00, 16:00-19:00"' in client.get("/app/inbox/settings/").content.decode()

    bad = dict(form, hours_tue="18:00-09:00")
    response = client.post("/app/inbox/settings/", bad)
    assert response.status_code == 422
    assert re.search(r'id="hours-tue-error">[^<]+<', response.content.decode())
    assert 'value="18:00-09:00"' in response.content.decode()  # what was typed stays
    response = client.post("/app/inbox/settings/", dict(form, hours_wed="mañana"))
    assert response.status_code == 422 and 'id="hours-wed-error"' in response.content.decode()
    response = client.post("/app/inbox/settings/", dict(form, holidays="el día de navidad"))
    assert response.status_code == 422 and 'id="holidays-error"' in response.content.decode()
    response = client.post("/app/inbox/settings/", dict(form, first_high="0"))
    assert response.status_code == 422 and 'id="first-error"' in response.content.decode()
    assert InboxSettings.objects.for_store(store).get().business_hours["tue"] == [["09:00", "14:00"], ["16:00", "19:00"]]
    assert signed_in(agent).post("/app/inbox/settings/", form).status_code == 403


# --- the nav ------------------------------------------------------------------------------------------

def test_the_nav_has_listening_and_the_inbox_with_its_badge_in_both_languages(store, agent, inbox):
    client = signed_in(agent)
    body = client.get("/app/").content.decode()
    badge = re.search(r'data-badge="inbox" title="([^"]+)"><span aria-hidden="true">(\d+)</span>', body)
    assert badge[2] == "2"  # the conversation given to her, and the one past its SLA
    assert badge[1] == "1 aviso sin leer · 1 conversación fuera de plazo"
    assert 'data-nav="listening">Escucha</a>' in body and 'data-nav="inbox">Bandeja de entrada' in body
    client.post("/i18n/setlang/", {"language": "en", "next": "/app/"})
    body = client.get("/app/").content.decode()
    assert 'data-nav="listening">Listening</a>' in body and 'data-nav="inbox">Inbox' in body
    assert "1 unread notification · 1 conversation past its SLA" in body


# --- end to end, without a browser ------------------------------------------------------------------

@pytest.mark.django_db(transaction=True)
def test_a_reply_from_the_page_is_received_over_smtp_in_the_thread(store, agent):
    hear(store, mail("<m1@example.com>", "Hola, ¿me ayudáis con la devolución?"))
    one = conversation_of(store, "<m1@example.com>")
    response = signed_in(agent).post(f"/app/inbox/{one.pk}/reply/", {"text": "Claro, Ana: te escribo los pasos.",
                                                                    "action": "send"})
    assert response.status_code == 302
    with SmtpServer() as smtp, override_settings(EMAIL_URL=f"smtp://127.0.0.1:{smtp.port}",
                                                 DEFAULT_FROM_EMAIL="Tienda <hola@tienda.example>"):
        assert dispatch_run(worker="t") == 1
        [received] = smtp.handler.messages
    got = email.message_from_bytes(received["data"], policy=email.policy.default)
    assert received["rcpt_tos"] == ["ana@example.com"]
    assert got["In-Reply-To"] == "<m1@example.com>" and "<m1@example.com>" in got["References"]
    assert got["Subject"] == "Re: ¿Dónde está mi pedido?"
    assert "te escribo los pasos" in got.get_body(("plain",)).get_content()
    assert Delivery.objects.for_store(store).get().status == "sent"


def test_response_times_page_reads_for_everyone_in_the_store(client, store, django_user_model):
    from django.utils import timezone

    from tertulia.core.services import membership_grant
    from tertulia.inbox.models import Conversation
    from tertulia.inbox.services import reply_send
    from tertulia.listening.connectors import Post
    from tertulia.listening.services import mentions_ingest

    analyst = django_user_model.objects.create_user("ines", password="x")
    membership_grant(store=store, user=analyst, role="analyst")
    client.force_login(analyst)
    empty = client.get("/app/inbox/times/").content.decode()
    assert "No hay conversaciones en este periodo." in empty and "data-times" not in empty

    luis = django_user_model.objects.create_user("luis", password="x")
    membership_grant(store=store, user=luis, role="agent")
    mentions_ingest(store_id=store.pk, posts=[Post(network="email", kind="direct", external_id="<t1@example.com>",
                                                   text="¿Tenéis factura?", posted_at=timezone.now(),
                                                   author_handle="ana@example.com")])
    reply_send(store=store, conversation_id=Conversation.objects.get().pk, user=luis, text="Sí, os la enviamos.")
    page = client.get("/app/inbox/times/?days=7")
    assert page.status_code == 200
    text = page.content.decode()
    assert 'data-times="agent"' in text and "<th scope=\"row\">luis</th>" in text
    assert "/app/inbox/settings/" not in text  # an analyst sees no settings tabs
