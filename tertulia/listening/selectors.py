"""Reads of listening: terms and the store's matcher; mentions, figures, alerts and sources for the dashboard."""

import threading
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo

from django.db import connection
from django.db.models import BooleanField, Count, Max, Q, QuerySet, Sum
from django.db.models.expressions import RawSQL
from django.utils import timezone

from tertulia.core.models import Store
from tertulia.listening.matching import Matcher, Term
from tertulia.listening.models import Alert, MalformedPayload, Mention, MentionHour, Source, TrackedTerm


def terms_for_store(*, store: Store | int) -> list[Term]:
    rows = TrackedTerm.objects.for_store(store).order_by("id").values_list("id", "term", "kind", "exclude", "product_id")
    return [Term(term=t, kind=k, exclude=e, product_id=p, term_id=i) for i, t, k, e, p in rows]


def matcher_for_store(*, store: Store) -> Matcher:
    """The store's automaton, built from its terms (thousands of terms build in well under a second)."""
    return Matcher(terms_for_store(store=store))


_MATCHERS: dict[int, tuple[tuple, float, Matcher]] = {}
_MATCHERS_LOCK = threading.Lock()
MATCHER_RECHECK_SECONDS = 5.0


def _terms_version(store_id: int) -> tuple:
    # Terms are only ever added or deleted (never edited), so their count and highest id say when they changed.
    row = TrackedTerm.objects.for_store(store_id).aggregate(n=Count("id"), top=Max("id"))
    return (row["n"], row["top"])


def matcher_cached(*, store_id: int) -> Matcher:
    """The store's automaton, rebuilt when its terms changed; looked at again at most every few seconds,
    so a busy stream costs no query per post (thread-safe; one cache per process)."""
    moment = time.monotonic()
    with _MATCHERS_LOCK:
        entry = _MATCHERS.get(store_id)
    if entry is not None and moment - entry[1] < MATCHER_RECHECK_SECONDS:
        return entry[2]
    version = _terms_version(store_id)
    if entry is not None and entry[0] == version:
        matcher = entry[2]
    else:
        matcher = Matcher(terms_for_store(store=store_id))
    with _MATCHERS_LOCK:
        _MATCHERS[store_id] = (version, moment, matcher)
    return matcher


def matchers_forget() -> None:
    with _MATCHERS_LOCK:
        _MATCHERS.clear()


# --- the dashboard's reads ----------------------------------------------------------------------------


def mentions_search(*, store: Store, network: str = "", sentiment: str = "", intent: str = "", kind: str = "",
                    product_id: int | None = None, term: str = "", q: str = "", since: datetime | None = None,
                    until: datetime | None = None) -> QuerySet[Mention]:
    """The store's mentions, newest first, narrowed by whichever filters are given ([since, until))."""
    rows = Mention.objects.for_store(store)
    if network:
        rows = rows.filter(network=network)
    if sentiment:
        rows = rows.filter(sentiment=sentiment)
    if intent:
        rows = rows.filter(intent=intent)
    if kind:
        rows = rows.filter(kind=kind)
    if product_id is not None:
        rows = rows.filter(products__id=product_id)
    if term:
        rows = rows.filter(_names_term(term))
    if q:
        rows = rows.filter(Q(text__icontains=q) | Q(title__icontains=q) | Q(author_handle__icontains=q)
                           | Q(author_name__icontains=q))
    if since is not None:
        rows = rows.filter(posted_at__gte=since)
    if until is not None:
        rows = rows.filter(posted_at__lt=until)
    return rows.select_related("customer").prefetch_related("products").order_by("-posted_at", "-id")


def _names_term(term: str) -> Q:
    # `terms` is a JSON list of the tracked terms a mention names. PostgreSQL answers list containment
    # itself; SQLite has no such lookup, so its json_each is asked whether one element equals the term.
    if connection.vendor == "postgresql":
        return Q(terms__contains=[term])
    return Q(RawSQL("EXISTS (SELECT 1 FROM json_each(listening_mention.terms) WHERE json_each.value = %s)",  # noqa: S611 - a fixed query, the term is a parameter
                    [term], output_field=BooleanField()))


