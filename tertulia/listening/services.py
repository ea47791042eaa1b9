"""Writes of listening: tracked terms, mentions (from what connectors heard), alerts."""

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from django.db import transaction
from django.db.models import Min, Q, Sum
from django.utils import timezone

from tertulia.catalog.models import Product
from tertulia.core import metrics
from tertulia.core.db import column_values, insert_returning
from tertulia.core.jobs import job_schedule
from tertulia.core.models import Store
from tertulia.customers.identity import InvalidIdentity, normalize_email, normalize_handle
from tertulia.customers.models import Identity
from tertulia.listening.connectors.base import Post
from tertulia.listening.matching import KINDS, tokens
from tertulia.listening.models import (
    Alert,
    AlertKind,
    Mention,
    MentionHour,
    MentionKind,
    Network,
    TermKind,
    TrackedTerm,
)
from tertulia.listening.selectors import matcher_cached

log = logging.getLogger("tertulia.listening")

MAX_TERM = 200


def tracked_term_add(*, store: Store, term: str, kind: str = TermKind.KEYWORD, exclude: bool = False,
                     product: Product | None = None) -> TrackedTerm:
    """Track one term (idempotent). A term with no word left after normalising is refused.

    With `product` the term is another name for that product ("jamón de bellota" for IBE-001): a post
    using it names the product. Catalogue sync never removes such a term (it is the store's own).
    """
    term = term.strip() if isinstance(term, str) else ""
    if kind not in KINDS:
        raise ValueError(f"Unknown term kind {kind!r}.")
    if not term or len(term) > MAX_TERM or not tokens(term):
        raise ValueError("A term needs at least one letter or digit and at most 200 characters.")
    if product is not None and product.store_id != store.pk:
        raise ValueError("The product belongs to another store.")
    if product is not None and kind in (TermKind.PRODUCT, TermKind.SKU):
        # Product and SKU terms with a product are the catalogue's (sync adds and removes them).
        raise ValueError("Another name of a product is a keyword; product and SKU terms come from the catalogue.")
    row, created = TrackedTerm.objects.get_or_create(store=store, kind=kind, term=term, exclude=exclude,
                                                     defaults={"product": product})
    if not created and product is not None and row.product_id != product.pk:
        TrackedTerm.objects.filter(pk=row.pk).update(product=product)
        row.product = product
    return row


def tracked_terms_sync_catalogue(*, store: Store) -> dict[str, int]:
    """Product titles and SKUs of the store's active products become terms; terms of products that
    went inactive or changed are removed. Returns counts of created and deleted rows."""
    wanted: dict[tuple[str, str], int] = {}
    for product_id, sku, title in Product.objects.for_store(store).filter(active=True).values_list("id", "sku", "title"):
        if title.strip() and tokens(title):
            wanted.setdefault((TermKind.PRODUCT, title.strip()[:MAX_TERM]), product_id)
        if sku.strip() and tokens(sku):
            wanted.setdefault((TermKind.SKU, sku.strip()[:MAX_TERM]), product_id)
    with transaction.atomic():
        existing = {
            (row.kind, row.term): row
            for row in TrackedTerm.objects.for_store(store).filter(product__isnull=False, exclude=False,
                                                                   kind__in=[TermKind.PRODUCT, TermKind.SKU])
        }
        stale = [row.pk for key, row in existing.items() if wanted.get(key) != row.product_id]
        TrackedTerm.objects.for_store(store).filter(pk__in=stale).delete()
        # A store-entered term with the same text stays as it is; the catalogue only adds what is missing.
        taken = set(TrackedTerm.objects.for_store(store).filter(exclude=False).values_list("kind", "term"))
        new = [
            TrackedTerm(store=store, kind=kind, term=term, product_id=product_id)
            for (kind, term), product_id in wanted.items() if (kind, term) not in taken
        ]
        TrackedTerm.objects.bulk_create(new, batch_size=500)
    return {"created": len(new), "deleted": len(stale)}


_catalogue_seen: dict[int, tuple] = {}


