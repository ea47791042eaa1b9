"""Normalising and checking the ways a person is known: e-mail, phone (E.164), social handles."""

import re

import phonenumbers

from tertulia.customers.models import IdentityKind

_EMAIL = re.compile(r"^[^@\s<>()\[\],;:\"]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$")
_HANDLE = re.compile(r"^[a-z0-9_.\-@:]{1,253}$")
HANDLE_KINDS = {
    IdentityKind.MASTODON.value, IdentityKind.BLUESKY.value, IdentityKind.X.value,
    IdentityKind.INSTAGRAM.value, IdentityKind.FACEBOOK.value, IdentityKind.TIKTOK.value,
}


class InvalidIdentity(ValueError):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def normalize_email(value: object) -> str:
    if not isinstance(value, str):
        raise InvalidIdentity("invalid_type", "Must be a string.")
    email = value.strip()
    if len(email) > 254 or not _EMAIL.match(email):
        raise InvalidIdentity("invalid_email", f"'{value}' is not a valid e-mail address.")
    local, domain = email.rsplit("@", 1)
    return f"{local}@{domain.lower()}".lower()


def normalize_phone(value: object, default_region: str | None = None) -> str:
    """Return the number in E.164 (+34600111222). Without a region the number must start with +."""
    if not isinstance(value, str):
        raise InvalidIdentity("invalid_type", "Must be a string.")
    try:
        number = phonenumbers.parse(value, default_region)
    except phonenumbers.NumberParseException:
        raise InvalidIdentity("invalid_phone", f"'{value}' is not a phone number in international format (+CC...).") from None
    if not phonenumbers.is_valid_number(number):
        raise InvalidIdentity("invalid_phone", f"'{value}' is not a valid phone number.")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalize_handle(kind: str, value: object) -> str:
    if kind not in HANDLE_KINDS:
        raise InvalidIdentity("unknown_network", f"Unknown social network '{kind}'.")
    if not isinstance(value, str):
        raise InvalidIdentity("invalid_type", "Must be a string.")
    handle = value.strip().lower().lstrip("@")
    if not handle or not _HANDLE.match(handle):
        raise InvalidIdentity("invalid_handle", f"'{value}' is not a valid {kind} handle.")
    return handle
