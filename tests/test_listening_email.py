"""E-mail into the inbox: IMAP polling against the IMAP sandbox (real protocol over TCP), the inbound-mail
webhook, and replies going out over real SMTP with In-Reply-To/References that thread back."""

import email
import email.policy
import hashlib
import hmac
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

import orjson
import pytest
from django.test import override_settings
from django.utils import timezone
from fakes.smtp import SmtpServer

from tertulia.channels.adapters.email import connections_close, email_build
from tertulia.channels.base import OutboundMessage
from tertulia.channels.dispatch import dispatch_run
from tertulia.channels.models import Delivery
from tertulia.channels.registry import adapters_forget
from tertulia.core.errors import ApiError
from tertulia.core.services import membership_grant
from tertulia.inbox.models import Conversation, Message
from tertulia.inbox.services import inbox_settings_update, reply_send
from tertulia.inbox.sweep import inbox_sweep
from tertulia.listening.connectors import email as mail_connector
from tertulia.listening.models import Alert, MalformedPayload, Mention, Source
from tertulia.listening.runner import listen_once
from tertulia.listening.sandbox.mail import MailSandbox
from tertulia.listening.selectors import matchers_forget
from tertulia.listening.sources import source_set, source_webhook_token

pytestmark = pytest.mark.django_db
FIXTURES = Path(__file__).parent / "fixtures" / "email"
HELLO = (FIXTURES / "rfc5322_a2_hello.eml").read_bytes()
MARYS_REPLY = (FIXTURES / "rfc5322_a2_reply.eml").read_bytes()
REPLY_TO_REPLY = (FIXTURES / "rfc5322_a2_reply_to_reply.eml").read_bytes()
ODDITIES = (FIXTURES / "rfc5322_a5_oddities.eml").read_bytes()
SUPPORT = "soporte@tienda.example"
PASSWORD = "app-password-1"


@pytest.fixture(autouse=True)
def _fresh(store):
    matchers_forget()
    adapters_forget()
    inbox_settings_update(store=store, changes={"business_hours": {}})
    yield
    connections_close()
    adapters_forget()


@pytest.fixture
def mail():
    with MailSandbox(accounts={SUPPORT: PASSWORD, "mary@example.net": PASSWORD}) as sandbox:
        yield sandbox


def imap_source(store, mail, *, address=SUPPORT, username=SUPPORT, key="soporte", password=PASSWORD, **settings):
    values = {"mode": "imap", "host": mail.host, "port": mail.port, "ssl": False, "username": username,
              "address": address, **settings}
    return source_set(store=store, network="email", key=key, settings=values,
                      secrets={"password": password} if password else {})


def poll(source: Source) -> Source:
    Source.objects.filter(pk=source.pk).update(next_run_at=timezone.now())
    assert listen_once(worker="t") == 1  # with the inbox sweep: our sent replies get their Message-ID
    source.refresh_from_db()
    return source


def letter(*, sender="Ana García <ana@example.com>", to=SUPPORT, subject="Mi pedido 1043", text="Hola",
           message_id="<pedido-1043@mail.example>", html="", **headers) -> EmailMessage:
    message = EmailMessage(policy=email.policy.default)
    message["From"], message["To"], message["Subject"] = sender, to, subject
    message["Date"] = "Tue, 01 Dec 2026 10:00:00 +0100"
    if message_id:
        message["Message-ID"] = message_id
    for name, value in headers.items():
        message[name.replace("_", "-")] = value
    message.set_content(text)
    if html:
        message.add_alternative(html, subtype="html")
    return message


# --- IMAP polling --------------------------------------------------------------------------------