def mention_get(*, store: Store, mention_id: int) -> Mention | None:
    return Mention.objects.for_store(store).filter(pk=mention_id).first()


@dataclass(frozen=True, slots=True)
class Share:
    total: int
    negative: int

    @property
    def negative_share(self) -> float:
        return self.negative / self.total if self.total else 0.0


@dataclass(frozen=True, slots=True)
class MentionFigures:
    today: Share
    week: Share
    per_network: list[tuple[str, Share]]  # the last 7 days, busiest network first


def _hour_floor(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def mention_figures(*, store: Store, today_start: datetime, now: datetime | None = None) -> MentionFigures:
    """Mentions and their negative share since `today_start` and over the last 7 days, from the hourly rollup.

    MentionHour counts whole UTC hours, so "today" starts at the hour of the store's midnight (exact for
    every time zone with a whole-hour offset).
    """
    moment = now or timezone.now()
    week_start = _hour_floor(moment - timedelta(days=7))
    rows = MentionHour.objects.for_store(store).filter(hour__gte=min(week_start, _hour_floor(today_start)))
    week = rows.filter(hour__gte=week_start).aggregate(total=Sum("total"), negative=Sum("negative"))
    today = rows.filter(hour__gte=_hour_floor(today_start)).aggregate(total=Sum("total"), negative=Sum("negative"))
    networks = (rows.filter(hour__gte=week_start).values("network").annotate(total=Sum("total"), negative=Sum("negative"))
                .order_by("-total", "network"))
    return MentionFigures(
        today=Share(today["total"] or 0, today["negative"] or 0),
        week=Share(week["total"] or 0, week["negative"] or 0),
        per_network=[(row["network"], Share(row["total"] or 0, row["negative"] or 0)) for row in networks],
    )


@dataclass(frozen=True, slots=True)
class SentimentDay:
    day: date
    negative: int
    neutral: int
    positive: int

    @property
    def total(self) -> int:
        return self.negative + self.neutral + self.positive


def sentiment_by_day(*, store: Store, days: int, zone: tzinfo, now: datetime | None = None) -> list[SentimentDay]:
    """Mentions per sentiment for each of the last `days` days of the store's calendar, oldest first."""
    moment = (now or timezone.now()).astimezone(zone)
    first = moment.date() - timedelta(days=days - 1)
    start = datetime.combine(first, datetime.min.time(), tzinfo=zone)
    counts: dict[date, list[int]] = {first + timedelta(days=n): [0, 0, 0] for n in range(days)}
    rows = (MentionHour.objects.for_store(store).filter(hour__gte=_hour_floor(start))
            .values_list("hour", "negative", "neutral", "positive"))
    for hour, negative, neutral, positive in rows:
        day = counts.get(hour.astimezone(zone).date())
        if day is not None:
            day[0] += negative
            day[1] += neutral
            day[2] += positive
    return [SentimentDay(day, *values) for day, values in sorted(counts.items())]


def alerts_open(*, store: Store) -> list[Alert]:
    """Alerts not closed yet, newest first (acknowledged ones too: acknowledging is not fixing)."""
    return list(Alert.objects.for_store(store).filter(closed_at__isnull=True).select_related("source")
                .order_by("-opened_at", "-id"))


def alerts_unacknowledged_count(*, store: Store) -> int:
    return Alert.objects.for_store(store).filter(closed_at__isnull=True, acknowledged_at__isnull=True).count()


def sources_for_store(*, store: Store) -> list[Source]:
    return list(Source.objects.for_store(store).order_by("network", "key"))


def malformed_recent(*, store: Store, source_ids: list[int], per_source: int = 5) -> dict[int, list[MalformedPayload]]:
    """The last few unreadable payloads of each source, newest first."""
    found: dict[int, list[MalformedPayload]] = {}
    for source_id in source_ids:
        found[source_id] = list(MalformedPayload.objects.for_store(store).filter(source_id=source_id)
                                .order_by("-received_at", "-id")[:per_source])
    return found


def tracked_terms(*, store: Store) -> QuerySet[TrackedTerm]:
    return TrackedTerm.objects.for_store(store).select_related("product").order_by("kind", "term", "exclude", "id")
