"""Listening in the dashboard: mentions with filters and figures, alerts, connector health, tracked terms.

Thin over listening (selectors for the reads; `tracked_term_add`, `tracked_term_remove`,
`tracked_terms_sync_catalogue` and `alert_acknowledge` for the writes) and inbox (`conversation_add_inbound`
for "open in inbox"). Everyone in the store reads; owners, managers and community managers change terms
and acknowledge alerts; whoever answers in the inbox may open a mention there.
"""

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from django.contrib import messages
from django.contrib.auth.models import AbstractBaseUser
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, pgettext_lazy
from django.views.decorators.http import require_GET, require_POST

from tertulia.core.models import Role, Store
from tertulia.dashboard import formatting, selectors
from tertulia.dashboard.views import _page, store_view
from tertulia.inbox import selectors as inbox_selectors
from tertulia.inbox import services as inbox_services
from tertulia.listening import selectors as listening_selectors
from tertulia.listening.models import Alert, Mention, TermKind
from tertulia.listening.services import (
    alert_acknowledge,
    tracked_term_add,
    tracked_term_remove,
    tracked_terms_sync_catalogue,
)
from tertulia.listening.sources import source_describe

PER_PAGE = 25
CHART_DAYS = 14
MALFORMED_SHOWN = 5
TOXIC = 0.8  # the same line as inbox.priority: above it, abuse rather than a complaint
MANAGERS = {Role.OWNER, Role.MANAGER, Role.COMMUNITY_MANAGER}
FILTERS = ("network", "sentiment", "intent", "kind", "product", "term", "q", "from", "to")

NETWORKS = {
    "mastodon": "Mastodon", "bluesky": "Bluesky", "x": "X", "rss": "RSS/Atom",
    "webhook": gettext_lazy("Inbound webhook"), "email": gettext_lazy("E-mail"),
}
SENTIMENTS = {
    "negative": pgettext_lazy("sentiment", "Negative"),
    "neutral": pgettext_lazy("sentiment", "Neutral"),
    "positive": pgettext_lazy("sentiment", "Positive"),
}
INTENTS = {
    "question": pgettext_lazy("intent", "Question"),
    "complaint": pgettext_lazy("intent", "Complaint"),
    "purchase_intent": pgettext_lazy("intent", "Purchase intent"),
    "praise": pgettext_lazy("intent", "Praise"),
    "other": pgettext_lazy("intent", "Other"),
}
MENTION_KINDS = {
    "post": pgettext_lazy("mention kind", "Post"),
    "mention": pgettext_lazy("mention kind", "Mention"),
    "direct": pgettext_lazy("mention kind", "Direct message"),
}
TERM_KINDS = {
    "brand": pgettext_lazy("term kind", "Brand"),
    "product": pgettext_lazy("term kind", "Product"),
    "sku": pgettext_lazy("term kind", "SKU"),
    "hashtag": pgettext_lazy("term kind", "Hashtag"),
    "competitor": pgettext_lazy("term kind", "Competitor"),
    "keyword": pgettext_lazy("term kind", "Keyword"),
}
SOURCE_STATUSES = {
    "ok": pgettext_lazy("connector", "Working"),
    "failing": pgettext_lazy("connector", "Failing"),
    "down": pgettext_lazy("connector", "Down"),
    "waiting": pgettext_lazy("connector", "Waiting for its first run"),
    "disabled": pgettext_lazy("connector", "Disabled"),
}


def can_manage(*, store: Store, user: AbstractBaseUser) -> bool:
    if user.is_superuser:
        return True
    return selectors.membership_role(store=store, user=user) in MANAGERS


def safe_url(url: str) -> str:
    """The address when it is a web address; anything else (javascript:, data:) is not linked."""
    return url if url.lower().startswith(("https://", "http://")) else ""


def network_label(code: str) -> str:
    return str(NETWORKS.get(code, code))



# --- the mentions page ----------------------------------------------------------------------------

def _day(value: str) -> date | None:
    try:
        return date.fromisoformat(value) if value else None
    except ValueError:
        return None