def test_the_rfc_5322_conversation_becomes_one_inbox_conversation(store, mail):
    for raw in (HELLO, MARYS_REPLY, REPLY_TO_REPLY):
        mail.add_message(raw)
    source = poll(imap_source(store, mail, address="mary@example.net", username="mary@example.net"))
    assert source.last_error_code == "" and source.cursor == {
        "mailbox": "INBOX", "uidvalidity": mail.mailboxes["INBOX"].uidvalidity, "last_uid": 3}
    # Mary's own reply (From the source's address) is not a message to answer.
    mentions = {m.external_id: m for m in Mention.objects.for_store(store)}
    assert set(mentions) == {"<1234@local.machine.example>", "<abcd.1234@local.machine.tld>"}
    hello = mentions["<1234@local.machine.example>"]
    assert (hello.network, hello.kind, hello.author_handle, hello.author_name, hello.title) == (
        "email", "direct", "jdoe@machine.example", "John Doe", "Saying Hello")
    assert hello.text == 'This is a message just to say hello.\nSo, "Hello".'
    assert hello.posted_at == datetime(1997, 11, 21, 15, 55, 6, tzinfo=UTC)
    answer = mentions["<abcd.1234@local.machine.tld>"]
    assert (answer.in_reply_to, answer.thread_root) == ("<3456@example.net>", "<1234@local.machine.example>")
    assert answer.reply_ref == {"references": ["<1234@local.machine.example>", "<3456@example.net>"],
                                "subject": "Re: Saying Hello", "reply_from": "mary@example.net"}
    conversation = Conversation.objects.for_store(store).get()
    assert (conversation.kind, conversation.network, conversation.contact_handle, conversation.subject) == (
        "email", "email", "jdoe@machine.example", "Saying Hello")
    assert conversation.message_count == 2
    # Read-only and peeked: the people reading this mailbox in their client find it as they left it.
    assert all(mail.flags(uid) == set() for uid in (1, 2, 3))
    assert "EXAMINE INBOX" in mail.commands and not any(c.startswith(("SELECT", "STORE")) for c in mail.commands)


def test_a_restart_resumes_after_the_last_uid_with_no_gap_and_no_duplicate(store, mail):
    mail.add_message(letter(message_id="<a@mail.example>", text="¿Llega mañana?"))
    mail.add_message(letter(message_id="<b@mail.example>", subject="Otra cosa", sender="luis@example.org"))
    source = poll(imap_source(store, mail))
    assert (source.posts_seen, source.mentions_stored, source.cursor["last_uid"]) == (2, 2, 2)

    mail.add_message(letter(message_id="<c@mail.example>", sender="marta@example.org", subject="Devolución"))
    mail.commands.clear()
    source = poll(source)  # a new session, a new connection: only the cursor carries over
    assert "UID SEARCH UID 3:*" in mail.commands
    assert (source.posts_seen, source.mentions_stored, source.cursor["last_uid"]) == (3, 3, 3)

    mail.commands.clear()
    source = poll(source)
    # "4:*" still answers UID 3 (RFC 3501: * is the highest UID): it is not handed over again, nor fetched.
    assert "UID SEARCH UID 4:*" in mail.commands and not any("FETCH" in c for c in mail.commands)
    assert (source.posts_seen, source.duplicates_seen) == (3, 0)


def test_a_changed_uidvalidity_reads_the_mailbox_again_and_stores_nothing_twice(store, mail):
    mail.add_message(letter(message_id="<a@mail.example>"))
    mail.add_message(letter(message_id="<b@mail.example>", sender="luis@example.org"))
    source = poll(imap_source(store, mail))
    old = source.cursor["uidvalidity"]
    validity = mail.renumber()
    mail.add_message(letter(message_id="<c@mail.example>", sender="marta@example.org"))
    source = poll(source)
    assert validity != old and source.cursor == {"mailbox": "INBOX", "uidvalidity": validity, "last_uid": 3}
    assert (source.mentions_stored, source.duplicates_seen) == (3, 2)
    assert Mention.objects.for_store(store).count() == 3


def test_a_new_source_starts_with_the_newest_messages_only(store, mail):
    for number in range(5):
        mail.add_message(letter(message_id=f"<old-{number}@mail.example>", sender=f"p{number}@example.org"))
    source = poll(imap_source(store, mail, backfill=2))
    assert sorted(Mention.objects.values_list("external_id", flat=True)) == ["<old-3@mail.example>",
                                                                            "<old-4@mail.example>"]
    assert source.cursor["last_uid"] == 5
    quiet = poll(imap_source(store, mail, key="desde-ahora", backfill=0))
    assert quiet.cursor["last_uid"] == 5 and quiet.posts_seen == 0


