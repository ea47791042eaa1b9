"""Mastodon direct messages through Mastodon.py against a local fake answering in Mastodon's JSON."""

import pytest
from fakes.mastodon import FakeMastodon

from tertulia.channels.accounts import channel_account_set
from tertulia.channels.adapters.mastodon import MastodonDmAdapter, handle_normalize
from tertulia.channels.base import OutboundMessage, PermanentSendError, TransientSendError
from tertulia.channels.registry import adapter_for, adapters_forget

TOKEN = "mastodon-test-token"


@pytest.fixture(autouse=True)
def _fresh_adapters():
    adapters_forget()
    yield
    adapters_forget()


@pytest.fixture
def mastodon():
    with FakeMastodon(token=TOKEN, known_accounts=["ana@social.example", "luis"]) as fake:
        yield fake


def configure(store, mastodon, token=TOKEN):
    channel_account_set(store=store, channel="social_dm", provider="mastodon",
                        settings={"api_base_url": mastodon.base_url, "timeout": 5}, secrets={"access_token": token})
    return adapter_for(store_id=store.pk, channel="social_dm")


def dm(store, to="@ana@social.example", text="¡Hola! Tu carrito sigue guardado.", delivery_id=3) -> OutboundMessage:
    return OutboundMessage(delivery_id=delivery_id, store_id=store.pk, channel="social_dm", to=to, text=text,
                           language="es")


@pytest.mark.django_db
def test_direct_status_mentions_the_recipient(store, mastodon):
    adapter = configure(store, mastodon)
    assert isinstance(adapter, MastodonDmAdapter)
    result = adapter.send(dm(store))
    [request] = mastodon.requests
    assert request["path"] == "/api/v1/statuses"
    assert request["form"]["visibility"] == "direct" and request["form"]["language"] == "es"
    assert request["form"]["status"] == "@ana@social.example ¡Hola! Tu carrito sigue guardado."
    assert request["headers"]["Authorization"] == f"Bearer {TOKEN}"
    assert request["headers"]["Idempotency-Key"] == f"tertulia-{store.pk}-3"
    assert result.provider == "mastodon" and result.provider_status == "posted"
    assert result.provider_message_id in mastodon.statuses
    assert result.response["visibility"] == "direct" and result.response["mentions"] == ["ana@social.example"]


@pytest.mark.django_db
def test_retry_with_same_delivery_does_not_post_twice(store, mastodon):
    adapter = configure(store, mastodon)
    first = adapter.send(dm(store))
    again = adapter.send(dm(store))
    assert first.provider_message_id == again.provider_message_id
    assert len(mastodon.statuses) == 1


@pytest.mark.django_db
def test_local_handle_without_domain(store, mastodon):
    result = configure(store, mastodon).send(dm(store, to="luis"))
    assert mastodon.requests[0]["form"]["status"].startswith("@luis ")
    assert result.response["mentions"] == ["luis"]


@pytest.mark.django_db
def test_unresolved_handle_is_deleted_and_permanent(store, mastodon):
    adapter = configure(store, mastodon)
    with pytest.raises(PermanentSendError) as caught:
        adapter.send(dm(store, to="@nadie@otra.example"))
    assert caught.value.code == "recipient_unknown" and caught.value.response["deleted"] is True
    assert mastodon.statuses == {} and len(mastodon.deleted) == 1


@pytest.mark.django_db
def test_invalid_handle_is_permanent_without_a_request(store, mastodon):
    with pytest.raises(PermanentSendError) as caught:
        configure(store, mastodon).send(dm(store, to="not a handle!"))
    assert caught.value.code == "invalid_recipient" and mastodon.requests == []
    assert handle_normalize("Ana@Social.example") == ("@Ana@Social.example", "Ana", "Social.example")


@pytest.mark.django_db
def test_bad_token_is_permanent(store, mastodon):
    with pytest.raises(PermanentSendError) as caught:
        configure(store, mastodon, token="wrong").send(dm(store))
    assert caught.value.code == "auth_failed"
    assert caught.value.response["http_status"] == 401
    assert caught.value.response["error"] == "The access token is invalid"


@pytest.mark.django_db
@pytest.mark.parametrize(("status", "error", "kind"), [
    (422, "Validation failed: Text character limit of 500 exceeded", PermanentSendError),
    (404, "Record not found", PermanentSendError),
    (403, "This action is not allowed", PermanentSendError),
    (500, "Internal server error", TransientSendError),
    (503, "Service unavailable", TransientSendError),
    (429, "Too many requests", TransientSendError),
])
def test_errors_map_to_transient_or_permanent(store, mastodon, status, error, kind):
    adapter = configure(store, mastodon)
    mastodon.fail_next(status, error, headers={"X-RateLimit-Remaining": "0"} if status == 429 else None)
    with pytest.raises(kind) as caught:
        adapter.send(dm(store))
    if status == 429:
        assert caught.value.code == "rate_limited"
    else:
        assert caught.value.response["http_status"] == status and caught.value.response["error"] == error
    assert adapter.send(dm(store, delivery_id=4)).provider_status == "posted"


@pytest.mark.django_db
def test_too_long_text_is_refused_by_the_server(store, mastodon):
    with pytest.raises(PermanentSendError) as caught:
        configure(store, mastodon).send(dm(store, text="x" * 600))
    assert caught.value.response["http_status"] == 422


@pytest.mark.django_db
def test_unreachable_instance_is_transient(store):
    adapter = MastodonDmAdapter(api_base_url="http://127.0.0.1:9", access_token=TOKEN, timeout=2)
    with pytest.raises(TransientSendError) as caught:
        adapter.send(dm(store))
    assert caught.value.code == "connection_error"


@pytest.mark.django_db
def test_check_and_instance_answers(store, mastodon):
    adapter = configure(store, mastodon)
    assert adapter.check()["acct"] == "mastodonpy_test"
    client = adapter._client()
    assert client.instance_v1()["version"] == mastodon.instance_v1()["version"]
    assert client.instance_v2()["domain"] == mastodon.domain