@dataclass(slots=True)
class Filters:
    network: str = ""
    sentiment: str = ""
    intent: str = ""
    kind: str = ""
    product: int | None = None
    term: str = ""
    q: str = ""
    start: date | None = None
    end: date | None = None

    @classmethod
    def from_query(cls, query) -> "Filters":
        def pick(name: str, allowed) -> str:
            value = query.get(name, "")
            return value if value in allowed else ""

        product = query.get("product", "")
        return cls(network=pick("network", NETWORKS), sentiment=pick("sentiment", SENTIMENTS),
                   intent=pick("intent", INTENTS), kind=pick("kind", MENTION_KINDS),
                   product=int(product) if product.isdigit() and len(product) < 19 else None,
                   term=query.get("term", "").strip()[:200], q=query.get("q", "").strip()[:200],
                   start=_day(query.get("from", "")), end=_day(query.get("to", "")))

    @property
    def active(self) -> bool:
        return any((self.network, self.sentiment, self.intent, self.kind, self.product is not None, self.term, self.q,
                    self.start, self.end))


def _local_midnight(day: date) -> datetime:
    return datetime.combine(day, datetime.min.time(), tzinfo=timezone.get_current_timezone())


def mention_row(mention: Mention, conversation_id: int | None) -> dict[str, Any]:
    return {
        "mention": mention,
        "network": network_label(mention.network),
        "kind": str(MENTION_KINDS.get(mention.kind, mention.kind)),
        "sentiment": str(SENTIMENTS.get(mention.sentiment, mention.sentiment)),
        "intent": str(INTENTS.get(mention.intent, mention.intent)),
        "toxic": mention.toxicity > TOXIC,
        "url": safe_url(mention.url),
        "products": [{"id": p.pk, "title": p.title, "url": safe_url(p.url)} for p in mention.products.all()],
        "conversation_id": conversation_id,
    }


@dataclass(slots=True)
class SentimentChart:
    width: int
    height: int
    axis_y: int
    bars: list[dict[str, Any]]
    empty: bool


def sentiment_chart(days: list[listening_selectors.SentimentDay]) -> SentimentChart:
    """Stacked bars per day (negative at the bottom, where a spike is easiest to see), as SVG geometry."""
    width, height, top, bottom, left = 640, 200, 12, 172, 8
    slot = (width - 2 * left) / max(len(days), 1)
    bar = min(30.0, slot * 0.7)
    peak = max([d.total for d in days] + [1])
    span = bottom - top
    bars = []
    for index, day in enumerate(days):
        x = left + slot * index + (slot - bar) / 2
        y = float(bottom)
        parts = []
        for name, value in (("negative", day.negative), ("neutral", day.neutral), ("positive", day.positive)):
            h = span * value / peak
            y -= h
            parts.append({"name": name, "y": round(y, 1), "h": round(h, 1), "value": value,
                          "label": str(SENTIMENTS[name])})
        bars.append({"x": round(x, 1), "width": round(bar, 1), "centre": round(x + bar / 2, 1), "parts": parts,
                     "total": day.total, "label": date_format(day.day, "j/n"),
                     "title": date_format(day.day, "DATE_FORMAT"),
                     # Every other day is labelled when there are many, always including today.
                     "show_label": len(days) <= 7 or index % 2 == (len(days) - 1) % 2})
    return SentimentChart(width=width, height=height, axis_y=bottom, bars=bars,
                          empty=not any(d.total for d in days))


def alert_row(alert: Alert) -> dict[str, Any]:
    details = alert.details or {}
    if alert.kind == "negative_spike":
        hour = _iso(details.get("hour"))
        text = _("%(negative)s negative mentions in the hour from %(hour)s; usually %(baseline)s an hour.") % {
            "negative": details.get("negative", "?"),
            "hour": date_format(timezone.localtime(hour), "SHORT_DATETIME_FORMAT") if hour else "?",
            "baseline": details.get("baseline", "?")}
        title = _("Spike of negative mentions")
    elif alert.kind == "connector_down":
        since = _iso(details.get("since"))
        text = _("%(source)s (%(network)s) has failed %(failures)s times in a row since %(since)s: %(code)s.") % {
            "source": details.get("source") or (alert.source.key if alert.source else "?"),
            "network": network_label(str(details.get("network", ""))), "failures": details.get("failures", "?"),
            "since": date_format(timezone.localtime(since), "SHORT_DATETIME_FORMAT") if since else "?",
            "code": details.get("code", "?")}
        title = _("Connector broken")
    else:
        text, title = str(details)[:300], alert.kind
    return {"alert": alert, "title": title, "text": text, "error": str(details.get("error", ""))[:500]}