def test_auto_replies_bounces_and_bulk_are_skipped_and_unreadable_mail_is_kept(store, mail):
    mail.add_message(letter(message_id="<auto@mail.example>", subject="Fuera de la oficina", Auto_Submitted="auto-replied"))
    mail.add_message(letter(message_id="<news@mail.example>", subject="Boletín", Precedence="bulk"))
    bounce = letter(sender="Mail Delivery System <MAILER-DAEMON@mx.example>", message_id="<dsn@mx.example>",
                    subject="Undelivered Mail Returned to Sender")
    mail.add_message(bounce)
    mail.add_message(b"\x00\x01 esto no es un correo\r\n\r\nni tiene remitente")
    html = ("<html><head><style>p{color:red}</style></head><body><div>Hola,</div><div>¿cuándo llega el pedido?"
            "</div></body></html>")
    written = letter(message_id="<html@mail.example>", subject="Pedido", text="x", html=html)
    plain_part = written.get_body(("plain",))
    written.get_payload().remove(plain_part)  # HTML only, as some clients send
    written.add_attachment(b"%PDF-1.4", maintype="application", subtype="pdf", filename="factura.pdf")
    mail.add_message(written)
    quoted = letter(message_id="<quoted@mail.example>", sender="luis@example.org",
                    text="Sí, gracias.\n\nEl lun, 30 nov 2026, Tienda escribió:\n> ¿Recibió el pedido?\n> Saludos")
    mail.add_message(quoted)

    source = poll(imap_source(store, mail))
    assert source.cursor["last_uid"] == 6 and source.last_error_code == ""
    stored = {m.external_id: m for m in Mention.objects.for_store(store)}
    assert set(stored) == {"<html@mail.example>", "<quoted@mail.example>"}
    assert stored["<html@mail.example>"].text == "Hola,\n¿cuándo llega el pedido?\n\n[attachment: factura.pdf]"
    assert stored["<quoted@mail.example>"].text == "Sí, gracias."
    kept = MalformedPayload.objects.for_store(store).get()
    assert kept.code == "no_sender" and "esto no es un correo" in kept.raw and source.malformed_count == 1


def test_a_message_without_message_id_gets_a_stable_one(store, mail):
    raw = letter(message_id="").as_bytes()
    mail.add_message(raw)
    source = poll(imap_source(store, mail))
    generated = Mention.objects.for_store(store).get().external_id
    assert generated.endswith("@generated.tertulia.invalid>")
    mail.renumber()
    source = poll(source)  # read again under new UIDs: the same id, stored once
    assert Mention.objects.for_store(store).count() == 1 and source.duplicates_seen == 1


def test_the_oddities_of_rfc_5322_are_read(store, mail):
    mail.add_message(ODDITIES)
    poll(imap_source(store, mail))
    mention = Mention.objects.for_store(store).get()
    assert (mention.external_id, mention.author_handle, mention.author_name, mention.text) == (
        "<testabcd.1234@silly.test>", "pete@silly.test", "Pete", "Testing.")
    assert mention.posted_at == datetime(1969, 2, 14, 3, 2, tzinfo=UTC)  # 23:32 -0330


def test_a_message_over_the_size_cap_is_read_by_its_headers(store, mail, monkeypatch):
    monkeypatch.setattr(mail_connector, "MAX_MESSAGE_BYTES", 2000)
    big = letter(message_id="<big@mail.example>", subject="Fotos del paquete roto", text="x")
    big.add_attachment(b"\xff" * 5000, maintype="image", subtype="jpeg", filename="caja.jpg")
    mail.add_message(big)
    undated = letter(message_id="<undated@mail.example>", sender="luis@example.org")
    del undated["Date"]
    mail.add_message(undated, internal_date=datetime(2026, 11, 30, 8, 15, tzinfo=UTC))
    poll(imap_source(store, mail))
    stored = {m.external_id: m for m in Mention.objects.for_store(store)}
    assert stored["<big@mail.example>"].title == "Fotos del paquete roto"
    assert stored["<big@mail.example>"].text.startswith("[message of ") and "only its headers" in \
        stored["<big@mail.example>"].text
    assert any("BODY.PEEK[HEADER]" in command for command in mail.commands)
    assert stored["<undated@mail.example>"].posted_at == datetime(2026, 11, 30, 8, 15, tzinfo=UTC)  # INTERNALDATE


def test_nul_bytes_in_a_message_are_dropped_not_stored(store, mail):
    raw = letter(message_id="<nul@mail.example>", text="x").as_bytes().replace(b"\nx\n", b"\nHola\x00 Tertulia\n")
    mail.add_message(raw)
    source = poll(imap_source(store, mail))  # PostgreSQL text cannot hold NUL: the insert would fail for good
    assert Mention.objects.for_store(store).get().text == "Hola Tertulia" and source.last_error_code == ""


