"""Provider secrets encrypted at rest, key rotation, account validation, and `tertulia channel` (never printing secrets)."""

import io
import json

import pytest
from django.core.management import CommandError, call_command
from django.test import override_settings
from fakes.twilio import FakeTwilio

from tertulia.channels.accounts import channel_account_config, channel_account_set
from tertulia.channels.credentials import CredentialsError, secrets_decrypt, secrets_encrypt
from tertulia.channels.models import ChannelAccount, OutboxMessage
from tertulia.channels.registry import adapters_forget
from tertulia.core.errors import ApiError

SID = "AC" + "b" * 32
TOKEN = "super-secret-auth-token"


@pytest.fixture(autouse=True)
def _fresh_adapters():
    adapters_forget()
    yield
    adapters_forget()


def test_round_trip_and_nothing_readable_at_rest():
    token = secrets_encrypt({"auth_token": TOKEN, "n": 1})
    assert TOKEN not in token and token.startswith("gAAAAA")
    assert secrets_decrypt(token) == {"auth_token": TOKEN, "n": 1}
    assert secrets_encrypt({}) == "" and secrets_decrypt("") == {}


def test_rotation_with_fallback_keys():
    with override_settings(SECRET_KEY="old-key-" + "x" * 40):
        token = secrets_encrypt({"auth_token": TOKEN})
    with override_settings(SECRET_KEY="new-key-" + "y" * 40, SECRET_KEY_FALLBACKS=[]):
        with pytest.raises(CredentialsError):
            secrets_decrypt(token)
    with override_settings(SECRET_KEY="new-key-" + "y" * 40, SECRET_KEY_FALLBACKS=["old-key-" + "x" * 40]):
        assert secrets_decrypt(token) == {"auth_token": TOKEN}
    with override_settings(SECRET_KEY="new-key-" + "y" * 40, TERTULIA_SECRET_KEYS_FALLBACK=["old-key-" + "x" * 40]):
        assert secrets_decrypt(token) == {"auth_token": TOKEN}


@pytest.mark.django_db
def test_rotate_command_re_encrypts_under_the_current_key(store):
    with override_settings(SECRET_KEY="old-key-" + "x" * 40):
        channel_account_set(store=store, channel="sms", provider="twilio", secrets={"auth_token": TOKEN},
                            settings={"account_sid": SID, "from_number": "+34910000000"})
    with override_settings(SECRET_KEY="new-key-" + "y" * 40, SECRET_KEY_FALLBACKS=["old-key-" + "x" * 40]):
        out = io.StringIO()
        call_command("channel", "rotate", stdout=out)
        assert json.loads(out.getvalue()) == {"rotated": 1}
    with override_settings(SECRET_KEY="new-key-" + "y" * 40, SECRET_KEY_FALLBACKS=[]):
        assert channel_account_config(store_id=store.pk, channel="sms").secrets == {"auth_token": TOKEN}


@pytest.mark.django_db
def test_secrets_are_encrypted_in_the_database(store):
    channel_account_set(store=store, channel="sms", provider="twilio", secrets={"auth_token": TOKEN},
                        settings={"account_sid": SID, "from_number": "+34910000000"})
    row = ChannelAccount.objects.get(store=store)
    assert TOKEN not in row.secrets_encrypted and TOKEN not in json.dumps(row.settings)


@pytest.mark.django_db
@pytest.mark.parametrize(("provider", "channel", "settings", "secrets", "field"), [
    ("twilio", "sms", {"account_sid": "ACnope", "from_number": "+34910000000"}, {"auth_token": "t"}, "settings.account_sid"),
    ("twilio", "sms", {"account_sid": SID}, {"auth_token": "t"}, "settings.from_number"),
    ("twilio", "sms", {"account_sid": SID, "from_number": "+34910000000"}, {}, "secrets.auth_token"),
    ("twilio", "sms", {"account_sid": SID, "from_number": "+34910000000", "base_url": "ftp://x"}, {"auth_token": "t"},
     "settings.base_url"),
    ("twilio", "sms", {"account_sid": SID, "from_number": "+34910000000", "colour": "red"}, {"auth_token": "t"},
     "settings.colour"),
    ("mastodon", "social_dm", {"api_base_url": "social.example"}, {"access_token": "x"}, "settings.api_base_url"),
    ("smtp", "email", {"host": "smtp.example", "from_email": "not an address"}, {}, "settings.from_email"),
    ("smtp", "email", {"host": "smtp.example", "from_email": "a@b.example", "port": "25"}, {}, "settings.port"),
    ("smtp", "email", {"host": "h", "from_email": "a@b.example", "use_tls": True, "use_ssl": True}, {}, "settings.use_ssl"),
    ("twilio", "email", {}, {}, "channel"),
    ("pigeon", "sms", {}, {}, "provider"),
])
def test_invalid_accounts_name_the_field_and_save_nothing(store, provider, channel, settings, secrets, field):
    with pytest.raises(ApiError) as caught:
        channel_account_set(store=store, channel=channel, provider=provider, settings=settings, secrets=secrets)
    assert caught.value.status == 422
    assert field in [detail.field for detail in caught.value.details]
    assert not ChannelAccount.objects.exists()


