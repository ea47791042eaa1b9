"""Discount and referral codes: issued unique and unguessable, redeemed when an order names them.

A DiscountCode is single-use: the first order that names it marks it used (later orders do not).
A ReferralCode is a person's own code, shared with friends: an order that names it (typed at
checkout, or applied by the referral link) is attributed to the referrer with a Referral row, and
the referrer gets a single-use reward code. Codes are compared without regard to case, as shops do.

The store must honour the codes at checkout: Tertulia makes them, the shop's discount rules apply
them (docs/journeys.md, "Discount codes").
"""

import secrets
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models.functions import Upper
from django.utils import timezone

from tertulia.commerce.models import Order, OrderStatus
from tertulia.core.db import chunks, db_datetime, insert_returning, is_sqlite
from tertulia.core.models import Store
from tertulia.journeys.models import DiscountCode, DiscountKind, Journey, JourneyKey, Referral, ReferralCode

# No 0/O, 1/I/L: codes are read aloud and typed from an SMS.
ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
RANDOM_LENGTH = 10  # 31**10 ~ 8e14 (49 bits): not guessable before the code expires
PREFIXES = {DiscountKind.RECOVERY: "VUELVE", DiscountKind.REFERRAL: "AMIGO", DiscountKind.REFERRAL_REWARD: "GRACIAS"}
REFERRAL_RANDOM_LENGTH = 6  # shared on purpose, so shorter; the name part makes it personal
_TABLE = DiscountCode._meta.db_table


def code_generate(*, prefix: str = "", length: int = RANDOM_LENGTH) -> str:
    body = "".join(secrets.choice(ALPHABET) for _ in range(length))
    return f"{prefix}-{body}" if prefix else body


@dataclass(frozen=True, slots=True)
class CodeRequest:
    kind: str
    percent: int
    customer_id: int | None
    enrollment_id: int | None
    expires_at: datetime | None


def discount_codes_issue(*, store: Store | int, requests: Sequence[CodeRequest], now: datetime | None = None) -> list[str]:
    """Make one new unique code per request (same order); a collision with an existing code draws again."""
    store_id = store if isinstance(store, int) else store.pk
    moment = now or timezone.now()
    lite = is_sqlite()
    codes: list[str | None] = [None] * len(requests)
    pending = list(range(len(requests)))
    for _ in range(5):
        if not pending:
            break
        drawn = {position: code_generate(prefix=PREFIXES.get(requests[position].kind, "")) for position in pending}
        rows = [
            (store_id, drawn[p], requests[p].kind, requests[p].percent, requests[p].customer_id,
             requests[p].enrollment_id, db_datetime(requests[p].expires_at, sqlite=lite),
             db_datetime(moment, sqlite=lite))
            for p in pending
        ]
        written: set[str] = set()
        for part in chunks(rows, 500):
            written.update(row[0] for row in insert_returning(
                _TABLE, ["store_id", "code", "kind", "percent", "customer_id", "enrollment_id", "expires_at",
                         "created_at"],
                part, conflict=["store_id", "code"], returning=["code"]))
        for position in pending:
            if drawn[position] in written:
                codes[position] = drawn[position]
        pending = [p for p in pending if codes[p] is None]
    if pending:
        raise RuntimeError("could not draw unique discount codes")  # 49 random bits: never in practice
    return [c for c in codes if c is not None]


def enrollment_discount_codes(*, store: Store | int, wanted: dict[int, tuple[int, int, int | None]],
                              now: datetime) -> dict[int, DiscountCode]:
    """The recovery code of each enrollment, made on first need: {enrollment id: (percent, valid seconds, customer)}.

    Safe to call again for the same enrollment (a retried send): the code made the first time is
    returned, so a person never holds two codes from one journey.
    """
    store_id = store if isinstance(store, int) else store.pk
    if not wanted:
        return {}
    existing = {c.enrollment_id: c for c in DiscountCode.objects.for_store(store_id).filter(
        enrollment_id__in=list(wanted), kind__in=[DiscountKind.RECOVERY]).order_by("id")}
    missing = [e for e in sorted(wanted) if e not in existing]
    if missing:
        discount_codes_issue(store=store_id, now=now, requests=[
            CodeRequest(kind=DiscountKind.RECOVERY, percent=wanted[e][0], customer_id=wanted[e][2], enrollment_id=e,
                        expires_at=now + timedelta(seconds=wanted[e][1]))
            for e in missing
        ])
        existing.update({c.enrollment_id: c for c in DiscountCode.objects.for_store(store_id).filter(
            enrollment_id__in=missing, kind=DiscountKind.RECOVERY).order_by("-id")})
    return existing


def _referral_prefix(first_name: str) -> str:
    """The readable part of a referral code: the first name in capitals without accents ("LUCIA")."""
    plain = unicodedata.normalize("NFKD", first_name or "").encode("ascii", "ignore").decode().upper()
    return "".join(ch for ch in plain if ch.isalpha())[:8] or "AMIGO"