def test_a_refused_login_is_an_auth_failure_with_an_alert(store, mail):
    source = poll(imap_source(store, mail, password="wrong"))
    assert (source.last_error_code, source.consecutive_failures) == ("auth_failed", 1)
    assert "AUTHENTICATIONFAILED" in source.last_error
    assert Alert.objects.for_store(store).filter(kind="connector_down", source=source).exists()
    assert mail.failed_logins == 1


def test_a_missing_password_or_mailbox_is_a_configuration_error(store, mail):
    source = poll(imap_source(store, mail, password=""))
    assert source.last_error_code == "misconfigured"
    source = poll(imap_source(store, mail, key="otra", mailbox="Soporte"))
    assert source.last_error_code == "mailbox_not_found" and "Soporte" in source.last_error


def test_an_imap_server_that_is_not_there_is_a_transient_failure(store):
    source = source_set(store=store, network="email", key="soporte", secrets={"password": "x"}, settings={
        "host": "127.0.0.1", "port": 9, "ssl": False, "username": "u", "address": SUPPORT})
    source = poll(source)
    assert (source.last_error_code, source.consecutive_failures) == ("connection_error", 1)


@pytest.mark.parametrize(("settings", "field"), [
    ({"mode": "imap", "address": SUPPORT}, "settings.host"),
    ({"mode": "pop3", "address": SUPPORT}, "settings.mode"),
    ({"mode": "webhook", "address": "Soporte <soporte@tienda.example>"}, "settings.address"),
    ({"mode": "webhook"}, "settings.address"),
    ({"host": "imap.example", "username": "u", "address": SUPPORT, "starttls": True}, "settings.starttls"),
    ({"host": "imap.example", "username": "u", "address": SUPPORT, "mailbox": "Buzón"}, "settings.mailbox"),
])
def test_settings_are_checked(store, settings, field):
    with pytest.raises(ApiError) as caught:
        source_set(store=store, network="email", key="mal", settings=settings)
    assert field in [detail.field for detail in caught.value.details]


# --- replies over SMTP ---------------------------------------------------------------------------


def test_an_agents_reply_goes_out_over_smtp_and_the_answer_threads_back(store, mail, django_user_model):
    agent = django_user_model.objects.create_user("luisa", password="x", first_name="Luisa")
    membership_grant(store=store, user=agent, role="agent")
    mail.add_message(letter(text="Hola, mi pedido 1043 no ha llegado.",
                            References="<pedido-1043-confirmacion@tienda.example>"))
    source = poll(imap_source(store, mail))
    conversation = Conversation.objects.for_store(store).get()

    with SmtpServer() as smtp, override_settings(EMAIL_URL=f"smtp://127.0.0.1:{smtp.port}",
                                                 DEFAULT_FROM_EMAIL="Tertulia <no-reply@tienda.example>"):
        reply_send(store=store, conversation_id=conversation.pk, user=agent, text="Hola Ana, ya está en camino.")
        assert dispatch_run(worker="t") == 1
        [sent] = smtp.handler.messages
    delivery = Delivery.objects.for_store(store).get()
    assert delivery.status == "sent" and delivery.reply_to == "<pedido-1043@mail.example>"
    assert sent["mail_from"] == SUPPORT and sent["rcpt_tos"] == ["ana@example.com"]
    out = email.message_from_bytes(sent["data"], policy=email.policy.default)
    assert out["From"] == f"Tienda de prueba <{SUPPORT}>" and out["Reply-To"] == SUPPORT
    assert out["Subject"] == "Re: Mi pedido 1043"
    assert out["In-Reply-To"] == "<pedido-1043@mail.example>"
    assert out["References"] == "<pedido-1043-confirmacion@tienda.example> <pedido-1043@mail.example>"
    assert out["Message-ID"] == delivery.provider_message_id and out["Message-ID"].endswith("@tienda.example>")
    assert out.get_body(("plain",)).get_content().strip() == "Hola Ana, ya está en camino."

    inbox_sweep(wide=False)  # the runner's sweep, every few seconds: our reply's Message-ID joins the thread
    # The copy of our reply that lands in the mailbox is skipped; Ana's answer to it, which names only
    # our Message-ID (In-Reply-To, no References, as some clients write), joins the same conversation.
    mail.add_message(sent["data"])
    mail.add_message(letter(message_id="<ana-2@mail.example>", subject="Re: Mi pedido 1043",
                            text="¡Gracias! Ha llegado hoy.\n\nEl mar, Tienda escribió:\n> Hola Ana, ya está en camino.",
                            In_Reply_To=out["Message-ID"]))
    source = poll(source)
    assert source.cursor["last_uid"] == 3
    outbound = Message.objects.for_store(store).get(direction="outbound")
    assert outbound.external_id == out["Message-ID"]
    conversation.refresh_from_db()
    assert Conversation.objects.for_store(store).count() == 1
    assert (conversation.message_count, conversation.status) == (3, "open")  # answered: open again
    latest = Message.objects.for_store(store).filter(direction="inbound").order_by("-id").first()
    assert (latest.external_id, latest.text) == ("<ana-2@mail.example>", "¡Gracias! Ha llegado hoy.")

    # The next reply answers Ana's latest message and carries the whole chain.
    with SmtpServer() as smtp, override_settings(EMAIL_URL=f"smtp://127.0.0.1:{smtp.port}"):
        adapters_forget()
        reply_send(store=store, conversation_id=conversation.pk, user=agent, text="¡Que lo disfrute!")
        dispatch_run(worker="t")
        [again] = smtp.handler.messages
    second = email.message_from_bytes(again["data"], policy=email.policy.default)
    assert second["In-Reply-To"] == "<ana-2@mail.example>"
    assert second["References"] == f"{out['Message-ID']} <ana-2@mail.example>"


