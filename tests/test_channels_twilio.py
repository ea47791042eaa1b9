"""SMS through Twilio's Messages API (a local fake speaking its format) and Twilio's signed status callbacks."""

import pytest
from django.test import override_settings
from django.utils import timezone
from fakes.twilio import FakeTwilio, sign

from tertulia.channels.accounts import channel_account_set
from tertulia.channels.adapters.twilio import TwilioSmsAdapter
from tertulia.channels.base import OutboundMessage, PermanentSendError, TransientSendError
from tertulia.channels.models import Delivery, DeliveryStatus
from tertulia.channels.registry import adapter_for, adapters_forget

SID = "AC" + "0123456789abcdef" * 2
TOKEN = "twilio-test-auth-token"
SENDER = "+34910000000"
CALLBACK_BASE = "http://testserver"


@pytest.fixture(autouse=True)
def _fresh_adapters():
    adapters_forget()
    yield
    adapters_forget()


@pytest.fixture
def twilio():
    with FakeTwilio({SID: TOKEN}) as fake:
        yield fake


def configure(store, twilio, **settings):
    channel_account_set(store=store, channel="sms", provider="twilio", secrets={"auth_token": TOKEN}, settings={
        "account_sid": SID, "from_number": SENDER, "base_url": twilio.base_url,
        "status_callback_base_url": CALLBACK_BASE, "timeout": 2, **settings})
    return adapter_for(store_id=store.pk, channel="sms")


def sms(store, to="+34600111222", delivery_id=1) -> OutboundMessage:
    return OutboundMessage(delivery_id=delivery_id, store_id=store.pk, channel="sms", to=to,
                           text="Tu carrito te espera: 10% con CODIGO10. Responde BAJA para no recibir más.")


@pytest.mark.django_db
def test_send_posts_twilio_form_with_basic_auth(store, twilio):
    adapter = configure(store, twilio)
    assert isinstance(adapter, TwilioSmsAdapter)
    result = adapter.send(sms(store))
    assert result.provider == "twilio" and result.provider_status == "queued"
    assert result.provider_message_id.startswith("SM") and len(result.provider_message_id) == 34
    [request] = twilio.requests
    assert request["path"] == f"/2010-04-01/Accounts/{SID}/Messages.json"
    assert request["form"] == {"To": "+34600111222", "From": SENDER, "Body": sms(store).text,
                               "StatusCallback": f"{CALLBACK_BASE}/webhooks/twilio/tienda/status"}
    assert request["headers"]["Authorization"].startswith("Basic ")
    assert result.response["http_status"] == 201 and result.response["to"] == "+34600111222"


@pytest.mark.django_db
def test_messaging_service_replaces_from(store, twilio):
    service = "MG" + "f" * 32
    adapter = configure(store, twilio, from_number="", messaging_service_sid=service)
    result = adapter.send(sms(store))
    assert result.provider_status == "accepted"
    form = twilio.requests[0]["form"]
    assert form["MessagingServiceSid"] == service and "From" not in form


@pytest.mark.django_db
def test_invalid_number_is_permanent_with_twilio_error(store, twilio):
    adapter = configure(store, twilio)
    with pytest.raises(PermanentSendError) as caught:
        adapter.send(sms(store, to="600111222"))
    error = caught.value
    assert error.code == "provider_rejected" and error.provider == "twilio"
    assert error.response["code"] == 21211 and error.response["status"] == 400
    assert error.response["more_info"].endswith("/21211")
    assert "not a valid phone number" in str(error)


@pytest.mark.django_db
def test_bad_credentials_are_permanent(store, twilio):
    channel_account_set(store=store, channel="sms", provider="twilio", secrets={"auth_token": "wrong"},
                        settings={"account_sid": SID, "from_number": SENDER, "base_url": twilio.base_url})
    with pytest.raises(PermanentSendError) as caught:
        adapter_for(store_id=store.pk, channel="sms").send(sms(store))
    assert caught.value.code == "auth_failed" and caught.value.response["code"] == 20003


@pytest.mark.django_db
@pytest.mark.parametrize(("status", "code"), [(429, 20429), (500, 20500), (503, 20503)])
def test_rate_limit_and_server_errors_are_transient(store, twilio, status, code):
    adapter = configure(store, twilio)
    twilio.fail_next(status, code, "Too many requests" if status == 429 else "Internal error")
    with pytest.raises(TransientSendError) as caught:
        adapter.send(sms(store))
    assert caught.value.response["http_status"] == status and caught.value.response["code"] == code
    assert adapter.send(sms(store)).provider_status == "queued"  # the next try goes through


@pytest.mark.django_db
def test_timeout_and_refused_connection_are_transient(store, twilio):
    adapter = configure(store, twilio, timeout=0.3)
    twilio.stall_next(1.5)
    with pytest.raises(TransientSendError) as caught:
        adapter.send(sms(store))
    assert caught.value.code == "timeout" and caught.value.response["maybe_sent"] is True
    gone = TwilioSmsAdapter(account_sid=SID, auth_token=TOKEN, from_number=SENDER, base_url="http://127.0.0.1:9")
    with pytest.raises(TransientSendError) as caught:
        gone.send(sms(store))
    assert caught.value.code == "connection_error"


