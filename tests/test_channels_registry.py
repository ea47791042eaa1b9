"""adapter_for: overrides, store accounts, site mail, the outbox, sandbox mode, and the adapter cache."""

import pytest
from django.test import override_settings

from tertulia.channels import registry
from tertulia.channels.accounts import channel_account_delete, channel_account_set
from tertulia.channels.adapters.email import DjangoMailAdapter, SmtpEmailAdapter
from tertulia.channels.adapters.mastodon import MastodonDmAdapter
from tertulia.channels.adapters.null import NullAdapter
from tertulia.channels.adapters.twilio import TwilioSmsAdapter
from tertulia.channels.base import OutboundMessage, PermanentSendError
from tertulia.channels.models import ChannelAccount, OutboxMessage
from tertulia.channels.outbox import OutboxAdapter, outbox_list, outbox_render
from tertulia.channels.registry import adapter_for, adapters_forget

SID = "AC" + "a" * 32
NULL = "tertulia.channels.adapters.null.NullAdapter"


@pytest.fixture(autouse=True)
def _fresh_adapters():
    adapters_forget()
    yield
    adapters_forget()


def twilio_account(store, sender="+34910000000"):
    return channel_account_set(store=store, channel="sms", provider="twilio", secrets={"auth_token": "t"},
                               settings={"account_sid": SID, "from_number": sender, "base_url": "http://127.0.0.1:9"})


@pytest.mark.django_db
def test_override_wins_and_costs_no_query(store, django_assert_num_queries):
    with override_settings(TERTULIA_CHANNEL_ADAPTERS={"email": NULL, "sms": NULL}):
        adapter = adapter_for(store_id=store.pk, channel="email")
        assert isinstance(adapter, NullAdapter)
        result = adapter.send(OutboundMessage(delivery_id=5, store_id=store.pk, channel="email", to="a@b.example", text="x"))
        assert (result.provider, result.provider_message_id, result.provider_status) == ("null", "null-5", "accepted")
        with django_assert_num_queries(0):
            for _ in range(100):
                assert adapter_for(store_id=store.pk, channel="email") is adapter


@pytest.mark.django_db
def test_override_that_does_not_import_is_permanent(store):
    with override_settings(TERTULIA_CHANNEL_ADAPTERS={"email": "tertulia.nowhere.Adapter"}):
        with pytest.raises(PermanentSendError) as caught:
            adapter_for(store_id=store.pk, channel="email")
    assert caught.value.code == "channel_misconfigured"


@pytest.mark.django_db
def test_email_without_email_url_is_the_outbox_and_with_it_smtp(store):
    with override_settings(EMAIL_URL=None):
        assert isinstance(adapter_for(store_id=store.pk, channel="email"), OutboxAdapter)
    with override_settings(EMAIL_URL="smtp+tls://mailer:secret@smtp.example.com/?timeout=7"):
        adapter = adapter_for(store_id=store.pk, channel="email")
        assert isinstance(adapter, SmtpEmailAdapter)
        assert (adapter.server.host, adapter.server.port, adapter.server.use_tls) == ("smtp.example.com", 587, True)
        assert adapter.server.timeout == 7 and "secret" not in repr(adapter.server)
    with override_settings(EMAIL_URL="console://"):
        assert isinstance(adapter_for(store_id=store.pk, channel="email"), DjangoMailAdapter)


@pytest.mark.django_db
def test_unknown_channel_is_permanent(store):
    with override_settings(TERTULIA_CHANNELS_SANDBOX=True):
        with pytest.raises(PermanentSendError) as caught:
            adapter_for(store_id=store.pk, channel="fax")
    assert caught.value.code == "unknown_channel"


@pytest.mark.django_db
def test_no_account_is_channel_not_configured_unless_sandbox(store):
    for channel in ("sms", "social_dm"):
        with override_settings(TERTULIA_CHANNELS_SANDBOX=False):
            with pytest.raises(PermanentSendError) as caught:
                adapter_for(store_id=store.pk, channel=channel)
            assert caught.value.code == "channel_not_configured"
        with override_settings(TERTULIA_CHANNELS_SANDBOX=True):
            assert isinstance(adapter_for(store_id=store.pk, channel=channel), OutboxAdapter)


