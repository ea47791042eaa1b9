"""A store's provider accounts (SMTP relay, Twilio, a Mastodon instance): validation, writes and reads.

Settings are plain JSON (base URL, sender...); secrets (password, auth token, access token) are encrypted
with channels.credentials and only ever decrypted to build an adapter. Nothing here returns or logs a secret
except `ChannelAccountConfig.secrets`, which only the registry reads.
"""

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction
from django.utils.timezone import now as utc_now

from tertulia.channels.credentials import secrets_decrypt, secrets_encrypt, secrets_rotate
from tertulia.channels.models import ChannelAccount
from tertulia.core.errors import ApiError, ErrorDetail
from tertulia.core.models import Store
from tertulia.core.specs import settings_problems

_ACCOUNT_SID = re.compile(r"^AC[0-9a-fA-F]{32}$")
_SERVICE_SID = re.compile(r"^MG[0-9a-fA-F]{32}$")
_E164 = re.compile(r"^\+[1-9]\d{6,14}$")
_ALPHA_SENDER = re.compile(r"^(?=.*[A-Za-z])[A-Za-z0-9 ]{1,11}$")  # Twilio's alphanumeric sender ids


@dataclass(frozen=True, slots=True)
class ProviderSpec:
    channel: str
    settings: dict[str, type | tuple[type, ...]]  # allowed non-secret keys and their JSON types
    required_settings: frozenset[str]
    secrets: frozenset[str]
    required_secrets: frozenset[str]


PROVIDERS: dict[str, ProviderSpec] = {
    "smtp": ProviderSpec(
        channel="email",
        settings={"host": str, "port": int, "username": str, "use_tls": bool, "use_ssl": bool,
                  "from_email": str, "reply_to": str, "timeout": (int, float)},
        required_settings=frozenset({"host", "from_email"}),
        secrets=frozenset({"password"}), required_secrets=frozenset(),
    ),
    "twilio": ProviderSpec(
        channel="sms",
        settings={"account_sid": str, "from_number": str, "messaging_service_sid": str, "base_url": str,
                  "status_callback_base_url": str, "timeout": (int, float)},
        required_settings=frozenset({"account_sid"}),
        secrets=frozenset({"auth_token"}), required_secrets=frozenset({"auth_token"}),
    ),
    "mastodon": ProviderSpec(
        channel="social_dm",
        settings={"api_base_url": str, "timeout": (int, float)},
        required_settings=frozenset({"api_base_url"}),
        secrets=frozenset({"access_token"}), required_secrets=frozenset({"access_token"}),
    ),
}
CHANNELS = frozenset(spec.channel for spec in PROVIDERS.values())


@dataclass(frozen=True, slots=True)
class ChannelAccountConfig:
    """What an adapter is built from: the account plus the few store fields adapters use."""

    store_id: int
    store_slug: str
    store_name: str
    channel: str
    provider: str
    settings: dict[str, Any]
    secrets: dict[str, Any] = field(repr=False)
    updated_at: datetime | None = None


def _http_url(value: str) -> bool:
    parts = urlsplit(value)
    return parts.scheme in {"http", "https"} and bool(parts.netloc)


def _problems(provider: str, settings: dict, secrets: dict, *, secrets_known: set[str]) -> list[ErrorDetail]:
    spec = PROVIDERS[provider]
    problems = settings_problems(label=f"{provider} accounts", settings=settings, secrets=secrets,
                                 allowed=spec.settings, required=spec.required_settings, secret_names=spec.secrets,
                                 required_secrets=spec.required_secrets, secrets_known=secrets_known)
    if problems:
        return problems

    def bad(key: str, message: str) -> None:
        problems.append(ErrorDetail(field=f"settings.{key}", code="invalid", message=message))

    for key in ("base_url", "api_base_url", "status_callback_base_url"):
        if key in settings and not _http_url(settings[key]):
            bad(key, "Must be an http(s) URL.")
    if provider == "twilio":
        if not _ACCOUNT_SID.match(settings["account_sid"]):
            bad("account_sid", "A Twilio Account SID: AC followed by 32 hexadecimal digits.")
        sender = settings.get("from_number", "")
        service = settings.get("messaging_service_sid", "")
        if not sender and not service:
            bad("from_number", "Give a sender (from_number) or a messaging_service_sid.")
        if sender and not (_E164.match(sender) or _ALPHA_SENDER.match(sender)):
            bad("from_number", "An E.164 number (+34600000000) or an alphanumeric sender id of up to 11 characters.")
        if service and not _SERVICE_SID.match(service):
            bad("messaging_service_sid", "A Messaging Service SID: MG followed by 32 hexadecimal digits.")
    if provider == "smtp":
        if "port" in settings and not 0 < settings["port"] < 65536:
            bad("port", "Between 1 and 65535.")
        if settings.get("use_tls") and settings.get("use_ssl"):
            bad("use_ssl", "use_tls (STARTTLS) and use_ssl (implicit TLS) exclude each other.")
        for key in ("from_email", "reply_to"):
            if settings.get(key):
                address = settings[key]
                address = address[address.find("<") + 1:address.rfind(">")] if "<" in address else address
                try:
                    validate_email(address)
                except ValidationError:
                    bad(key, "Not an e-mail address.")
    if "timeout" in settings and not 0 < settings["timeout"] <= 120:
        bad("timeout", "Seconds, more than 0 and at most 120.")
    return problems