def test_references_of_a_long_thread_keep_its_root_and_drop_what_is_not_an_id():
    chain = [f"<m{number}@mail.example>" for number in range(30)]
    message = OutboundMessage(delivery_id=1, store_id=1, channel="email", to="ana@example.com", text="Hola",
                              subject="Re: x", in_reply_to="<m30@mail.example>",
                              reply_context={"references": [*chain, "no es un id", "<a b>", 7],
                                             "reply_from": "soporte@tienda.example\r\nBcc: x@evil.example"})
    built = email_build(message, from_email="Tienda <no-reply@tienda.example>")
    references = built.extra_headers["References"].split()
    assert len(references) == 20 and references[0] == "<m0@mail.example>" and references[-1] == "<m30@mail.example>"
    assert "no es un id" not in built.extra_headers["References"]
    assert built.from_email == "Tienda <no-reply@tienda.example>"  # a reply_from that is not one address: ignored


# --- the inbound-mail webhook --------------------------------------------------------------------

URL = "/webhooks/email/tienda/entrante"


@pytest.fixture
def token(store):
    source_set(store=store, network="email", key="entrante", settings={"mode": "webhook", "address": SUPPORT})
    return source_webhook_token(store=store, key="entrante")[1]


def deliver(client, body: bytes, content_type: str, token: str | None = None, **headers):
    if token:
        headers["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    return client.post(URL, body, content_type=content_type, **headers)


def test_raw_mime_is_stored_once_and_threads(client, token, store):
    first = deliver(client, HELLO, "message/rfc822", token)
    assert first.status_code == 200, first.content
    assert first.json() == {"accepted": 1, "stored": 1, "duplicates": 0, "ignored": 0,
                            "message_id": "<1234@local.machine.example>"}
    again = deliver(client, HELLO, "message/rfc822", token)
    assert again.json()["stored"] == 0 and again.json()["duplicates"] == 1
    assert deliver(client, REPLY_TO_REPLY, "message/rfc822", token).json()["stored"] == 1
    conversation = Conversation.objects.for_store(store).get()
    assert (conversation.kind, conversation.message_count) == ("email", 2)
    source = Source.objects.get(key="entrante")
    assert (source.posts_seen, source.mentions_stored, source.duplicates_seen) == (3, 2, 1)


def test_the_json_shape_is_read_like_a_message(client, token, store):
    body = {"from": "Ana García <ana@example.com>", "to": [SUPPORT], "subject": "Talla",
            "html": "<p>¿Tenéis la chaqueta en talla M?</p>", "message_id": "<json-1@mail.example>",
            "date": "2026-12-01T10:00:00Z"}
    response = deliver(client, orjson.dumps(body), "application/json", token)
    assert response.status_code == 200, response.content
    mention = Mention.objects.for_store(store).get()
    assert (mention.author_handle, mention.author_name, mention.title, mention.text) == (
        "ana@example.com", "Ana García", "Talla", "¿Tenéis la chaqueta en talla M?")
    assert mention.posted_at == datetime(2026, 12, 1, 10, tzinfo=UTC) and mention.intent == "question"

    follow_up = {"from": "ana@example.com", "text": "Mejor la L.", "in_reply_to": "<json-1@mail.example>",
                 "references": "<json-1@mail.example>"}
    for _ in range(2):  # no message_id: the id made from the message itself is the same on a replay
        assert deliver(client, orjson.dumps(follow_up), "application/json", token).status_code == 200
    assert Mention.objects.for_store(store).count() == 2
    assert Conversation.objects.for_store(store).get().message_count == 2


def test_auto_replies_are_accepted_but_not_stored(client, token):
    body = {"from": "ana@example.com", "text": "Estoy de vacaciones", "headers": {"Auto-Submitted": "auto-replied"}}
    response = deliver(client, orjson.dumps(body), "application/json", token)
    assert response.status_code == 200 and response.json()["skipped"] == "auto_submitted"
    ours = letter(sender=f"Tienda <{SUPPORT}>").as_bytes()
    assert deliver(client, ours, "message/rfc822", token).json()["skipped"] == "own_address"
    assert not Mention.objects.exists() and not MalformedPayload.objects.exists()


def test_without_the_token_nothing_is_stored_and_a_signature_is_enough(client, token):
    assert deliver(client, HELLO, "message/rfc822").status_code == 401
    assert deliver(client, HELLO, "message/rfc822", "wrong").status_code == 401
    assert not Mention.objects.exists() and not MalformedPayload.objects.exists()
    signature = hmac.new(token.encode(), HELLO, hashlib.sha256).hexdigest()
    signed = deliver(client, HELLO, "message/rfc822", HTTP_X_TERTULIA_SIGNATURE=f"sha256={signature}")
    assert signed.status_code == 200 and Mention.objects.count() == 1


@pytest.mark.parametrize(("body", "content_type", "status", "code"), [
    (b'{"from": "ana@example.com", "text": "Hol', "application/json", 400, "invalid_json"),
    (orjson.dumps({"text": "sin remitente", "colour": "red"}), "application/json", 422, "invalid_message"),
    (orjson.dumps({"from": "ana@example.com", "subject": "a\r\nBcc: x@evil.example", "text": "x"}),
     "application/json", 422, "invalid_message"),
    (b"esto no es un correo", "message/rfc822", 422, "no_sender"),
    (b"from=ana@example.com&text=hola", "application/x-www-form-urlencoded", 415, "unsupported_media_type"),
])
def test_what_cannot_be_read_is_refused_and_kept(client, token, store, body, content_type, status, code):
    response = deliver(client, body, content_type, token)
    assert response.status_code == status and response.json()["error"]["code"] == code
    kept = MalformedPayload.objects.for_store(store).get()
    assert kept.code == code and kept.raw == body.decode()
    assert Source.objects.get(key="entrante").malformed_count == 1 and not Mention.objects.exists()


def test_the_json_problems_are_listed_by_field(client, token):
    response = deliver(client, orjson.dumps({"text": "sin remitente", "colour": "red", "date": "ayer"}),
                       "application/json", token)
    fields = {detail["field"] for detail in response.json()["error"]["details"]}
    assert fields == {"from", "colour", "date"}


def test_an_imap_source_takes_no_webhook_deliveries(client, store, mail):
    imap_source(store, mail, key="entrante")
    _, secret = source_webhook_token(store=store, key="entrante")
    assert deliver(client, HELLO, "message/rfc822", secret).status_code == 404


def test_a_webhook_source_is_run_once_a_day_without_touching_any_server(store, token):
    source = Source.objects.get(key="entrante")
    poll(source)
    source.refresh_from_db()
    assert source.last_error_code == "" and source.next_run_at > timezone.now() + timedelta(hours=23)


def test_message_ids_are_read_however_they_are_written():
    assert mail_connector.message_ids("<a@b> \r\n <c@d>, <a@b>") == ["<a@b>", "<c@d>"]
    assert mail_connector.message_ids("a@b") == ["<a@b>"]
    assert mail_connector.message_ids("Your message of Tuesday") == []