def catalogue_terms_sweep() -> int:
    """Keep every store's product and SKU terms in step with its catalogue; returns how many stores were synced.

    Run by the listening runner every minute: a store is synced when its products changed since the last
    look (their count or newest update), so a quiet catalogue costs one grouped query for all stores.
    """
    from django.db.models import Count, Max

    rows = Product.objects.values("store_id").annotate(n=Count("id"), newest=Max("updated_at")).order_by()
    synced = 0
    for row in rows:
        version = (row["n"], row["newest"])
        if _catalogue_seen.get(row["store_id"]) == version:
            continue
        tracked_terms_sync_catalogue(store=Store(pk=row["store_id"]))
        _catalogue_seen[row["store_id"]] = version
        synced += 1
    return synced


def tracked_term_remove(*, store: Store, term_id: int) -> bool:
    deleted, _ = TrackedTerm.objects.for_store(store).filter(pk=term_id).delete()
    return bool(deleted)


# --- Mentions ----------------------------------------------------------------------------------------

MAX_TEXT = 20_000
ADDRESSED = (MentionKind.MENTION.value, MentionKind.DIRECT.value)
# customers.IdentityKind per network, for linking an author to a known person.
IDENTITY_KIND = {"mastodon": "mastodon", "bluesky": "bluesky", "x": "x", "email": "email"}


@dataclass(slots=True)
class IngestResult:
    heard: int = 0  # posts handed over
    stored: int = 0  # new mentions
    duplicates: int = 0  # mentions stored before (a replay, an overlap of two polls)
    ignored: int = 0  # posts that name nothing the store tracks
    mention_ids: list[int] = field(default_factory=list)


def post_problems(post: Post) -> list[str]:
    """What makes a Post unstorable (a connector's bug or a platform's surprise), as short messages."""
    problems = []
    if not isinstance(post.external_id, str) or not post.external_id.strip() or len(post.external_id) > 400:
        problems.append("external_id must be a non-empty string of at most 400 characters")
    if not isinstance(post.text, str):
        problems.append("text must be a string")
    if not isinstance(post.posted_at, datetime) or timezone.is_naive(post.posted_at):
        problems.append("posted_at must be an aware datetime")
    if post.kind not in MentionKind.values:
        problems.append(f"kind must be one of {', '.join(MentionKind.values)}")
    if post.network not in Network.values:
        problems.append(f"network must be one of {', '.join(Network.values)}")
    return problems


def _without_nul(post: Post) -> None:
    # PostgreSQL text cannot hold NUL; a platform (or a webhook sender) that sends one must not fail the batch.
    for name in ("text", "title", "author_handle", "author_name", "author_id", "url", "external_id", "in_reply_to",
                 "thread_root", "language"):
        value = getattr(post, name)
        if isinstance(value, str) and "\x00" in value:
            setattr(post, name, value.replace("\x00", ""))


def _identity_value(network: str, handle: str) -> str | None:
    """The author's handle or address as customers keep identities (customers.identity); None if it is not one."""
    kind = IDENTITY_KIND.get(network)
    if not kind or not handle:
        return None
    try:
        return normalize_email(handle) if kind == "email" else normalize_handle(kind, handle)
    except InvalidIdentity:
        return None


def _customers_for(store_id: int, posts: Sequence[Post]) -> dict[tuple[str, str], int]:
    wanted: dict[str, set[str]] = {}
    for post in posts:
        value = _identity_value(post.network, post.author_handle)
        if value is not None:
            wanted.setdefault(IDENTITY_KIND[post.network], set()).add(value)
    found: dict[tuple[str, str], int] = {}
    for kind, values in wanted.items():
        rows = (Identity.objects.for_store(store_id).filter(kind=kind, value__in=sorted(values))
                .values_list("value", "customer_id", "customer__merged_into_id"))
        for value, customer_id, merged_into in rows:
            found[(kind, value)] = merged_into or customer_id
    return found


def _answers_to_conversations(store_id: int, posts: Sequence[Post]) -> dict[str, set[str]]:
    """Of the ids these posts answer, those that are messages of an inbox conversation, per network."""
    wanted: dict[str, set[str]] = {}
    for post in posts:
        if post.in_reply_to:
            wanted.setdefault(post.network, set()).add(post.in_reply_to)
    if not wanted:
        return {}
    from tertulia.inbox.selectors import message_ids_known  # inbox sits above listening

    return {network: message_ids_known(store_id=store_id, network=network, external_ids=ids)
            for network, ids in wanted.items()}


