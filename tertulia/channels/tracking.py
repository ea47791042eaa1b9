"""Signed links in messages and what happens when someone follows them: clicks, opens, unsubscribes, answers.

Every link Tertulia puts in a message names a Delivery and is signed, so the public endpoints
(`/r/`, `/o/`, `/u/`, `/a/`, `/c/`, see channels.urls) need no login and cannot be forged or turned
into an open redirect: `/r/<token>` only ever redirects to a URL stored on the delivery itself.

Tokens are `<delivery id in base 36>[.<argument>].<signature>`, the signature a truncated
HMAC-SHA256 over the purpose and the body. They are short (an SMS has 160 characters) and cheap to
make: one message carries a dozen of them and the benchmark renders 100,000 messages. They do not
expire: an unsubscribe link must keep working as long as the message sits in someone's mailbox.
"""

import base64
import hashlib
import hmac
import logging
import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from tertulia.channels.models import Delivery
from tertulia.customers.models import Consent, ConsentStatus

# journeys.services is imported inside the functions that call it: it imports journeys.definitions,
# which imports journeys.rendering, which imports this module.

logger = logging.getLogger(__name__)

# The one-click answers of the abandoned-cart e-mail ("did something stop you?"), in the order shown.
ANSWER_CHOICES = ("price", "shipping", "payment", "just_looking", "other")
# How an answer reads to people (the thanks page, the dashboard).
ANSWER_LABELS = {
    "price": _("The price"),
    "shipping": _("Shipping (cost or timing)"),
    "payment": _("A problem paying"),
    "just_looking": _("I was just looking"),
    "other": _("Something else"),
}
ANSWER_NOTE_MAX = 1000

# Purposes: a token made for one endpoint is refused by every other.
CLICK, OPEN, UNSUBSCRIBE, ANSWER, CONFIRM = "r", "o", "u", "a", "c"
PATHS = {CLICK: "/r/", OPEN: "/o/", UNSUBSCRIBE: "/u/", ANSWER: "/a/", CONFIRM: "/c/"}
_SIGNATURE_BYTES = 12  # 96 bits: forging one is out of reach, and the token stays SMS-short
_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"


def _base36(number: int) -> str:
    if number < 0:
        raise ValueError("negative id")
    out = ""
    while True:
        number, rest = divmod(number, 36)
        out = _DIGITS[rest] + out
        if not number:
            return out


@lru_cache(maxsize=8)
def _key(secret: str) -> bytes:
    # A key of its own, derived from SECRET_KEY, so these signatures never collide with Django's signing.
    return hashlib.sha256(b"tertulia.channels.tracking\x00" + secret.encode()).digest()


