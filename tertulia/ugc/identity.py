"""Who wrote or voted, as keyed hashes: stable within a store, useless outside it, never reversible here."""

import hashlib
import hmac
import re

from django.conf import settings

_DEVICE_ID = re.compile(r"^[A-Za-z0-9._:-]{8,128}$")


def identity_hash(*, store_id: int, kind: str, value: str) -> str:
    """HMAC-SHA256 of `value` under a key derived from SECRET_KEY, per store and per kind ("ip", "device")."""
    if not value:
        return ""
    key = hashlib.sha256(f"tertulia.ugc.identity:{settings.SECRET_KEY}".encode()).digest()
    return hmac.new(key, f"{store_id}:{kind}:{value}".encode(), hashlib.sha256).hexdigest()


def device_id_valid(value: str) -> bool:
    return bool(_DEVICE_ID.match(value))
