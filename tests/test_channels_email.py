"""E-mail adapter over real SMTP (aiosmtpd in this process), its error mapping, and the built-in outbox."""

import email
import email.policy

import pytest
from django.core import mail
from django.test import override_settings
from django.utils import timezone
from fakes.smtp import SilentServer, SmtpServer

from tertulia.channels.accounts import channel_account_set
from tertulia.channels.adapters.email import SmtpEmailAdapter, connections_close
from tertulia.channels.adapters.email import SmtpServer as ServerConfig
from tertulia.channels.base import OutboundMessage, PermanentSendError, TransientSendError
from tertulia.channels.models import Delivery, OutboxMessage
from tertulia.channels.outbox import OutboxEmailBackend, outbox_list, outbox_render
from tertulia.channels.registry import adapter_for, adapters_forget

HEADERS = {"List-Unsubscribe": "<https://shop.example/u/tok>", "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}


def message(store, to="ana@example.com", delivery_id=7, **extra) -> OutboundMessage:
    fields = {"subject": "¿Te ayudamos con tu carrito?", "text": "Hola Ana,\nTu carrito te espera: https://shop.example/r/x",
              "html": "<p>Hola <b>Ana</b>, tu carrito te espera.</p>", "headers": dict(HEADERS), "language": "es"}
    fields.update(extra)
    return OutboundMessage(delivery_id=delivery_id, store_id=store.pk, channel="email", to=to, **fields)


@pytest.fixture(autouse=True)
def _fresh_adapters():
    adapters_forget()
    yield
    connections_close()
    adapters_forget()


@pytest.fixture
def smtp():
    with SmtpServer() as server:
        yield server


def parsed(raw: bytes):
    return email.message_from_bytes(raw, policy=email.policy.default)


@pytest.mark.django_db
def test_smtp_sends_multipart_with_headers_and_message_id(store, smtp):
    with override_settings(EMAIL_URL=f"smtp://127.0.0.1:{smtp.port}", DEFAULT_FROM_EMAIL="Tertulia <hola@tienda.example>"):
        adapter = adapter_for(store_id=store.pk, channel="email")
        assert isinstance(adapter, SmtpEmailAdapter)
        result = adapter.send(message(store))
    assert result.provider == "smtp" and result.provider_status == "accepted"
    assert result.provider_message_id.startswith("<") and result.provider_message_id.endswith("@tienda.example>")
    [received] = smtp.handler.messages
    assert received["mail_from"] == "hola@tienda.example" and received["rcpt_tos"] == ["ana@example.com"]
    got = parsed(received["data"])
    assert got["Message-ID"] == result.provider_message_id
    assert got["List-Unsubscribe"] == "<https://shop.example/u/tok>"
    assert got["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert got["Subject"] == "¿Te ayudamos con tu carrito?"
    assert got["From"] == "Tienda de prueba <hola@tienda.example>"  # the store's name on the site's sender
    assert got.get_content_type() == "multipart/alternative"
    assert got.get_body(("plain",)).get_content().startswith("Hola Ana,")
    assert "<b>Ana</b>" in got.get_body(("html",)).get_content()


@pytest.mark.django_db
def test_smtp_connection_is_reused_between_messages(store, smtp):
    with override_settings(EMAIL_URL=f"smtp://127.0.0.1:{smtp.port}"):
        adapter = adapter_for(store_id=store.pk, channel="email")
        for number in range(3):
            adapter.send(message(store, delivery_id=number))
    assert len(smtp.handler.messages) == 3
    assert smtp.handler.connections == 1
    ids = {parsed(m["data"])["Message-ID"] for m in smtp.handler.messages}
    assert len(ids) == 3


@pytest.mark.django_db
@pytest.mark.parametrize(("to", "kind", "code"), [
    ("tempfail@example.com", TransientSendError, 450),
    ("reject@example.com", PermanentSendError, 550),
    ("datatemp@example.com", TransientSendError, 451),
    ("datafail@example.com", PermanentSendError, 554),
])
def test_smtp_replies_map_to_transient_or_permanent(store, smtp, to, kind, code):
    with override_settings(EMAIL_URL=f"smtp://127.0.0.1:{smtp.port}"):
        adapter = adapter_for(store_id=store.pk, channel="email")
        with pytest.raises(kind) as caught:
            adapter.send(message(store, to=to))
        assert caught.value.response["smtp_code"] == code
        assert caught.value.response["smtp_message"]
        assert caught.value.provider == "smtp"
        # The refused transaction was reset; the same connection sends the next message.
        adapter.send(message(store, to="ok@example.com", delivery_id=99))
    assert [m["rcpt_tos"] for m in smtp.handler.messages] == [["ok@example.com"]]
    assert smtp.handler.connections == 1


@pytest.mark.django_db
def test_smtp_refused_connection_and_timeout_are_transient(store):
    with SmtpServer() as server:
        port = server.port
    adapter = SmtpEmailAdapter(server=ServerConfig(host="127.0.0.1", port=port, timeout=2), from_email="a@b.example")
    with pytest.raises(TransientSendError) as caught:
        adapter.send(message(store))
    assert caught.value.code == "connection_error"
    with SilentServer() as silent:
        adapter = SmtpEmailAdapter(server=ServerConfig(host="127.0.0.1", port=silent.port, timeout=0.5),
                                   from_email="a@b.example")
        with pytest.raises(TransientSendError) as caught:
            adapter.send(message(store))
    assert caught.value.code == "timeout"


@pytest.mark.django_db
def test_bad_header_is_permanent(store, smtp):
    adapter = SmtpEmailAdapter(server=ServerConfig(host="127.0.0.1", port=smtp.port), from_email="a@b.example")
    with pytest.raises(PermanentSendError) as caught:
        adapter.send(message(store, headers={"X-Note": "line\r\nBcc: victim@example.com"}))
    assert caught.value.code == "invalid_message"
    assert smtp.handler.messages == []


@pytest.mark.django_db
def test_store_smtp_account_wins_over_site_mail(store, smtp):
    channel_account_set(store=store, channel="email", provider="smtp",
                        settings={"host": "127.0.0.1", "port": smtp.port, "from_email": "ventas@tienda.example"})
    with override_settings(EMAIL_URL=None):
        adapter = adapter_for(store_id=store.pk, channel="email")
        adapter.send(message(store))
    [received] = smtp.handler.messages
    assert received["mail_from"] == "ventas@tienda.example"
    assert OutboxMessage.objects.count() == 0


@pytest.mark.django_db
def test_outbox_keeps_the_raw_mime_as_the_shopper_would_see_it(store, other_store):
    delivery = Delivery.objects.create(store=store, channel="email", due_at=timezone.now())
    with override_settings(EMAIL_URL=None):
        adapter = adapter_for(store_id=store.pk, channel="email")
        result = adapter.send(message(store, delivery_id=delivery.pk))
    assert result.provider == "outbox" and result.provider_status == "stored"
    [kept] = outbox_list(store=store)
    assert outbox_list(store=other_store).count() == 0
    assert kept.channel == "email" and kept.to == ["ana@example.com"] and kept.delivery_id == delivery.pk
    assert kept.provider_message_id == result.provider_message_id
    raw = parsed(kept.raw.encode())
    assert raw["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    shown = outbox_render(kept)
    assert shown.subject == "¿Te ayudamos con tu carrito?"
    assert shown.text.startswith("Hola Ana,") and "<b>Ana</b>" in shown.html
    assert shown.headers["List-Unsubscribe"] == "<https://shop.example/u/tok>"
    assert shown.from_email.startswith("Tienda de prueba <")


@pytest.mark.django_db
def test_django_mail_lands_in_the_outbox(store):
    with override_settings(EMAIL_BACKEND="tertulia.channels.outbox.OutboxEmailBackend"):
        sent = mail.send_mail("Restablece tu contraseña", "Sigue este enlace.", "no-reply@tertulia.example",
                              ["staff@tienda.example"])
    assert sent == 1
    kept = OutboxMessage.objects.get()
    assert kept.store_id is None and kept.subject == "Restablece tu contraseña"
    assert outbox_render(kept).text.strip() == "Sigue este enlace."
    assert OutboxEmailBackend().send_messages([]) == 0


@pytest.mark.django_db
def test_email_url_with_a_django_backend(store):
    with override_settings(EMAIL_URL="memory://"):
        adapter_for(store_id=store.pk, channel="email").send(message(store))
    assert len(mail.outbox) == 1 and mail.outbox[0].extra_headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_settings_default_mail_backend_is_the_outbox():
    # The settings module as loaded without EMAIL_URL (pytest-django swaps the live setting for locmem).
    import os

    import tertulia.settings as loaded

    if os.environ.get("EMAIL_URL"):
        pytest.skip("EMAIL_URL is set in this environment")
    assert loaded.EMAIL_BACKEND == "tertulia.channels.outbox.OutboxEmailBackend"
    assert loaded.TERTULIA_CHANNELS_SANDBOX is True
