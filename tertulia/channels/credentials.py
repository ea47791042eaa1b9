"""Provider secrets at rest: a JSON object encrypted with Fernet under a key derived from SECRET_KEY.

The key is derived (HKDF-SHA256, a purpose-specific `info`) rather than taken from SECRET_KEY itself, so
the same secret never serves two purposes. Rotation: set the new SECRET_KEY and put the old one first in
SECRET_KEY_FALLBACKS (Django's own setting, also used for sessions and signing) or in
TERTULIA_SECRET_KEYS_FALLBACK; tokens made under any of them still decrypt, and `tertulia channel rotate`
re-encrypts every account under the current key, after which the old key can be dropped.
"""

import base64
from typing import Any

import orjson
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings

_INFO = b"tertulia.channels.credentials.v1"


class CredentialsError(Exception):
    """The stored secrets cannot be read: the key changed without a fallback, or the token is damaged."""


def _fernet_key(secret: str) -> bytes:
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO).derive(secret.encode())
    return base64.urlsafe_b64encode(derived)


def _secret_keys() -> list[str]:
    keys = [settings.SECRET_KEY]
    for name in ("SECRET_KEY_FALLBACKS", "TERTULIA_SECRET_KEYS_FALLBACK"):
        for key in getattr(settings, name, None) or []:
            if key and key not in keys:
                keys.append(key)
    return keys


def _fernet() -> MultiFernet:
    # The first key encrypts; all of them are tried to decrypt.
    return MultiFernet([Fernet(_fernet_key(key)) for key in _secret_keys()])


def secrets_encrypt(secrets: dict[str, Any]) -> str:
    if not secrets:
        return ""
    return _fernet().encrypt(orjson.dumps(secrets, option=orjson.OPT_SORT_KEYS)).decode("ascii")


def secrets_decrypt(token: str) -> dict[str, Any]:
    if not token:
        return {}
    try:
        data = orjson.loads(_fernet().decrypt(token.encode("ascii")))
    except (InvalidToken, ValueError, UnicodeEncodeError):
        raise CredentialsError("The channel account's secrets cannot be decrypted with SECRET_KEY or its fallbacks. "
                               "Set the key they were saved under in SECRET_KEY_FALLBACKS, or set them again.") from None
    if not isinstance(data, dict):
        raise CredentialsError("The channel account's secrets are not a JSON object.")
    return data


def secrets_rotate(token: str) -> str:
    """The same secrets re-encrypted under the current SECRET_KEY (a no-op for an empty token)."""
    if not token:
        return ""
    try:
        return _fernet().rotate(token.encode("ascii")).decode("ascii")
    except (InvalidToken, UnicodeEncodeError):
        raise CredentialsError("The channel account's secrets cannot be decrypted with SECRET_KEY or its fallbacks.") from None
