"""Reads for moderation: the store's effective policy, its classifiers, the history a check needs, decisions."""

import time
import zlib
from datetime import datetime, timedelta

from django.db.models import Q

from tertulia.core.models import Store
from tertulia.moderation import policy as policy_rules
from tertulia.moderation.checks import Analysis, CheckContext, Member, PriorItem
from tertulia.moderation.classifier import Classifier, shipped
from tertulia.moderation.models import Decision, Judgement, Policy, StoreClassifier
from tertulia.moderation.normalize import skeleton

HISTORY_LIMIT = 100
MEMBERS_LIMIT = 1000
_MEMBERS_TTL = 60.0
_members_cache: dict[tuple, tuple[float, list[Member]]] = {}
_classifier_cache: dict[tuple, Classifier] = {}
_latest_cache: dict[tuple, tuple[float, int | None]] = {}


def _store_key(store: Store) -> tuple:
    # Ids can come back (a rolled-back test, a restored backup); with the creation time they cannot collide.
    return (store.pk, store.created_at.timestamp() if store.created_at else 0)


def policy_get(*, store: Store) -> policy_rules.EffectivePolicy:
    """The policy the store applies now (the defaults until it changes something)."""
    row = Policy.objects.for_store(store).first()
    if row is None:
        return policy_rules.effective()
    return policy_rules.effective(
        version=row.version, thresholds=row.thresholds, enabled_checks=row.enabled_checks,
        staff_names=row.staff_names, brand_terms=row.brand_terms, allowed_domains=row.allowed_domains,
        premoderate=row.premoderate, window_days=row.window_days,
    )


def store_classifier(*, store: Store | None, name: str) -> Classifier | None:
    """The store's newest retrained classifier `name`, or the one shipped with Tertulia.

    Which version is newest is remembered for a minute per process (retraining in this process
    forgets it at once), so a submission does not pay a query per model.
    """
    if store is not None:
        now = time.monotonic()
        known = _latest_cache.get((*_store_key(store), name))
        if known is not None and now - known[0] < _MEMBERS_TTL:
            row = known[1]
        else:
            row = (StoreClassifier.objects.for_store(store).filter(name=name).order_by("-version")
                   .values_list("pk", flat=True).first())
            _latest_cache[(*_store_key(store), name)] = (now, row)
        if row is not None:
            cached = _classifier_cache.get((*_store_key(store), row))
            if cached is None:
                blob = StoreClassifier.objects.for_store(store).filter(pk=row).values_list("model", flat=True).first()
                if blob is None:
                    _latest_cache.pop((*_store_key(store), name), None)
                    return shipped(name)
                cached = _classifier_cache[(*_store_key(store), row)] = Classifier.from_json(zlib.decompress(bytes(blob)))
            return cached
    return shipped(name)


def _members(store: Store, since: datetime) -> list[Member]:
    """Display names in recent use, cached a minute per process: impersonation compares against them."""
    now = time.monotonic()
    cached = _members_cache.get(_store_key(store))
    if cached and now - cached[0] < _MEMBERS_TTL:
        return cached[1]
    rows = (Judgement.objects.for_store(store).filter(created_at__gte=since).exclude(author_key="")
            .order_by("-created_at").values_list("author_name", "author_key", "customer_id", "device_hash")[:MEMBERS_LIMIT])
    members: dict[tuple, Member] = {}
    for name, key, customer_id, device_hash in rows:
        members.setdefault((key, customer_id, device_hash), Member(name=name, key=key, customer_id=customer_id,
                                                                   device_hash=device_hash))
    result = list(members.values())
    _members_cache[_store_key(store)] = (now, result)
    return result


def members_forget(*, store: Store) -> None:
    _members_cache.pop(_store_key(store), None)


def classifiers_forget(*, store: Store) -> None:
    for key in [k for k in _latest_cache if k[:2] == _store_key(store)]:
        _latest_cache.pop(key, None)


def check_context_build(
    *, store: Store, analysis: Analysis, policy: policy_rules.EffectivePolicy, device_hash: str, ip_hash: str,
    text_hash: str, bands: tuple[int, int, int, int] | None, now: datetime,
    content_type: str = "", content_id: int | None = None,
) -> CheckContext:
    """Everything the checks need from the database for one item: a handful of indexed queries."""
    item = analysis.item
    since = now - timedelta(days=policy.window_days)
    author_key = skeleton(item.author_name)
    linked = Q(text_hash=text_hash)
    if item.customer_id:
        linked |= Q(customer_id=item.customer_id)
    if device_hash:
        linked |= Q(device_hash=device_hash)
    if ip_hash:
        linked |= Q(ip_hash=ip_hash)
    if author_key:
        linked |= Q(author_key=author_key)
    if bands is not None:
        linked |= Q(band0=bands[0]) | Q(band1=bands[1]) | Q(band2=bands[2]) | Q(band3=bands[3])
    judged = Judgement.objects.for_store(store).filter(linked, created_at__gte=since)
    if content_id is not None:
        # The same item judged again (edited, retried) is not a repeat of itself.
        judged = judged.exclude(content_type=content_type, content_id=content_id)
    rows = (judged.order_by("-created_at")
            .values_list("text", "author_name", "author_key", "customer_id", "device_hash", "ip_hash", "subject_key",
                         "kind", "created_at", "style", "action")[:HISTORY_LIMIT])
    history = [PriorItem(text=r[0], author_name=r[1], author_key=r[2], customer_id=r[3], device_hash=r[4], ip_hash=r[5],
                         subject_key=r[6], kind=r[7], created_at=r[8], style=r[9] or [], action=r[10]) for r in rows]
    members = list(_members(store, since))
    if author_key:
        # Exact look-alikes are found by index even when older than the cached list.
        for name, key, customer_id, device in (Judgement.objects.for_store(store).filter(author_key=author_key)
                                               .values_list("author_name", "author_key", "customer_id", "device_hash")
                                               .distinct()[:50]):
            members.append(Member(name=name, key=key, customer_id=customer_id, device_hash=device))
    return CheckContext(
        staff_names=policy.staff_names,
        brand_terms=policy.brand_terms or (store.name,),
        allowed_domains=policy.allowed_domains or _site_domain(store),
        members=members,
        history=history,
        device_hash=device_hash,
        ip_hash=ip_hash,
        enabled=policy.enabled,
        spam_model=store_classifier(store=store, name="spam"),
        toxicity_model=store_classifier(store=store, name="toxicity"),
        default_language=store.language,
    )


def _site_domain(store: Store) -> tuple[str, ...]:
    url = (store.website_url or "").lower()
    for prefix in ("https://", "http://"):
        url = url.removeprefix(prefix)
    domain = url.split("/", 1)[0].removeprefix("www.")
    return (domain,) if domain else ()


def decisions_list(*, store: Store, content_type: str, content_id: int) -> list[Decision]:
    """Every decision on one item, oldest first: its audit trail."""
    return list(Decision.objects.for_store(store).filter(content_type=content_type, content_id=content_id)
                .order_by("created_at", "pk"))


def decisions_latest(*, store: Store, content_type: str, content_ids: list[int]) -> dict[int, Decision]:
    """The latest decision of each item."""
    latest: dict[int, Decision] = {}
    for decision in (Decision.objects.for_store(store).filter(content_type=content_type, content_id__in=content_ids)
                     .order_by("content_id", "created_at", "pk")):
        latest[decision.content_id] = decision
    return latest