def referral_codes_ensure(*, store: Store | int, customers: dict[int, str]) -> dict[int, str]:
    """Each person's referral code, made on first need: {customer id: first name} -> {customer id: code}."""
    store_id = store if isinstance(store, int) else store.pk
    if not customers:
        return {}
    found = dict(ReferralCode.objects.for_store(store_id).filter(customer_id__in=list(customers))
                 .values_list("customer_id", "code"))
    for _ in range(5):
        missing = [c for c in sorted(customers) if c not in found]
        if not missing:
            break
        # Two conflicts are possible and both are ignored: the person got a code meanwhile (a
        # concurrent send), or the drawn code is taken. Reading back settles which; a miss draws again.
        ReferralCode.objects.bulk_create(
            [ReferralCode(store_id=store_id, customer_id=c,
                          code=code_generate(prefix=_referral_prefix(customers[c]), length=REFERRAL_RANDOM_LENGTH))
             for c in missing],
            ignore_conflicts=True,
        )
        found.update(ReferralCode.objects.for_store(store_id).filter(customer_id__in=missing)
                     .values_list("customer_id", "code"))
    return {c: found[c] for c in customers if c in found}


def referral_settings(*, store: Store | int) -> dict:
    """The referral block of the store's referral journey (its defaults when the store has none)."""
    from tertulia.journeys.definitions import DEFAULTS

    store_id = store if isinstance(store, int) else store.pk
    definition = (Journey.objects.for_store(store_id).filter(key=JourneyKey.REFERRAL_REQUEST)
                  .values_list("definition", flat=True).first()) or {}
    return {**DEFAULTS[JourneyKey.REFERRAL_REQUEST]["referral"], **(definition.get("referral") or {})}


def referral_link(*, template: str, store_url: str, code: str) -> str:
    return template.replace("{store_url}", store_url.rstrip("/")).replace("{code}", code)


def orders_codes_redeem(*, store: Store, order_ids: set[str]) -> int:
    """Mark the discount codes the given orders used, and record referrals; returns codes newly redeemed.

    Runs in the ingestion transaction right after the orders are projected. Idempotent: a code is
    marked used once (by the first order, earliest placement first), a referral is one row per order.
    A person's own referral code does not refer themselves; a cancelled order redeems nothing.
    """
    if not order_ids:
        return 0
    orders = list(Order.objects.for_store(store).filter(external_id__in=sorted(order_ids))
                  .exclude(status=OrderStatus.CANCELLED).exclude(discount_codes=[])
                  .order_by("placed_at", "id").values("id", "customer_id", "discount_codes", "placed_at"))
    named = {str(code).strip().upper() for o in orders for code in (o["discount_codes"] or []) if isinstance(code, str)}
    if not named:
        return 0
    redeemed = 0
    discounts = {c.code.upper(): c for c in DiscountCode.objects.for_store(store).annotate(up=Upper("code"))
                 .filter(up__in=sorted(named))}
    referrals = {r.code.upper(): r for r in ReferralCode.objects.for_store(store).annotate(up=Upper("code"))
                 .filter(up__in=sorted(named))}
    moment = timezone.now()
    rewards: list[tuple[dict, ReferralCode]] = []
    for order in orders:
        for raw in order["discount_codes"] or []:
            code = str(raw).strip().upper()
            discount = discounts.get(code)
            if discount is not None and discount.used_at is None:
                if discount.expires_at is not None and order["placed_at"] and order["placed_at"] > discount.expires_at:
                    continue  # the shop should have refused it; an expired code is not a use of ours
                marked = DiscountCode.objects.for_store(store).filter(pk=discount.pk, used_at__isnull=True).update(
                    used_at=order["placed_at"] or moment, order_id=order["id"])
                if marked:
                    discount.used_at = order["placed_at"] or moment
                    redeemed += 1
            referral = referrals.get(code)
            if referral is not None and referral.customer_id != order["customer_id"]:
                rewards.append((order, referral))
    if rewards:
        _referrals_record(store=store, rewards=rewards, now=moment)
    return redeemed


def _referrals_record(*, store: Store, rewards: list[tuple[dict, ReferralCode]], now: datetime) -> None:
    settings = referral_settings(store=store)
    lite = is_sqlite()
    rows = []
    seen: set[int] = set()
    for order, referral in rewards:
        if order["id"] in seen:
            continue  # two referral codes on one order: the first one named counts
        seen.add(order["id"])
        rows.append((store.pk, referral.customer_id, order["id"], order["customer_id"], db_datetime(now, sqlite=lite)))
    created = insert_returning(Referral._meta.db_table, ["store_id", "referrer_id", "order_id", "referred_id", "created_at"],
                               rows, conflict=["order_id"], returning=["id", "referrer_id"])
    if not created:
        return  # replays: every referral is on record already
    codes = discount_codes_issue(store=store, now=now, requests=[
        CodeRequest(kind=DiscountKind.REFERRAL_REWARD, percent=int(settings["reward_percent"]), customer_id=referrer,
                    enrollment_id=None, expires_at=now + timedelta(seconds=int(settings["reward_valid_seconds"])))
        for _, referrer in created
    ])
    reward_ids = dict(DiscountCode.objects.for_store(store).filter(code__in=codes).values_list("code", "id"))
    for (referral_id, _), code in zip(created, codes, strict=True):
        Referral.objects.for_store(store).filter(pk=referral_id).update(reward_id=reward_ids[code])