def _iso(value: Any) -> datetime | None:
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return moment if timezone.is_aware(moment) else None


def source_row(source, malformed: list) -> dict[str, Any]:
    described = source_describe(source)
    health = described["health"]
    return {
        "source": source, "network": network_label(source.network), "status": health["status"],
        "status_label": str(SOURCE_STATUSES.get(health["status"], health["status"])),
        "lag": formatting.format_duration(health["lag_seconds"]), "health": health, "malformed": malformed,
        "secrets_readable": described["secrets_readable"],
    }


@require_GET
@store_view()
def listening(request: HttpRequest, store: Store) -> HttpResponse:
    filters = Filters.from_query(request.GET)
    since = _local_midnight(filters.start) if filters.start else None
    until = _local_midnight(filters.end + timedelta(days=1)) if filters.end else None
    found = listening_selectors.mentions_search(
        store=store, network=filters.network, sentiment=filters.sentiment, intent=filters.intent, kind=filters.kind,
        product_id=filters.product, term=filters.term, q=filters.q, since=since, until=until)
    page = Paginator(found, PER_PAGE).get_page(request.GET.get("page"))
    mentions = list(page.object_list)
    in_inbox = inbox_selectors.conversation_ids_for_mentions(store=store, mention_ids=[m.pk for m in mentions])
    now = timezone.now()
    figures = listening_selectors.mention_figures(store=store, today_start=selectors.day_start(store=store, now=now),
                                                  now=now)
    days = listening_selectors.sentiment_by_day(store=store, days=CHART_DAYS, zone=timezone.get_current_timezone(),
                                                now=now)
    terms = list(listening_selectors.tracked_terms(store=store).filter(exclude=False))
    products = {t.product_id: t.product.title for t in terms if t.product_id}
    if filters.product is not None and filters.product not in products:
        named = next((p for m in mentions for p in m.products.all() if p.pk == filters.product), None)
        products[filters.product] = named.title if named else f"#{filters.product}"
    query = request.GET.copy()
    query.pop("page", None)
    sources = listening_selectors.sources_for_store(store=store)
    return _page(
        request, store, "dashboard/listening.html", "listening",
        tab="mentions", page=page, rows=[mention_row(m, in_inbox.get(m.pk)) for m in mentions], filters=filters,
        query=query.urlencode(), figures=figures, chart=sentiment_chart(days),
        networks=list(NETWORKS.items()), sentiments=list(SENTIMENTS.items()), intents=list(INTENTS.items()),
        kinds=list(MENTION_KINDS.items()),
        term_choices=sorted({t.term for t in terms if not t.product_id}, key=str.lower),
        product_choices=sorted(products.items(), key=lambda item: item[1].lower())[:200],
        network_rows=[{"network": network_label(code), "share": share} for code, share in figures.per_network],
        alerts=[alert_row(a) for a in listening_selectors.alerts_open(store=store)],
        sources=[source_row(s, []) for s in sources],
        can_manage=can_manage(store=store, user=request.user),
        can_answer=inbox_services.can_answer(store=store, user=request.user),
    )


@require_POST
@store_view()
def mention_to_inbox(request: HttpRequest, store: Store, mention_id: int) -> HttpResponse:
    """The mention's conversation: the one it is in already, or a new one opened for it."""
    mention = listening_selectors.mention_get(store=store, mention_id=mention_id)
    if mention is None:
        raise Http404
    if not inbox_services.can_answer(store=store, user=request.user):
        return _forbidden(request, store, _("Only people who answer in the inbox can open a mention there."))
    existing = inbox_selectors.conversation_ids_for_mentions(store=store, mention_ids=[mention.pk]).get(mention.pk)
    if existing is None:
        conversation = inbox_services.conversation_add_inbound(
            store_id=store.pk, inbound=inbox_services.inbound_from_mention(mention))
        if conversation is None:  # added by someone else a moment ago
            existing = inbox_selectors.conversation_ids_for_mentions(store=store, mention_ids=[mention.pk])[mention.pk]
        else:
            existing = conversation.pk
            messages.success(request, _("The mention is now a conversation in the inbox."))
    return redirect("dashboard:inbox_conversation", conversation_id=existing)