@pytest.mark.django_db
def test_check_fetches_the_account(store, twilio):
    adapter = configure(store, twilio)
    assert adapter.check()["account_sid"] == SID


# --- status callbacks ----------------------------------------------------------------------------


def sent_delivery(store, twilio):
    adapter = configure(store, twilio)
    result = adapter.send(sms(store))
    delivery = Delivery.objects.create(store=store, channel="sms", due_at=timezone.now(), status=DeliveryStatus.SENT,
                                       provider="twilio", provider_message_id=result.provider_message_id,
                                       provider_status=result.provider_status, sent_at=timezone.now())
    return delivery, result.provider_message_id


def post_callback(client, url, params, signature):
    path = url.removeprefix(CALLBACK_BASE)
    return client.post(path, params, headers={"X-Twilio-Signature": signature} if signature is not None else {})


@pytest.mark.django_db
def test_delivered_callback_with_good_signature_and_its_replay(client, store, twilio):
    delivery, message_sid = sent_delivery(store, twilio)
    url, params, signature = twilio.callback(message_sid, "delivered")
    response = post_callback(client, url, params, signature)
    assert response.status_code == 200
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.DELIVERED and delivery.provider_status == "delivered"
    first = delivery.delivered_at
    assert first is not None
    # Twilio may deliver the same callback again, and an earlier status after a later one.
    assert post_callback(client, url, params, signature).status_code == 200
    url, params, signature = twilio.callback(message_sid, "sent")
    assert post_callback(client, url, params, signature).status_code == 200
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.DELIVERED and delivery.delivered_at == first
    assert delivery.provider_status == "delivered"


@pytest.mark.django_db
def test_undelivered_callback_records_the_error(client, store, twilio):
    delivery, message_sid = sent_delivery(store, twilio)
    url, params, signature = twilio.callback(message_sid, "undelivered", error_code="30003")
    assert post_callback(client, url, params, signature).status_code == 200
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.FAILED and delivery.reason == "undelivered"
    assert "30003" in delivery.detail and delivery.provider_status == "undelivered"
    assert delivery.sent_at is not None and delivery.delivered_at is None


@pytest.mark.django_db
def test_bad_or_missing_signature_is_403_in_the_error_shape(client, store, twilio):
    delivery, message_sid = sent_delivery(store, twilio)
    url, params, signature = twilio.callback(message_sid, "delivered")
    tampered = {**params, "MessageStatus": "failed"}
    for presented in (sign("another-token", url, params), None):
        response = post_callback(client, url, params, presented)
        assert response.status_code == 403
        assert response.json()["error"]["code"] in {"invalid_signature", "missing_signature"}
    response = post_callback(client, url, tampered, signature)  # parameters changed after signing
    assert response.status_code == 403 and response.json()["error"]["code"] == "invalid_signature"
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.SENT and delivery.provider_status == "queued"


@pytest.mark.django_db
def test_callback_edge_cases(client, store, other_store, twilio):
    delivery, message_sid = sent_delivery(store, twilio)
    assert client.get("/webhooks/twilio/tienda/status").status_code == 405
    url, params, signature = twilio.callback(message_sid, "delivered")
    assert client.post("/webhooks/twilio/nadie/status", params).status_code == 404
    # Another store has no Twilio account: nothing can be verified there.
    other = client.post("/webhooks/twilio/otra/status", params, headers={"X-Twilio-Signature": signature})
    assert other.status_code == 403
    # A message we did not send (correctly signed) is acknowledged and ignored.
    unknown = {**params, "MessageSid": "SM" + "0" * 32, "SmsSid": "SM" + "0" * 32}
    assert post_callback(client, url, unknown, sign(TOKEN, url, unknown)).status_code == 200
    incomplete = {key: value for key, value in params.items() if key != "MessageStatus"}
    response = post_callback(client, url, incomplete, sign(TOKEN, url, incomplete))
    assert response.status_code == 400 and response.json()["error"]["details"][0]["field"] == "MessageStatus"
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.SENT


@pytest.mark.django_db(transaction=True)
def test_callback_over_http_from_the_fake(live_server, store, twilio):
    with override_settings(ALLOWED_HOSTS=["*"]):
        channel_account_set(store=store, channel="sms", provider="twilio", secrets={"auth_token": TOKEN}, settings={
            "account_sid": SID, "from_number": SENDER, "base_url": twilio.base_url,
            "status_callback_base_url": live_server.url})
        result = adapter_for(store_id=store.pk, channel="sms").send(sms(store))
        delivery = Delivery.objects.create(store=store, channel="sms", due_at=timezone.now(), status=DeliveryStatus.SENT,
                                           provider="twilio", provider_message_id=result.provider_message_id)
        assert twilio.send_callback(result.provider_message_id, "delivered") == 200
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.DELIVERED
