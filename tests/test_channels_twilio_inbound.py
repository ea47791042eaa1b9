"""Replies to our SMS through Twilio's incoming-message webhook: BAJA / STOP unsubscribes, signed requests only."""

import pytest
from fakes.twilio import sign
from test_channels_twilio import CALLBACK_BASE, SENDER, SID, TOKEN, configure, twilio  # noqa: F401 - fixture

from tertulia.customers.models import Consent, ConsentChange
from tertulia.customers.services import consent_record, customer_resolve

URL = f"{CALLBACK_BASE}/webhooks/twilio/tienda/inbound"
PHONE = "+34600111222"


@pytest.fixture
def shopper(store, twilio):  # noqa: F811 - the fixture imported above
    configure(store, twilio)
    person = customer_resolve(store=store, identities=[("phone", PHONE)])
    consent_record(store=store, customer_id=person.pk, channel="sms", status="subscribed", source="checkout")
    return person


def incoming(body: str) -> dict:
    # The fields Twilio posts for an incoming SMS (Messaging webhook), trimmed to those we read and a few more.
    return {"MessageSid": "SM" + "a1" * 16, "SmsSid": "SM" + "a1" * 16, "AccountSid": SID, "From": PHONE,
            "To": SENDER, "Body": body, "NumMedia": "0", "NumSegments": "1", "ApiVersion": "2010-04-01"}


def post(client, params, signature=""):
    headers = {"X-Twilio-Signature": sign(TOKEN, URL, params) if signature == "" else signature}
    return client.post(URL.removeprefix(CALLBACK_BASE), params, headers=headers)


def sms_consent(store, person) -> str:
    return Consent.objects.for_store(store).get(customer=person, channel="sms").status


@pytest.mark.django_db
@pytest.mark.parametrize("body", ["BAJA", "  stop ", "Baja."])
def test_opt_out_reply_unsubscribes_once(client, store, shopper, body):
    response = post(client, incoming(body))
    assert response.status_code == 200 and b"<Response>" in response.content
    assert sms_consent(store, shopper) == "unsubscribed"
    change = ConsentChange.objects.for_store(store).filter(customer=shopper, channel="sms").latest("recorded_at")
    assert change.source == "opt_out_reply" and change.evidence["message_sid"].startswith("SM")
    assert post(client, incoming(body)).status_code == 200  # Twilio retries: still one withdrawal
    assert ConsentChange.objects.for_store(store).filter(customer=shopper, status="unsubscribed").count() == 1


@pytest.mark.django_db
def test_any_other_reply_changes_nothing(client, store, shopper):
    assert post(client, incoming("¿Hasta cuándo vale el código?")).status_code == 200
    assert sms_consent(store, shopper) == "subscribed"


@pytest.mark.django_db
def test_unsigned_or_incomplete_requests_are_refused(client, store, shopper):
    assert post(client, incoming("BAJA"), signature=sign("other-token", URL, incoming("BAJA"))).status_code == 403
    assert sms_consent(store, shopper) == "subscribed"
    params = {k: v for k, v in incoming("BAJA").items() if k != "From"}
    response = post(client, params)
    assert response.status_code == 400 and response.json()["error"]["details"][0]["field"] == "From"
    assert client.get("/webhooks/twilio/tienda/inbound").status_code == 405