@pytest.mark.django_db
def test_secrets_kept_when_not_given_again(store):
    channel_account_set(store=store, channel="sms", provider="twilio", secrets={"auth_token": TOKEN},
                        settings={"account_sid": SID, "from_number": "+34910000000"})
    channel_account_set(store=store, channel="sms", provider="twilio", secrets=None,
                        settings={"account_sid": SID, "from_number": "+34910000009"})
    config = channel_account_config(store_id=store.pk, channel="sms")
    assert config.secrets == {"auth_token": TOKEN} and config.settings["from_number"] == "+34910000009"
    assert TOKEN not in repr(config)


@pytest.mark.django_db
def test_channel_command_set_show_test_never_print_secrets(store, monkeypatch):
    monkeypatch.setenv("TWILIO_TOKEN_FOR_TEST", TOKEN)
    with FakeTwilio({SID: TOKEN}) as twilio:
        out = io.StringIO()
        call_command("channel", "set", "tienda", "sms", "--provider", "twilio", "--setting", f"account_sid={SID}",
                     "--setting", "from_number=+34910000000", "--setting", f"base_url={twilio.base_url}",
                     "--setting", "timeout=5", "--secret-env", "auth_token=TWILIO_TOKEN_FOR_TEST", stdout=out)
        shown = json.loads(out.getvalue())
        assert shown["secrets_set"] == ["auth_token"] and shown["settings"]["timeout"] == 5
        out = io.StringIO()
        call_command("channel", "show", "tienda", stdout=out)
        assert json.loads(out.getvalue())["accounts"][0]["provider"] == "twilio"
        out = io.StringIO()
        call_command("channel", "test", "tienda", "sms", stdout=out)
        assert json.loads(out.getvalue())["account_sid"] == SID
        out = io.StringIO()
        call_command("channel", "test", "tienda", "sms", "--to", "+34600111222", stdout=out)
        assert json.loads(out.getvalue())["provider_message_id"].startswith("SM")
        assert twilio.requests[-1]["form"]["To"] == "+34600111222"
        everything = out.getvalue()
    assert TOKEN not in everything
    with pytest.raises(CommandError, match="settings.account_sid"):
        call_command("channel", "set", "tienda", "sms", "--provider", "twilio", "--setting", "account_sid=nope",
                     "--secret-env", "auth_token=TWILIO_TOKEN_FOR_TEST")
    with pytest.raises(CommandError, match="not set"):
        call_command("channel", "set", "tienda", "sms", "--provider", "twilio", "--secret-env", "auth_token=NOT_THERE_X")
    with pytest.raises(CommandError, match="No store"):
        call_command("channel", "show", "nadie")


@pytest.mark.django_db
def test_channel_test_failure_is_a_command_error_without_secrets(store, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO(json.dumps({"auth_token": "wrong-" + TOKEN})))
    with FakeTwilio({SID: TOKEN}) as twilio:
        call_command("channel", "set", "tienda", "sms", "--provider", "twilio", "--setting", f"account_sid={SID}",
                     "--setting", "from_number=+34910000000", "--setting", f"base_url={twilio.base_url}",
                     "--secrets-stdin", stdout=io.StringIO())
        with pytest.raises(CommandError) as caught:
            call_command("channel", "test", "tienda", "sms")
    assert "auth_failed" in str(caught.value) and TOKEN not in str(caught.value)


@pytest.mark.django_db
def test_channel_test_to_the_outbox_in_sandbox(store):
    with override_settings(EMAIL_URL=None):
        out = io.StringIO()
        call_command("channel", "test", "tienda", "email", "--to", "ana@example.com", stdout=out)
    assert json.loads(out.getvalue())["provider"] == "outbox"
    assert OutboxMessage.objects.get().to == ["ana@example.com"]