@pytest.mark.django_db
def test_sandbox_sms_and_dm_land_in_the_outbox(store):
    with override_settings(TERTULIA_CHANNELS_SANDBOX=True):
        sms = adapter_for(store_id=store.pk, channel="sms").send(OutboundMessage(
            delivery_id=0, store_id=store.pk, channel="sms", to="+34600111222", text="Tu código: HOLA10. BAJA para salir"))
        dm = adapter_for(store_id=store.pk, channel="social_dm").send(OutboundMessage(
            delivery_id=0, store_id=store.pk, channel="social_dm", to="ana@social.example", text="¡Hola!"))
    assert sms.provider == dm.provider == "outbox"
    kept_sms = outbox_list(store=store, channel="sms").get()
    assert kept_sms.to == ["+34600111222"] and outbox_render(kept_sms).text == "Tu código: HOLA10. BAJA para salir"
    assert sms.provider_message_id == f"outbox-{kept_sms.pk}"
    kept_dm = outbox_list(store=store, channel="social_dm").get()
    assert outbox_render(kept_dm).text == "@ana@social.example ¡Hola!"


@pytest.mark.django_db
def test_store_accounts_pick_their_provider(store, other_store):
    twilio_account(store)
    channel_account_set(store=store, channel="social_dm", provider="mastodon",
                        settings={"api_base_url": "https://social.example"}, secrets={"access_token": "x"})
    assert isinstance(adapter_for(store_id=store.pk, channel="sms"), TwilioSmsAdapter)
    assert isinstance(adapter_for(store_id=store.pk, channel="social_dm"), MastodonDmAdapter)
    with override_settings(TERTULIA_CHANNELS_SANDBOX=False):
        with pytest.raises(PermanentSendError):
            adapter_for(store_id=other_store.pk, channel="sms")  # accounts are per store


@pytest.mark.django_db
def test_cache_follows_account_changes(store, monkeypatch):
    twilio_account(store)
    first = adapter_for(store_id=store.pk, channel="sms")
    assert adapter_for(store_id=store.pk, channel="sms") is first
    twilio_account(store, sender="+34910000001")  # in this process: forgotten at once
    second = adapter_for(store_id=store.pk, channel="sms")
    assert second is not first and second.from_number == "+34910000001"
    # Another process changed the account: noticed by updated_at once the recheck interval passed.
    from django.utils import timezone

    ChannelAccount.objects.filter(store=store).update(settings={"account_sid": SID, "from_number": "+34910000002"},
                                                      updated_at=timezone.now())
    assert adapter_for(store_id=store.pk, channel="sms") is second
    monkeypatch.setattr(registry, "ACCOUNT_RECHECK_SECONDS", 0.0)
    third = adapter_for(store_id=store.pk, channel="sms")
    assert third is not second and third.from_number == "+34910000002"
    assert adapter_for(store_id=store.pk, channel="sms") is third  # unchanged updated_at: same adapter
    channel_account_delete(store=store, channel="sms")
    with override_settings(TERTULIA_CHANNELS_SANDBOX=False):
        with pytest.raises(PermanentSendError):
            adapter_for(store_id=store.pk, channel="sms")


@pytest.mark.django_db
def test_disabled_account_counts_as_none(store):
    channel_account_set(store=store, channel="sms", provider="twilio", secrets={"auth_token": "t"}, enabled=False,
                        settings={"account_sid": SID, "from_number": "+34910000000"})
    with override_settings(TERTULIA_CHANNELS_SANDBOX=True):
        assert isinstance(adapter_for(store_id=store.pk, channel="sms"), OutboxAdapter)
    assert OutboxMessage.objects.count() == 0


@pytest.mark.django_db
def test_unreadable_secrets_are_channel_misconfigured(store):
    twilio_account(store)
    ChannelAccount.objects.filter(store=store).update(secrets_encrypted="gAAAAAnot-a-token")
    adapters_forget()
    with pytest.raises(PermanentSendError) as caught:
        adapter_for(store_id=store.pk, channel="sms")
    assert caught.value.code == "channel_misconfigured"