def _forbidden(request: HttpRequest, store: Store, message: str) -> HttpResponse:
    response = _page(request, store, "dashboard/listening_forbidden.html", "listening", message=message)
    response.status_code = 403
    return response


@require_POST
@store_view()
def alert_ack(request: HttpRequest, store: Store, alert_id: int) -> HttpResponse:
    if not Alert.objects.for_store(store).filter(pk=alert_id).exists():
        raise Http404
    if not can_manage(store=store, user=request.user):
        return _forbidden(request, store, _("Only owners, managers and community managers can acknowledge alerts."))
    if alert_acknowledge(store=store, alert_id=alert_id, by=request.user.get_username()):
        messages.success(request, _("Alert acknowledged."))
    return redirect(reverse("dashboard:listening") + "#alerts")


# --- connectors -----------------------------------------------------------------------------------

@require_GET
@store_view()
def listening_sources(request: HttpRequest, store: Store) -> HttpResponse:
    sources = listening_selectors.sources_for_store(store=store)
    malformed = listening_selectors.malformed_recent(store=store, source_ids=[s.pk for s in sources],
                                                     per_source=MALFORMED_SHOWN)
    return _page(request, store, "dashboard/listening_sources.html", "listening", tab="sources",
                 sources=[source_row(s, malformed.get(s.pk, [])) for s in sources])


# --- tracked terms --------------------------------------------------------------------------------

def _terms_page(request: HttpRequest, store: Store, *, errors: dict[str, str] | None = None,
                values: dict[str, Any] | None = None, status: int = 200) -> HttpResponse:
    rows = [{"term": t, "kind": str(TERM_KINDS.get(t.kind, t.kind))}
            for t in listening_selectors.tracked_terms(store=store)]
    response = _page(request, store, "dashboard/listening_terms.html", "listening", tab="terms", rows=rows,
                     term_kinds=list(TERM_KINDS.items()), errors=errors or {},
                     values=values or {"kind": TermKind.KEYWORD}, can_manage=can_manage(store=store, user=request.user))
    response.status_code = status
    return response


@require_GET
@store_view()
def listening_terms(request: HttpRequest, store: Store) -> HttpResponse:
    return _terms_page(request, store)


@require_POST
@store_view()
def term_add(request: HttpRequest, store: Store) -> HttpResponse:
    if not can_manage(store=store, user=request.user):
        return _forbidden(request, store, _("Only owners, managers and community managers can change tracked terms."))
    term = request.POST.get("term", "").strip()
    kind = request.POST.get("kind", "")
    exclude = request.POST.get("exclude") == "on"
    values = {"term": term, "kind": kind, "exclude": exclude}
    if kind not in TERM_KINDS:
        return _terms_page(request, store, errors={"kind": _("Choose what kind of term it is.")}, values=values,
                           status=422)
    try:
        row = tracked_term_add(store=store, term=term, kind=kind, exclude=exclude)
    except ValueError:
        return _terms_page(request, store, values=values, status=422, errors={
            "term": _("A term needs at least one letter or digit and at most 200 characters.")})
    if exclude:
        messages.success(request, _("Posts containing “%(term)s” are no longer mentions.") % {"term": row.term})
    else:
        messages.success(request, _("Now listening for “%(term)s”.") % {"term": row.term})
    return redirect("dashboard:listening_terms")


@require_POST
@store_view()
def term_remove(request: HttpRequest, store: Store, term_id: int) -> HttpResponse:
    term = listening_selectors.tracked_terms(store=store).filter(pk=term_id).first()
    if term is None:
        raise Http404
    if not can_manage(store=store, user=request.user):
        return _forbidden(request, store, _("Only owners, managers and community managers can change tracked terms."))
    tracked_term_remove(store=store, term_id=term.pk)
    messages.success(request, _("“%(term)s” is no longer tracked.") % {"term": term.term})
    return redirect("dashboard:listening_terms")


@require_POST
@store_view()
def terms_sync(request: HttpRequest, store: Store) -> HttpResponse:
    if not can_manage(store=store, user=request.user):
        return _forbidden(request, store, _("Only owners, managers and community managers can change tracked terms."))
    counts = tracked_terms_sync_catalogue(store=store)
    messages.success(request, _("Catalogue synchronised: %(created)s terms added, %(deleted)s removed.") % counts)
    return redirect("dashboard:listening_terms")
