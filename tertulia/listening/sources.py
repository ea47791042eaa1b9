"""A store's listening sources: validation, writes and reads. Secrets are encrypted at rest (channels.credentials).

Settings are plain JSON checked against the network's SPEC (names, JSON types, required ones) and its
module's own `validate`; secrets (tokens, app passwords) are encrypted and only decrypted to build a
connector. Nothing here returns or logs a secret except `SourceConfig.secrets`.
"""

import re
import secrets as random_secrets
from typing import Any

from django.db import transaction
from django.utils import timezone

from tertulia.channels.credentials import secrets_decrypt, secrets_encrypt
from tertulia.core.errors import ApiError, ErrorDetail
from tertulia.core.models import Store
from tertulia.core.specs import settings_problems
from tertulia.listening.connectors import MODULES, SourceConfig, connector_module
from tertulia.listening.models import Source

_KEY = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
MAX_SOURCES_PER_STORE = 100


def _problems(network: str, settings: dict, secrets: dict, *, secrets_known: set[str],
              kept_secrets: dict | None = None) -> list[ErrorDetail]:
    module = connector_module(network)
    spec = module.SPEC
    problems = settings_problems(label=f"{network} sources", settings=settings, secrets=secrets,
                                 allowed=spec.settings, required=spec.required_settings, secret_names=spec.secrets,
                                 required_secrets=spec.required_secrets, secrets_known=secrets_known)
    poll = settings.get("poll_seconds")
    if isinstance(poll, int | float) and not isinstance(poll, bool) and not spec.min_poll_seconds <= poll <= 86400:
        problems.append(ErrorDetail(field="settings.poll_seconds", code="invalid",
                                    message=f"Between {spec.min_poll_seconds:g} and 86400 seconds."))
    if not problems and hasattr(module, "validate"):
        # The module judges the secrets the source will have: the new ones, or the stored ones it keeps.
        problems.extend(module.validate(settings, secrets if kept_secrets is None else kept_secrets))
    return problems


def source_set(*, store: Store, network: str, key: str, name: str = "", settings: dict[str, Any] | None = None,
               secrets: dict[str, Any] | None = None, enabled: bool = True) -> Source:
    """Create or replace the store's source `key`.

    `settings` replaces the stored settings; `secrets=None` keeps the stored secrets (changing a hashtag
    does not mean typing the token again). Nothing is saved when anything is invalid. A changed source is
    due at once, so the change takes effect in the next second, not at the next poll.
    """
    if network not in MODULES:
        raise ApiError("unknown_network", f"No listening network '{network}'.", 422,
                       [ErrorDetail(field="network", code="unknown", message=f"One of: {', '.join(sorted(MODULES))}.")])
    if not isinstance(key, str) or not _KEY.match(key):
        raise ApiError("invalid_source", "A source key is 1-64 lower-case letters, digits, '-' or '_'.", 422,
                       [ErrorDetail(field="key", code="invalid", message="Lower-case letters, digits, - and _.")])
    if not isinstance(name, str) or len(name) > 100:
        raise ApiError("invalid_source", "The name has at most 100 characters.", 422,
                       [ErrorDetail(field="name", code="too_long", message="At most 100 characters.")])
    settings = dict(settings or {})
    with transaction.atomic():
        source = Source.objects.for_store(store).select_for_update().filter(key=key).first()
        if source is None and Source.objects.for_store(store).count() >= MAX_SOURCES_PER_STORE:
            raise ApiError("too_many_sources", f"A store has at most {MAX_SOURCES_PER_STORE} sources.", 422)
        keep = secrets is None and source is not None and source.network == network
        stored = secrets_decrypt(source.secrets_encrypted) if keep else None
        known = set(stored) if stored is not None else set(secrets or {})
        problems = _problems(network, settings, {} if keep else dict(secrets or {}), secrets_known=known,
                             kept_secrets=stored)
        if problems:
            raise ApiError("invalid_source", f"The {network} source is not valid; nothing was saved.", 422, problems)
        token = source.secrets_encrypted if keep else secrets_encrypt(dict(secrets or {}))
        moment = timezone.now()
        if source is None:
            source = Source.objects.create(store=store, network=network, key=key, name=name or key, settings=settings,
                                           secrets_encrypted=token, enabled=enabled, next_run_at=moment,
                                           created_at=moment, updated_at=moment)
        else:
            if source.network != network:
                source.cursor = {}  # another platform: nothing of the old cursor applies
            source.network, source.name, source.settings = network, name or source.name, settings
            source.secrets_encrypted, source.enabled = token, enabled
            source.next_run_at, source.updated_at = moment, moment
            source.consecutive_failures, source.failing_since = 0, None
            source.save()
    return source


def source_webhook_token(*, store: Store, key: str) -> tuple[Source, str]:
    """A new random token for a pushed source (inbound webhook, inbound mail), replacing the old one."""
    token = random_secrets.token_urlsafe(32)
    with transaction.atomic():
        source = Source.objects.for_store(store).select_for_update().get(key=key)
        stored = secrets_decrypt(source.secrets_encrypted)
        stored["token"] = token
        source.secrets_encrypted = secrets_encrypt(stored)
        source.updated_at = timezone.now()
        source.save(update_fields=["secrets_encrypted", "updated_at"])
    return source, token


def source_delete(*, store: Store, key: str) -> bool:
    deleted, _ = Source.objects.for_store(store).filter(key=key).delete()
    return bool(deleted)


def source_cursor_reset(*, store: Store, key: str) -> bool:
    """Forget where the source stopped: the next session starts from the platform's present."""
    return bool(Source.objects.for_store(store).filter(key=key).update(cursor={}, next_run_at=timezone.now(),
                                                                         updated_at=timezone.now()))


def source_config(source: Source) -> SourceConfig:
    """The source with its secrets decrypted (CredentialsError if unreadable)."""
    return SourceConfig(source_id=source.pk, store_id=source.store_id, network=source.network, key=source.key,
                        settings=dict(source.settings or {}), secrets=secrets_decrypt(source.secrets_encrypted))


def source_describe(source: Source) -> dict[str, Any]:
    """The source and its health, without its secrets: which secrets are set, never their values."""
    try:
        secret_names, readable = sorted(secrets_decrypt(source.secrets_encrypted)), True
    except Exception:  # noqa: BLE001 - an unreadable token is reported, not raised, when describing
        secret_names, readable = [], False

    def iso(value):
        return value.isoformat() if value else None

    return {
        "key": source.key, "network": source.network, "name": source.name, "enabled": source.enabled,
        "settings": source.settings, "secrets_set": secret_names, "secrets_readable": readable,
        "cursor": source.cursor,
        "health": {
            "status": source_status(source), "last_run_at": iso(source.last_run_at),
            "last_success_at": iso(source.last_success_at), "last_error_at": iso(source.last_error_at),
            "last_error_code": source.last_error_code, "last_error": source.last_error,
            "consecutive_failures": source.consecutive_failures, "failing_since": iso(source.failing_since),
            "lag_seconds": source.lag_seconds, "next_run_at": iso(source.next_run_at),
            "posts_seen": source.posts_seen, "mentions_stored": source.mentions_stored,
            "duplicates_seen": source.duplicates_seen, "malformed_count": source.malformed_count,
        },
    }


def source_status(source: Source) -> str:
    """ok, failing (errors, not yet alerted), down (alerted), waiting (never ran) or disabled."""
    from tertulia.listening.runner import source_is_down

    if not source.enabled:
        return "disabled"
    if source.consecutive_failures:
        return "down" if source_is_down(source) else "failing"
    if source.last_success_at is None:
        return "waiting"
    return "ok"
