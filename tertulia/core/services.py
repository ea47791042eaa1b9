"""Writes on stores, memberships and API keys."""

import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone
from django.utils.text import slugify

from tertulia.core.errors import ApiError, ErrorDetail
from tertulia.core.models import ApiKey, ApiKeyScope, Membership, Role, Store


def store_create(*, slug: str, name: str, currency: str = "EUR", language: str = "es",
                 timezone_name: str = "Europe/Madrid", website_url: str = "") -> Store:
    clean = slugify(slug)
    if not clean or clean != slug:
        raise ApiError("invalid_slug", "A store slug uses lower-case letters, digits and hyphens.", 400,
                       [ErrorDetail(field="slug", code="invalid", message=f"Try '{clean or 'my-store'}'.")])
    if Store.objects.filter(slug=slug).exists():
        raise ApiError("store_exists", f"A store '{slug}' already exists.", 409,
                       [ErrorDetail(field="slug", code="taken", message="Choose another slug.")])
    return Store.objects.create(
        slug=slug, name=name, currency=currency, language=language, timezone=timezone_name,
        website_url=website_url, shopify_secret=secrets.token_urlsafe(32),
        woocommerce_secret=secrets.token_urlsafe(32),
    )


def membership_grant(*, store: Store, user: AbstractBaseUser, role: str) -> Membership:
    if role not in Role.values:
        raise ApiError("invalid_role", f"Unknown role '{role}'.", 400,
                       [ErrorDetail(field="role", code="invalid_choice", message=f"One of {', '.join(Role.values)}.")])
    membership, _ = Membership.objects.update_or_create(store=store, user=user, defaults={"role": role})
    return membership


@dataclass(frozen=True)
class IssuedKey:
    key: ApiKey
    secret: str  # shown once, never stored


def api_key_create(*, store: Store, name: str, scope: str = ApiKeyScope.READ_WRITE) -> IssuedKey:
    if scope not in ApiKeyScope.values:
        raise ApiError("invalid_scope", f"Unknown scope '{scope}'.", 400,
                       [ErrorDetail(field="scope", code="invalid_choice", message="read or read_write.")])
    lookup, secret = ApiKey.new_secret()
    key = ApiKey.objects.create(store=store, name=name, lookup=lookup, hashed=ApiKey.hash_secret(secret), scope=scope)
    return IssuedKey(key=key, secret=secret)


def api_key_revoke(*, store: Store, key_id: int) -> None:
    ApiKey.objects.for_store(store).filter(pk=key_id, revoked_at__isnull=True).update(revoked_at=timezone.now())


def api_key_authenticate(*, secret: str) -> ApiKey | None:
    """Return the live key for a presented secret, or None. Constant-time on the hash."""
    if not secret.startswith(ApiKey.PREFIX) or "_" not in secret[len(ApiKey.PREFIX):]:
        return None
    lookup = secret[len(ApiKey.PREFIX):].split("_", 1)[0]
    key = ApiKey.objects.select_related("store").filter(lookup=lookup).first()
    if key is None or key.revoked_at is not None:
        return None
    if not hmac.compare_digest(key.hashed, ApiKey.hash_secret(secret)):
        return None
    now = timezone.now()
    # Written at most once a minute so reads don't turn into writes.
    if key.last_used_at is None or now - key.last_used_at > timedelta(minutes=1):
        with transaction.atomic():
            ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
    return key
