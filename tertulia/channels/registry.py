"""Which adapter sends a store's messages on a channel: `adapter_for(store_id=..., channel=...)`.

Resolution, first match wins:
1. `TERTULIA_CHANNEL_ADAPTERS[channel]`, a dotted path to an adapter class (the benchmark's null adapter);
2. the store's enabled ChannelAccount for the channel (SMTP relay, Twilio, Mastodon);
3. e-mail only: the site's EMAIL_URL (SMTP, or the Django backend it names), else the built-in outbox;
4. sandbox mode (TERTULIA_CHANNELS_SANDBOX): SMS and DMs go to the outbox too;
5. otherwise PermanentSendError(code="channel_not_configured").

A reply from the inbox names its sender: `sender="source:<id>"` is the listening source (a Mastodon,
Bluesky or X account; listening.replies) whose account heard the post and answers it, on the network's
own channel (mastodon, bluesky, x). Overrides (1) apply to those channels too.

Adapters are kept per (store, channel) and rebuilt when the account's updated_at or the relevant settings
change; the account is looked at again at most every ACCOUNT_RECHECK_SECONDS, so a send costs no query.
"""

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.utils.module_loading import import_string

from tertulia.channels.accounts import CHANNELS, ChannelAccountConfig, channel_account_config
from tertulia.channels.base import ChannelAdapter, PermanentSendError
from tertulia.channels.credentials import CredentialsError
from tertulia.channels.models import ChannelAccount

ACCOUNT_RECHECK_SECONDS = 2.0
CACHE_SIZE = 512


@dataclass(slots=True)
class _Entry:
    adapter: ChannelAdapter
    fingerprint: tuple
    account_version: Any
    checked_at: float


_cache: "OrderedDict[tuple[int, str, str], _Entry]" = OrderedDict()
_lock = threading.Lock()


def _fingerprint(channel: str) -> tuple:
    # The settings an adapter is built from; a change (override_settings in tests, a reload) rebuilds it.
    overrides = getattr(settings, "TERTULIA_CHANNEL_ADAPTERS", None) or {}
    return (overrides.get(channel), getattr(settings, "EMAIL_URL", None) if channel == "email" else None,
            sandbox_enabled(), getattr(settings, "DEFAULT_FROM_EMAIL", ""), getattr(settings, "TERTULIA_PUBLIC_URL", ""))


def sandbox_enabled() -> bool:
    return bool(getattr(settings, "TERTULIA_CHANNELS_SANDBOX", False))


def _account_version(store_id: int, channel: str, sender: str = "") -> Any:
    if sender:
        from tertulia.listening.replies import sender_version  # listening sits above channels

        return sender_version(store_id=store_id, sender=sender)
    row = ChannelAccount.objects.for_store(store_id).filter(channel=channel, enabled=True).values_list(
        "updated_at", flat=True).first()
    return row


def adapter_for(*, store_id: int, channel: str, sender: str = "") -> ChannelAdapter:
    key = (store_id, channel, sender)
    fingerprint = _fingerprint(channel)
    with _lock:
        entry = _cache.get(key)
        if entry is not None and entry.fingerprint == fingerprint:
            _cache.move_to_end(key)
            if fingerprint[0] or time.monotonic() - entry.checked_at < ACCOUNT_RECHECK_SECONDS:
                return entry.adapter
    if fingerprint[0]:
        adapter, version = _override(fingerprint[0], store_id=store_id, channel=channel), None
    else:
        version = _account_version(store_id, channel, sender)
        if entry is not None and entry.fingerprint == fingerprint and entry.account_version == version:
            entry.checked_at = time.monotonic()
            return entry.adapter
        adapter = _build(store_id=store_id, channel=channel, sender=sender)
    with _lock:
        _cache[key] = _Entry(adapter=adapter, fingerprint=fingerprint, account_version=version,
                             checked_at=time.monotonic())
        _cache.move_to_end(key)
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)
    return adapter


def adapters_forget(*, store_id: int | None = None, channel: str | None = None) -> None:
    """Drop cached adapters (all, a store's, or one), e.g. after an account changed in this process."""
    with _lock:
        for key in list(_cache):
            if (store_id is None or key[0] == store_id) and (channel is None or key[1] == channel):
                del _cache[key]


def _override(path: str, *, store_id: int, channel: str) -> ChannelAdapter:
    try:
        cls = import_string(path)
    except ImportError as exc:
        raise PermanentSendError(f"TERTULIA_CHANNEL_ADAPTERS[{channel!r}] = {path!r} cannot be imported: {exc}",
                                 provider="", code="channel_misconfigured") from None
    return cls(store_id=store_id, channel=channel)


def _build(*, store_id: int, channel: str, sender: str = "") -> ChannelAdapter:
    if sender:
        from tertulia.listening.replies import reply_adapter  # listening sits above channels

        return reply_adapter(store_id=store_id, channel=channel, sender=sender)
    if channel not in CHANNELS:
        raise PermanentSendError(f"No channel '{channel}'.", code="unknown_channel")
    try:
        account = channel_account_config(store_id=store_id, channel=channel)
    except CredentialsError as exc:
        raise PermanentSendError(str(exc), code="channel_misconfigured") from None
    if account is not None:
        return adapter_from_account(account)
    if channel == "email":
        from tertulia.channels.adapters.email import email_adapter_from_settings

        return email_adapter_from_settings(store_id=store_id)
    if sandbox_enabled():
        from tertulia.channels.outbox import OutboxAdapter

        return OutboxAdapter(store_id=store_id, channel=channel)
    raise PermanentSendError(f"The store has no {channel} account configured (tertulia channel set).",
                             code="channel_not_configured")


def adapter_from_account(account: ChannelAccountConfig) -> ChannelAdapter:
    """An adapter for a provider account; also used by `tertulia channel test`."""
    if account.provider == "smtp":
        from tertulia.channels.adapters.email import SmtpEmailAdapter

        return SmtpEmailAdapter.from_account(account)
    if account.provider == "twilio":
        from tertulia.channels.adapters.twilio import TwilioSmsAdapter

        return TwilioSmsAdapter.from_account(account)
    if account.provider == "mastodon":
        from tertulia.channels.adapters.mastodon import MastodonDmAdapter

        return MastodonDmAdapter.from_account(account)
    raise PermanentSendError(f"No adapter for provider '{account.provider}'.", code="channel_misconfigured")