def _hour(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def mentions_ingest(*, store_id: int, posts: Sequence[Post], source_id: int | None = None,
                    now: datetime | None = None) -> IngestResult:
    """Keep the posts that matter as mentions, classified, once each; open inbox conversations for them.

    A post matters when it names a tracked term (and hits no exclude rule), or when it is addressed to
    the store (a mention of its account, a direct message, an e-mail), whatever it says. Stored with
    `INSERT ... ON CONFLICT DO NOTHING` on (store, network, external_id), so a replayed post, two polls
    that overlap or two workers never store one twice. Runs in the caller's transaction (the runner's
    emit writes the cursor in the same one), so nothing is half-stored.
    """
    from tertulia.listening.understand import posts_classify

    moment = now or timezone.now()
    result = IngestResult(heard=len(posts))
    unique: dict[tuple[str, str], Post] = {}
    for post in posts:
        problems = post_problems(post)
        if problems:
            raise ValueError(f"post {post.external_id!r}: {'; '.join(problems)}")
        _without_nul(post)
        key = (post.network, post.external_id)
        if key in unique:
            result.duplicates += 1
        else:
            unique[key] = post
    matcher = matcher_cached(store_id=store_id)
    kept: list[tuple[Post, list]] = []
    unmatched: list[Post] = []
    for post in unique.values():
        text = f"{post.title}\n{post.text}" if post.title else post.text
        if post.kind in ADDRESSED:
            matches = [m for m in matcher.find(text) if not m.term.exclude]
        else:
            matches = matcher.mentions(text)
            if not matches:
                unmatched.append(post)
                continue
        kept.append((post, matches))
    # A post that answers one of our conversations matters whatever it says ("thanks, and to Mallorca?").
    answering = _answers_to_conversations(store_id, unmatched)
    kept.extend((post, []) for post in unmatched if post.in_reply_to in answering.get(post.network, ()))
    result.ignored += sum(1 for post in unmatched if post.in_reply_to not in answering.get(post.network, ()))
    if not kept:
        _count(posts, result)
        return result
    existing: set[tuple[str, str]] = set()
    by_network: dict[str, list[str]] = {}
    for post, _ in kept:
        by_network.setdefault(post.network, []).append(post.external_id)
    for network, ids in by_network.items():
        for external_id in (Mention.objects.for_store(store_id).filter(network=network, external_id__in=ids)
                            .values_list("external_id", flat=True)):
            existing.add((network, external_id))
    fresh = [(post, matches) for post, matches in kept if (post.network, post.external_id) not in existing]
    result.duplicates += len(kept) - len(fresh)
    if not fresh:
        _count(posts, result)
        return result
    predictions = posts_classify([(f"{p.title}\n{p.text}" if p.title else p.text)[:MAX_TEXT] for p, _ in fresh],
                                 store_id=store_id)
    customers = _customers_for(store_id, [p for p, _ in fresh])
    rows = []
    for (post, matches), prediction in zip(fresh, predictions, strict=True):
        kind = IDENTITY_KIND.get(post.network)
        rows.append({
            "store_id": store_id, "source_id": source_id, "network": post.network,
            "external_id": post.external_id, "kind": post.kind, "url": post.url[:1000],
            "author_id": post.author_id[:400], "author_handle": post.author_handle[:320],
            "author_name": post.author_name[:200],
            "author_followers": post.author_followers if isinstance(post.author_followers, int)
            and post.author_followers >= 0 else None,
            "title": post.title[:300], "text": post.text[:MAX_TEXT], "posted_at": post.posted_at,
            "received_at": moment, "in_reply_to": post.in_reply_to[:400], "thread_root": post.thread_root[:400],
            "reply_ref": post.reply_ref or {}, "metrics": post.metrics or {},
            "terms": sorted({m.term.term for m in matches}), "platform_language": (post.language or "")[:16],
            "language": prediction.language, "sentiment": prediction.sentiment,
            "sentiment_score": prediction.sentiment_score, "intent": prediction.intent,
            "toxicity": prediction.toxicity,
            "customer_id": customers.get((kind, _identity_value(post.network, post.author_handle))),
        })
    columns, values = column_values(Mention, rows)
    inserted = insert_returning(Mention._meta.db_table, columns, values,
                                conflict=["store_id", "network", "external_id"],
                                returning=["id", "network", "external_id"])
    ids = {(network, external_id): mention_id for mention_id, network, external_id in inserted}
    result.stored = len(ids)
    result.duplicates += len(rows) - len(ids)
    _count(posts, result)
    if not ids:
        return result
    products = []
    hours: dict[tuple[datetime, str], dict[str, int]] = {}
    for (post, matches), row in zip(fresh, rows, strict=True):
        mention_id = ids.get((post.network, post.external_id))
        if mention_id is None:
            continue
        result.mention_ids.append(mention_id)
        seen: set[int] = set()
        for match in sorted(matches, key=lambda m: m.start):
            if match.term.product_id is not None and match.term.product_id not in seen:
                seen.add(match.term.product_id)
                products.append(Mention.products.through(mention_id=mention_id, product_id=match.term.product_id))
        counts = hours.setdefault((_hour(post.posted_at), post.network), dict.fromkeys(HOUR_COUNTS, 0))
        counts["total"] += 1
        counts[row["sentiment"]] += 1
        if row["intent"] in counts:
            counts[row["intent"]] += 1
    Mention.products.through.objects.bulk_create(products, ignore_conflicts=True)
    _hours_add(store_id, hours)
    # Imported here: inbox sits above listening (it reads mentions and sources).
    from tertulia.inbox.services import conversations_from_mentions

    conversations_from_mentions(store_id=store_id, mention_ids=result.mention_ids, now=moment)
    spikes_check(store_id=store_id, hours=sorted({hour for hour, _ in hours}), now=moment)
    return result


def _count(posts: Sequence[Post], result: IngestResult) -> None:
    network = posts[0].network if posts else ""
    metrics.posts_heard(network=network, stored=result.stored, duplicates=result.duplicates, ignored=result.ignored)


HOUR_COUNTS = ("total", "negative", "neutral", "positive", "question", "complaint", "purchase_intent", "praise")


def _hours_add(store_id: int, hours: dict[tuple[datetime, str], dict[str, int]]) -> None:
    if not hours:
        return
    rows = [{"store_id": store_id, "hour": hour, "network": network, **counts}
            for (hour, network), counts in sorted(hours.items())]
    columns, values = column_values(MentionHour, rows)
    update = ", ".join(f"{name} = {MentionHour._meta.db_table}.{name} + excluded.{name}" for name in HOUR_COUNTS)
    insert_returning(MentionHour._meta.db_table, columns, values, conflict=["store_id", "hour", "network"],
                     returning=["id"], update=update)


# --- Alerts ---------------------------------------------------------------------------------------

SPIKE_BASELINE_HOURS = 7 * 24
SPIKE_MIN_NEGATIVE = 5  # fewer negative mentions in an hour is never a spike, whatever the baseline
SPIKE_RATIO = 3.0  # ... and it must be at least this many times the baseline
SPIKE_SIGMAS = 3.0  # ... and this many standard deviations above it


def spike_threshold(baseline: Sequence[int]) -> tuple[float, float]:
    """(mean, threshold) of negative mentions per hour over the baseline hours (zeros included)."""
    hours = len(baseline) or 1
    mean = sum(baseline) / hours
    variance = sum((value - mean) ** 2 for value in baseline) / hours
    return mean, max(float(SPIKE_MIN_NEGATIVE), mean * SPIKE_RATIO, mean + SPIKE_SIGMAS * math.sqrt(variance))


def spikes_check(*, store_id: int, hours: Sequence[datetime], now: datetime | None = None) -> list[Alert]:
    """Open a negative-spike alert for each of `hours` whose negative mentions cross the rolling threshold.

    The baseline is the SPIKE_BASELINE_HOURS before the hour (hours without mentions count as zero).
    Only the current and the previous hour are judged: a late post about last week is not news.
    """
    moment = now or timezone.now()
    current = _hour(moment)
    opened = []
    for hour in hours:
        if hour < current - timedelta(hours=1) or hour > current:
            continue
        start = hour - timedelta(hours=SPIKE_BASELINE_HOURS)
        counts = dict(MentionHour.objects.for_store(store_id).filter(hour__gte=start, hour__lte=hour)
                      .values("hour").annotate(n=Sum("negative")).values_list("hour", "n"))
        negative = counts.pop(hour, 0)
        if negative < SPIKE_MIN_NEGATIVE:
            continue
        first = MentionHour.objects.for_store(store_id).aggregate(first=Min("hour"))["first"]
        span = SPIKE_BASELINE_HOURS if first is None or first <= start else \
            max(int((hour - first).total_seconds() // 3600), 0)
        baseline = [counts.get(hour - timedelta(hours=back), 0) for back in range(1, span + 1)]
        mean, threshold = spike_threshold(baseline)
        if negative < threshold:
            continue
        alert = alert_open(store_id=store_id, kind=AlertKind.NEGATIVE_SPIKE, key=hour.isoformat(),
                           details={"hour": hour.isoformat(), "negative": negative, "baseline": round(mean, 2),
                                    "threshold": round(threshold, 2), "baseline_hours": len(baseline)},
                           now=moment)
        if alert is not None:
            opened.append(alert)
    return opened


def alert_open(*, store_id: int, kind: str, key: str, details: dict, source_id: int | None = None,
               now: datetime | None = None) -> Alert | None:
    """Open the alert (once per kind and key) and have the team told by e-mail; None if it was open already.

    An alert that is open again gets fresh details (a spike that keeps growing)."""
    moment = now or timezone.now()
    alert, created = Alert.objects.get_or_create(
        store_id=store_id, kind=kind, key=key[:200],
        defaults={"details": details, "source_id": source_id, "opened_at": moment})
    if not created:
        if alert.closed_at is None and alert.details != details:
            Alert.objects.filter(pk=alert.pk).update(details=details)
        return None
    log.warning("listening alert", extra={"store_id": store_id, "kind": kind, "key": key, **{
        k: v for k, v in details.items() if isinstance(v, int | float | str)}})
    from tertulia.listening.tasks import alert_notify

    # The job row is written in this transaction: an alert rolled back is never announced.
    job_schedule(task=alert_notify, args=[alert.pk], unique_key=f"listening.alert:{alert.pk}", store=Store(pk=store_id))
    return alert


def alert_close(*, store_id: int, kind: str, key: str | None = None, source_id: int | None = None,
                now: datetime | None = None) -> int:
    rows = Alert.objects.for_store(store_id).filter(kind=kind, closed_at__isnull=True)
    if key is not None:
        rows = rows.filter(key=key)
    if source_id is not None:
        rows = rows.filter(source_id=source_id)
    return rows.update(closed_at=now or timezone.now())


def alert_acknowledge(*, store: Store, alert_id: int, by: str) -> bool:
    return bool(Alert.objects.for_store(store).filter(pk=alert_id, acknowledged_at__isnull=True)
                .update(acknowledged_at=timezone.now(), acknowledged_by=by[:150]))


def mentions_erase(*, store: Store, customer_ids: Sequence[int], handles: Sequence[tuple[str, str]]) -> int:
    """A person's erasure: their mentions (linked to them, or by one of their handles) keep network, time,
    sentiment and intent for the figures, and lose text, author, link and what a reply would need."""
    by_handle = Q()
    for kind, value in handles:
        network = next((n for n, k in IDENTITY_KIND.items() if k == kind), None)
        if network:
            by_handle |= Q(network=network, author_handle__iexact=value) | Q(network=network,
                                                                             author_handle__iexact=f"@{value}")
    rows = Mention.objects.for_store(store).filter(Q(customer_id__in=list(customer_ids)) | by_handle) \
        .exclude(text="", author_handle="", author_id="", author_name="", url="")
    return rows.update(text="", title="", author_handle="", author_id="", author_name="", url="", reply_ref={},
                       customer=None)
