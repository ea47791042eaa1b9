"""Finding links, e-mail addresses, phone numbers and identity numbers in a raw text (also obfuscated).

Shared by the promotional check (a link or a number offered as contact) and the personal data check
(someone's address or number published). Cheap tests come first: phonenumbers only runs when the
text holds seven digits or more.
"""

import re
from dataclasses import dataclass, field

import phonenumbers

_TLDS = ("com|net|org|es|io|info|biz|xyz|ly|shop|store|online|site|link|gl|tk|ru|cn|mx|ar|cl|tv|app|club|eu|fr|pt|"
         "top|live|click|uk|be|me|co|us|ws|cc|gg")
URL = re.compile(
    r"(?:https?://|www\.)[^\s<>\"']+"
    rf"|(?<![@\w.])(?:[a-z0-9](?:[a-z0-9-]{{0,61}}[a-z0-9])?\.)+(?:{_TLDS})(?![\w@])(?:/[^\s<>\"']*)?",
    re.IGNORECASE,
)
# "tienda punto com", "site dot com", "www . site . com": spelled out so no filter sees a link.
URL_SPELLED = re.compile(rf"\b[a-z0-9-]{{2,}} ?(?:\(?(?:dot|punto)\)?|\. ) ?(?:{_TLDS})\b", re.IGNORECASE)
SHORTENERS = ("bit.ly", "tinyurl", "goo.gl", "t.co", "ow.ly", "cutt.ly", "is.gd", "shorturl", "rb.gy", "tiny.cc",
              "linktr.ee", "wa.me", "t.me")
EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)*\.[a-z]{2,}", re.IGNORECASE)
# Spelled out: "name [at] gmail.com", "name arroba gmail punto com", "name at gmail dot com" (a plain
# "at walmart.com" is a shop, not an address, so " at " needs the dot spelled out too).
EMAIL_SPELLED = re.compile(
    r"\b[\w.+-]{2,} ?(?:(?:[\[(](?:at|arroba)[\])]|arroba) ?[\w-]{2,} ?(?:[\[(]?(?:dot|punto)[\])]?|\.)"
    r"|at ?[\w-]{2,} ?[\[(]?(?:dot|punto)[\])]?) ?(?:com|net|org|es|io|eu)\b",
    re.IGNORECASE,
)
# Addresses of a role, not a person: a shop's support address is not personal data.
ROLE_MAILBOX = re.compile(r"^(?:info|support|soporte|help|ayuda|contact|contacto|sales|ventas|customerservice|"
                          r"customer\.?service|atencion|atencionalcliente|hola|hello|admin|noreply|no-reply|pedidos|"
                          r"orders|service|servicio|shop|tienda|office|oficina)@", re.IGNORECASE)
_DIGIT_RUN = re.compile(r"\d(?:[\s().-]{0,2}\d){6,}")
DNI = re.compile(r"\b(\d{8})[ -]?([A-HJ-NP-TV-Z])\b", re.IGNORECASE)
NIE = re.compile(r"\b([XYZ])[ -]?(\d{7})[ -]?([A-HJ-NP-TV-Z])\b", re.IGNORECASE)
IBAN = re.compile(r"\b([A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]{4}){3,7}(?:[ ]?\d{1,3})?)\b")
CARD = re.compile(r"\b(?:\d[ -]?){13,19}\b")
_DNI_LETTERS = "TRWAGMYFPDXBNJZSQVHLCKE"
_REGIONS = {"es": ("ES", "US", "GB", "MX"), "en": ("US", "GB", "ES", "MX")}


@dataclass(slots=True)
class Contacts:
    urls: list[str] = field(default_factory=list)
    emails: list[str] = field(default_factory=list)
    phones: list[str] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)  # DNI/NIE, IBAN, card numbers

    @property
    def any_contact(self) -> bool:
        return bool(self.emails or self.phones)


def _domain(url: str) -> str:
    url = url.lower()
    for prefix in ("https://", "http://"):
        if url.startswith(prefix):
            url = url[len(prefix):]
    if url.startswith("www."):
        url = url[4:]
    return url.split("/", 1)[0].split("?", 1)[0].rstrip(".,;:!?)")


def is_allowed(address: str, allowed: tuple[str, ...]) -> bool:
    domain = _domain(address.split("@", 1)[1] if "@" in address else address)
    return any(domain == d or domain.endswith("." + d) for d in allowed)


def _luhn(digits: str) -> bool:
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def _iban_ok(value: str) -> bool:
    compact = value.replace(" ", "").upper()
    if not 15 <= len(compact) <= 34:
        return False
    moved = compact[4:] + compact[:4]
    number = "".join(str(int(ch, 36)) for ch in moved)
    return int(number) % 97 == 1


def find_contacts(raw: str, *, language: str, allowed_domains: tuple[str, ...] = ()) -> Contacts:
    found = Contacts()
    has_dot = "." in raw
    if "@" in raw:
        found.emails = [e for e in EMAIL.findall(raw) if not is_allowed(e, allowed_domains)]
    lowered = None
    if " at " in raw or "arroba" in raw or "[at]" in raw or "(at)" in raw:
        lowered = raw.lower()
        found.emails += [m.group(0) for m in EMAIL_SPELLED.finditer(lowered) if m.group(0) not in found.emails]
    if has_dot or "dot" in raw or "punto" in raw:
        text_for_urls = EMAIL.sub(" ", raw) if found.emails else raw
        urls = [u.rstrip(".,;:!?)") for u in URL.findall(text_for_urls)]
        if "dot" in raw or "punto" in raw or ". " in raw:
            urls += [m.group(0) for m in URL_SPELLED.finditer(lowered or raw.lower())]
        found.urls = [u for u in urls if not is_allowed(u, allowed_domains) and not _looks_like_number(u)
                      and not any(u in e for e in found.emails)]
    if _DIGIT_RUN.search(raw):
        _find_numbers(raw, language, found)
    return found


def _looks_like_number(url: str) -> bool:
    return url.replace(".", "").isdigit()


def _find_numbers(raw: str, language: str, found: Contacts) -> None:
    for match in DNI.finditer(raw):
        if _DNI_LETTERS[int(match.group(1)) % 23] == match.group(2).upper():
            found.ids.append(match.group(0))
    for match in NIE.finditer(raw):
        number = "XYZ".index(match.group(1).upper()) * 10_000_000 + int(match.group(2))
        if _DNI_LETTERS[number % 23] == match.group(3).upper():
            found.ids.append(match.group(0))
    for match in IBAN.finditer(raw.upper()):
        if _iban_ok(match.group(1)):
            found.ids.append(match.group(1))
    for match in CARD.finditer(raw):
        digits = re.sub(r"\D", "", match.group(0))
        if 13 <= len(digits) <= 19 and _luhn(digits) and len(set(digits)) > 1:
            found.ids.append(match.group(0).strip())
    seen: set[str] = set()
    for region in _REGIONS.get(language, _REGIONS["es"]):
        for match in phonenumbers.PhoneNumberMatcher(raw, region, leniency=phonenumbers.Leniency.VALID):
            key = phonenumbers.format_number(match.number, phonenumbers.PhoneNumberFormat.E164)
            if key not in seen and not any(match.raw_string in i for i in found.ids):
                seen.add(key)
                found.phones.append(match.raw_string)
        if found.phones:
            break