def _signature(secret: str, purpose: str, body: str) -> str:
    digest = hmac.new(_key(secret), f"{purpose}|{body}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest[:_SIGNATURE_BYTES]).decode()


def _token(purpose: str, delivery_id: int, argument: str = "") -> str:
    body = _base36(delivery_id) + (f".{argument}" if argument else "")
    return f"{body}.{_signature(settings.SECRET_KEY, purpose, body)}"


def token_read(token: str, *, purpose: str) -> tuple[int, str] | None:
    """(delivery id, argument) of a token made for `purpose`, or None when it is forged or malformed."""
    if not isinstance(token, str) or len(token) > 120:
        return None
    body, _, signature = token.rpartition(".")
    if not body or not signature:
        return None
    secrets = [settings.SECRET_KEY, *getattr(settings, "SECRET_KEY_FALLBACKS", [])]
    if not any(hmac.compare_digest(signature, _signature(secret, purpose, body)) for secret in secrets):
        return None
    delivery_part, _, argument = body.partition(".")
    try:
        delivery_id = int(delivery_part, 36)
    except ValueError:
        return None
    return delivery_id, argument


def link_token(delivery_id: int, index: int) -> str:
    return _token(CLICK, delivery_id, _base36(index))


def public_url(path: str) -> str:
    return settings.TERTULIA_PUBLIC_URL.rstrip("/") + path


def tracked_url(delivery_id: int, index: int) -> str:
    """The address that stands for link number `index` of the delivery (its `links[index]`)."""
    return public_url(PATHS[CLICK] + link_token(delivery_id, index))


def open_pixel_url(delivery_id: int) -> str:
    return public_url(f"{PATHS[OPEN]}{_token(OPEN, delivery_id)}.gif")


def unsubscribe_url(delivery_id: int) -> str:
    return public_url(PATHS[UNSUBSCRIBE] + _token(UNSUBSCRIBE, delivery_id))


def answer_url(delivery_id: int, choice: str) -> str:
    if choice not in ANSWER_CHOICES:
        raise ValueError(f"unknown answer {choice!r}")
    return public_url(PATHS[ANSWER] + _token(ANSWER, delivery_id, choice))


def answer_urls(delivery_id: int) -> dict[str, str]:
    return {choice: answer_url(delivery_id, choice) for choice in ANSWER_CHOICES}


def confirm_url(delivery_id: int) -> str:
    """Double opt-in: the link in the welcome journey's confirmation e-mail."""
    return public_url(PATHS[CONFIRM] + _token(CONFIRM, delivery_id))


@lru_cache(maxsize=4)
def _own_prefixes(base: str) -> tuple[str, ...]:
    return tuple(base.rstrip("/") + path for path in PATHS.values())


def is_tracking_url(url: str) -> bool:
    """True for our own endpoints (unsubscribe, answers...), which must not be wrapped in a click redirect."""
    return url.startswith(_own_prefixes(settings.TERTULIA_PUBLIC_URL))


def utm_add(url: str, *, channel: str, journey_key: str, step_key: str, variant: str = "") -> str:
    """The URL with utm_source/medium/campaign/content added; parameters already there are left alone."""
    parts = urlsplit(url)
    present = {name for name, _ in parse_qsl(parts.query, keep_blank_values=True)}
    content = f"{step_key}-{variant}" if step_key and variant else step_key
    wanted = (("utm_source", "tertulia"), ("utm_medium", channel), ("utm_campaign", journey_key),
              ("utm_content", content))
    extra = [(name, value) for name, value in wanted if value and name not in present]
    if not extra:
        return url
    # Append rather than rebuild, so the store's own query string reaches it byte for byte.
    query = f"{parts.query}&{urlencode(extra)}" if parts.query else urlencode(extra)
    return urlunsplit(parts._replace(query=query))


# --- What the public endpoints record ------------------------------------------------------------

def _delivery(delivery_id: int) -> Delivery | None:
    # The signed token is what names the delivery; from here on everything is scoped by its store.
    return Delivery.objects.select_related("store").filter(pk=delivery_id).first()


def _engagement_record(delivery: Delivery, *, now: datetime, clicked: bool) -> None:
    """Set opened_at (and clicked_at) the first time only, in one guarded UPDATE."""
    changes = {"opened_at": Coalesce("opened_at", now), "updated_at": now}
    pending = Q(opened_at__isnull=True)
    if clicked:
        changes["clicked_at"] = Coalesce("clicked_at", now)
        pending |= Q(clicked_at__isnull=True)
    Delivery.objects.for_store(delivery.store_id).filter(pending, pk=delivery.pk).update(**changes)


def click_record(*, token: str, now: datetime | None = None) -> tuple[Delivery, str] | None:
    """The delivery and the URL (with UTM parameters) a click token leads to, recording the first click."""
    read = token_read(token, purpose=CLICK)
    if read is None:
        return None
    delivery_id, argument = read
    try:
        index = int(argument, 36)
    except ValueError:
        return None
    delivery = _delivery(delivery_id)
    if delivery is None or not isinstance(delivery.links, list) or not 0 <= index < len(delivery.links):
        return None
    target = delivery.links[index]
    if not isinstance(target, str) or urlsplit(target).scheme.lower() not in {"http", "https"}:
        return None
    _engagement_record(delivery, now=now or timezone.now(), clicked=True)
    return delivery, utm_add(target, channel=delivery.channel, journey_key=delivery.journey_key,
                             step_key=delivery.step_key, variant=delivery.variant)


def open_record(*, token: str, now: datetime | None = None) -> bool:
    read = token_read(token, purpose=OPEN)
    if read is None:
        return False
    delivery = _delivery(read[0])
    if delivery is None:
        return False
    _engagement_record(delivery, now=now or timezone.now(), clicked=False)
    return True


def delivery_for(token: str, *, purpose: str) -> tuple[Delivery, str] | None:
    """The delivery a token names (and its argument), without recording anything: for GET pages."""
    read = token_read(token, purpose=purpose)
    if read is None:
        return None
    delivery = _delivery(read[0])
    return None if delivery is None else (delivery, read[1])


def consent_status(*, delivery: Delivery, channel: str | None = None) -> str:
    """The person's current consent on the delivery's channel ('' when none is on record)."""
    if delivery.customer_id is None:
        return ""
    status = (Consent.objects.for_store(delivery.store_id)
              .filter(customer_id=delivery.customer_id, channel=channel or delivery.channel)
              .values_list("status", flat=True).first())
    return status or ""


def _user_agent(user_agent: str) -> str:
    return (user_agent or "")[:500]


def unsubscribe_record(*, delivery: Delivery, user_agent: str = "", one_click: bool = False,
                       now: datetime | None = None) -> bool:
    """Withdraw consent on the delivery's channel and end the person's journeys. False: nobody to unsubscribe.

    Recorded in the consent ledger (source `unsubscribe_link`) like every other consent change;
    a second request for someone already unsubscribed adds nothing.
    """
    if delivery.customer_id is None:
        return False
    from tertulia.customers.services import consent_record
    from tertulia.journeys import services as journeys  # local: import cycle, see the note at the imports

    moment = now or timezone.now()
    with transaction.atomic():
        if consent_status(delivery=delivery) != ConsentStatus.UNSUBSCRIBED:
            consent_record(
                store=delivery.store, customer_id=delivery.customer_id, channel=delivery.channel,
                status=ConsentStatus.UNSUBSCRIBED, source="unsubscribe_link", occurred_at=moment,
                evidence={"delivery_id": delivery.pk, "user_agent": _user_agent(user_agent),
                          "one_click": one_click, "journey_key": delivery.journey_key,
                          "step_key": delivery.step_key},
            )
        journeys.enrollments_exit(store=delivery.store, customer_id=delivery.customer_id, reason="unsubscribed")
    return True


@dataclass(frozen=True, slots=True)
class AnswerOutcome:
    delivery: Delivery
    choice: str
    recorded: bool  # False when the delivery belongs to no enrollment


def answer_record(*, token: str, note: str = "", now: datetime | None = None) -> AnswerOutcome | None:
    """Record a one-click answer (and, when given, the free-text note that follows it). None: bad token."""
    found = delivery_for(token, purpose=ANSWER)
    if found is None or found[1] not in ANSWER_CHOICES:
        return None
    delivery, choice = found
    note = (note or "").strip()[:ANSWER_NOTE_MAX]
    # Answering means the message was read and acted on: it counts as an open and a click.
    _engagement_record(delivery, now=now or timezone.now(), clicked=True)
    if delivery.enrollment_id is None:
        return AnswerOutcome(delivery, choice, recorded=False)
    from tertulia.journeys import services as journeys  # local: import cycle, see the note at the imports

    journeys.enrollment_answer(store=delivery.store, enrollment_id=delivery.enrollment_id, answer=choice, note=note)
    return AnswerOutcome(delivery, choice, recorded=True)


def confirmation_record(*, delivery: Delivery, user_agent: str = "", now: datetime | None = None) -> str:
    """Double opt-in: turn a pending e-mail consent into a subscription. Answers the resulting state.

    Only a pending consent is confirmed: an old confirmation link must not undo a later unsubscribe.
    """
    status = consent_status(delivery=delivery, channel="email")
    if delivery.customer_id is None or status != ConsentStatus.PENDING:
        return status
    from tertulia.customers.services import consent_record
    from tertulia.journeys import services as journeys  # local: import cycle, see the note at the imports

    with transaction.atomic():
        consent_record(
            store=delivery.store, customer_id=delivery.customer_id, channel="email",
            status=ConsentStatus.SUBSCRIBED, source="double_opt_in", occurred_at=now or timezone.now(),
            evidence={"delivery_id": delivery.pk, "user_agent": _user_agent(user_agent)},
        )
        journeys.subscription_confirmed(store=delivery.store, customer_id=delivery.customer_id)
    return ConsentStatus.SUBSCRIBED


# --- Opt-out by reply (SMS, DMs) --------------------------------------------------------------------------

# The words that end SMS and DMs when a reply is nothing else (what `opt_out` tells people to send, plus the
# carriers' usual English set). Matched on the whole reply so "no pares, me encanta" stops nothing.
OPT_OUT_WORDS = frozenset({"BAJA", "STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "CANCELAR",
                           "DARSE DE BAJA", "DAME DE BAJA", "DARME DE BAJA", "BAJA SMS", "STOP SMS"})
_REPLY_NOISE = re.compile(r"[^A-Z ]+")


def is_opt_out_reply(body: str) -> bool:
    plain = unicodedata.normalize("NFKD", body or "").encode("ascii", "ignore").decode().upper()
    words = " ".join(_REPLY_NOISE.sub(" ", plain).split())
    return words in OPT_OUT_WORDS


def opt_out_reply_record(*, store, channel: str, address: str, body: str, evidence: dict | None = None,
                         now: datetime | None = None) -> int | None:
    """An inbound SMS or DM: when it says BAJA/STOP, withdraw consent on that channel and end the journeys.

    For the inbound webhooks (Twilio's incoming message, a Mastodon reply). `address` is the sender as the
    identity ledger keeps it (E.164 phone, or handle). Answers the customer id unsubscribed, or None.
    """
    from tertulia.customers.models import Identity
    from tertulia.customers.services import consent_record
    from tertulia.journeys import services as journeys  # local: import cycle, see the note at the imports

    if channel not in ("sms", "social_dm") or not is_opt_out_reply(body):
        return None
    kinds = ["phone"] if channel == "sms" else ["mastodon", "bluesky", "x", "instagram", "facebook", "tiktok"]
    value = address.strip() if channel == "sms" else address.strip().lower().lstrip("@")
    customer_id = (Identity.objects.for_store(store).filter(kind__in=kinds, value=value)
                   .values_list("customer_id", flat=True).first())
    if customer_id is None:
        return None
    with transaction.atomic():
        current = (Consent.objects.for_store(store).filter(customer_id=customer_id, channel=channel)
                   .values_list("status", flat=True).first())
        if current != ConsentStatus.UNSUBSCRIBED:
            consent_record(store=store, customer_id=customer_id, channel=channel, status=ConsentStatus.UNSUBSCRIBED,
                           source="opt_out_reply", occurred_at=now or timezone.now(),
                           evidence={"reply": (body or "")[:160], **(evidence or {})})
        journeys.enrollments_exit(store=store, customer_id=customer_id, reason="unsubscribed")
    return customer_id