def channel_account_set(*, store: Store, channel: str, provider: str, settings: dict[str, Any] | None = None,
                        secrets: dict[str, Any] | None = None, enabled: bool = True) -> ChannelAccount:
    """Create or replace the store's account for `channel`.

    `settings` replaces the stored settings; `secrets=None` keeps the stored secrets (changing a sender
    does not mean typing the token again), a dict replaces them. Nothing is saved when anything is invalid.
    """
    spec = PROVIDERS.get(provider)
    if spec is None:
        raise ApiError("unknown_provider", f"No provider '{provider}'.", 422,
                       [ErrorDetail(field="provider", code="unknown", message=f"One of: {', '.join(sorted(PROVIDERS))}.")])
    if spec.channel != channel:
        raise ApiError("invalid_account", f"{provider} serves the {spec.channel} channel, not {channel}.", 422,
                       [ErrorDetail(field="channel", code="mismatch", message=f"{provider} serves {spec.channel}.")])
    settings = dict(settings or {})
    with transaction.atomic():
        account = ChannelAccount.objects.for_store(store).select_for_update().filter(channel=channel).first()
        keep_secrets = secrets is None and account is not None and account.provider == provider
        known = set(secrets_decrypt(account.secrets_encrypted)) if keep_secrets else set(secrets or {})
        problems = _problems(provider, settings, {} if keep_secrets else dict(secrets or {}), secrets_known=known)
        if problems:
            raise ApiError("invalid_account", f"The {provider} account is not valid; nothing was saved.", 422, problems)
        token = account.secrets_encrypted if keep_secrets else secrets_encrypt(dict(secrets or {}))
        moment = utc_now()
        if account is None:
            account = ChannelAccount.objects.create(store=store, channel=channel, provider=provider, settings=settings,
                                                    secrets_encrypted=token, enabled=enabled, created_at=moment,
                                                    updated_at=moment)
        else:
            account.provider, account.settings, account.secrets_encrypted = provider, settings, token
            account.enabled, account.updated_at = enabled, moment
            account.save(update_fields=["provider", "settings", "secrets_encrypted", "enabled", "updated_at"])
    _forget(store.pk, channel)
    return account


def channel_account_delete(*, store: Store, channel: str) -> bool:
    deleted, _ = ChannelAccount.objects.for_store(store).filter(channel=channel).delete()
    _forget(store.pk, channel)
    return bool(deleted)


def channel_accounts_rotate() -> int:
    """Re-encrypt every account's secrets under the current SECRET_KEY; the number of accounts rewritten."""
    count = 0
    for account in ChannelAccount.objects.exclude(secrets_encrypted="").only("pk", "secrets_encrypted"):
        ChannelAccount.objects.filter(pk=account.pk).update(secrets_encrypted=secrets_rotate(account.secrets_encrypted))
        count += 1
    return count


def channel_account_describe(account: ChannelAccount) -> dict[str, Any]:
    """The account without its secrets: which secrets are set, never their values."""
    try:
        secret_names = sorted(secrets_decrypt(account.secrets_encrypted))
        readable = True
    except Exception:  # noqa: BLE001 - an unreadable token is reported, not raised, when describing
        secret_names, readable = [], False
    return {"channel": account.channel, "provider": account.provider, "enabled": account.enabled,
            "settings": account.settings, "secrets_set": secret_names, "secrets_readable": readable,
            "updated_at": account.updated_at.isoformat()}


def channel_account_config(*, store_id: int, channel: str) -> ChannelAccountConfig | None:
    """The store's enabled account for `channel` with its secrets decrypted, or None (CredentialsError if unreadable)."""
    account = (ChannelAccount.objects.for_store(store_id).filter(channel=channel, enabled=True)
               .select_related("store").first())
    if account is None:
        return None
    return ChannelAccountConfig(
        store_id=store_id, store_slug=account.store.slug, store_name=account.store.name, channel=channel,
        provider=account.provider, settings=dict(account.settings), secrets=secrets_decrypt(account.secrets_encrypted),
        updated_at=account.updated_at,
    )


def _forget(store_id: int, channel: str) -> None:
    # This process's cached adapter goes at once; other processes notice updated_at within seconds.
    from tertulia.channels.registry import adapters_forget

    adapters_forget(store_id=store_id, channel=channel)
