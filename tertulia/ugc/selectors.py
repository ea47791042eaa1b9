"""Reads of the community: public pages of reviews, questions, FAQ, comments, testimonials and forum,
the moderation queue (interface 2), and what the embed and the review feed show.

Public reads only ever see published content. Lists are cursor-paginated on the sort's own key
(keyset), so pages stay stable while new content arrives.
"""

import base64
import binascii
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from django.db import connection
from django.db.models import Q, QuerySet
from django.urls import reverse

from tertulia.catalog.models import Category, Product
from tertulia.core.errors import ApiError, ErrorDetail
from tertulia.core.models import Store
from tertulia.ugc.models import (
    Answer,
    Comment,
    ContentType,
    ForumPost,
    ForumThread,
    ProductSummary,
    Question,
    Review,
    ReviewPhoto,
    Status,
    Testimonial,
)
from tertulia.ugc.moderating import reason_text

DEFAULT_LIMIT = 10
MAX_LIMIT = 50
FAQ_SIZE = 10
FAQ_MIN_HELPFUL = 1
ANSWERS_PER_QUESTION = 20

# Each sort as (field, descending) pairs ending in id, the tie-breaker that makes the order total.
REVIEW_SORTS: dict[str, list[tuple[str, bool]]] = {
    "newest": [("created_at", True), ("id", True)],
    "oldest": [("created_at", False), ("id", False)],
    "highest": [("rating", True), ("created_at", True), ("id", True)],
    "lowest": [("rating", False), ("created_at", True), ("id", True)],
    "helpful": [("helpful_count", True), ("created_at", True), ("id", True)],
}
NEWEST = REVIEW_SORTS["newest"]
OLDEST = REVIEW_SORTS["oldest"]


def iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


# --- the product a public request is about -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProductState:
    """One row: the store, the product and its community summary, enough to answer from cache."""

    store_id: int
    store_slug: str
    product_id: int
    sku: str
    title: str
    url: str
    updated_at: str  # as the database gave it: only ever part of a cache key
    version: int
    review_count: int
    rating_sum: int
    histogram: dict[str, int]

    @property
    def average(self) -> float | None:
        return round(self.rating_sum / self.review_count, 1) if self.review_count else None

    def aggregate(self) -> dict[str, Any]:
        histogram = {str(n): int((self.histogram or {}).get(str(n), 0)) for n in range(1, 6)}
        return {"average": self.average, "count": self.review_count, "histogram": histogram}

    def product_json(self) -> dict[str, str]:
        return {"sku": self.sku, "name": self.title, "url": self.url}


def _state_sql() -> str:
    # Written out once (not through the ORM): this runs on every public read, and building the ORM query
    # cost more than running it. Same text on SQLite and PostgreSQL.
    product, store, summary = Product._meta.db_table, Store._meta.db_table, ProductSummary._meta.db_table
    # Only table names from the models are interpolated; every value is a parameter.
    return (
        "SELECT p.store_id, p.id, p.sku, p.title, p.url, p.updated_at, s.version, s.review_count, s.rating_sum, "  # noqa: S608
        f"s.histogram FROM {product} p JOIN {store} st ON st.id = p.store_id "
        f"LEFT JOIN {summary} s ON s.product_id = p.id WHERE st.slug = %s AND p.sku = %s AND p.active = %s"
    )


_STATE_SQL: list[str] = []


def product_state(*, store_slug: str, sku: str) -> ProductState | None:
    """The active product `sku` of the store `store_slug` with its summary, in one query; None if unknown."""
    if not _STATE_SQL:
        _STATE_SQL.append(_state_sql())
    with connection.cursor() as cursor:
        cursor.execute(_STATE_SQL[0], [store_slug, sku, True])
        row = cursor.fetchone()
    if row is None:
        return None
    store_id, pid, sku, title, url, updated_at, version, count, rating_sum, histogram = row
    if isinstance(histogram, str | bytes):
        histogram = orjson.loads(histogram)
    return ProductState(store_id=store_id, store_slug=store_slug, product_id=pid, sku=sku, title=title, url=url,
                        updated_at=str(updated_at), version=version or 0, review_count=count or 0,
                        rating_sum=rating_sum or 0, histogram=histogram or {})


# --- cursors ---------------------------------------------------------------------------------------


def _invalid_cursor() -> ApiError:
    return ApiError("invalid_cursor", "The cursor is not one this API gave out; start again without it.", 400,
                    [ErrorDetail(field="cursor", code="invalid_cursor", message="Pass `next` back unchanged.")])


def cursor_encode(sort: str, values: list[Any]) -> str:
    # Full precision: a cursor rounded to the second would skip rows created in the same second.
    raw = orjson.dumps({"s": sort, "k": [v.astimezone(UTC).isoformat() if isinstance(v, datetime) else v
                                          for v in values]})
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def cursor_decode(cursor: str, sort: str, keys: list[tuple[str, bool]]) -> list[Any]:
    if len(cursor) > 300:
        raise _invalid_cursor()
    try:
        data = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError, orjson.JSONDecodeError):
        raise _invalid_cursor() from None
    if not isinstance(data, dict) or data.get("s") != sort or not isinstance(data.get("k"), list):
        raise _invalid_cursor()
    values = data["k"]
    if len(values) != len(keys):
        raise _invalid_cursor()
    decoded: list[Any] = []
    for (name, _desc), value in zip(keys, values, strict=True):
        if name == "created_at" or name == "last_post_at":
            try:
                moment = datetime.fromisoformat(value.replace("Z", "+00:00")) if isinstance(value, str) else None
            except ValueError:
                moment = None
            if moment is None or moment.tzinfo is None:
                raise _invalid_cursor()
            decoded.append(moment)
        elif isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**63:
            decoded.append(value)
        else:
            raise _invalid_cursor()
    return decoded


def _after(keys: list[tuple[str, bool]], values: list[Any]) -> Q:
    """Rows strictly after `values` in the order `keys` (keyset pagination)."""
    condition = Q(pk__in=[])
    for i, (name, descending) in enumerate(keys):
        step = Q(**{f"{name}__{'lt' if descending else 'gt'}": values[i]})
        for j in range(i):
            step &= Q(**{keys[j][0]: values[j]})
        condition |= step
    return condition


def _page(rows: QuerySet, *, sort: str, keys: list[tuple[str, bool]], cursor: str | None, limit: int):
    if cursor:
        rows = rows.filter(_after(keys, cursor_decode(cursor, sort, keys)))
    ordering = [f"-{name}" if desc else name for name, desc in keys]
    items = list(rows.order_by(*ordering)[: limit + 1])
    following = None
    if len(items) > limit:
        items = items[:limit]
        last = items[-1]
        following = cursor_encode(sort, [getattr(last, name) for name, _ in keys])
    return items, following



# --- public pages ----------------------------------------------------------------------------------


def photo_url(base_url: str, key: str, extension: str) -> str:
    return base_url + reverse("ugc:photo", kwargs={"key": key, "extension": extension})


def reviews_page(*, state: ProductState, sort: str = "newest", rating: int | None = None, cursor: str | None = None,
                 limit: int = DEFAULT_LIMIT, base_url: str = "") -> dict[str, Any]:
    keys = REVIEW_SORTS[sort]
    rows = (Review.objects.filter(store_id=state.store_id, product_id=state.product_id, status=Status.PUBLISHED)
            .only("id", "rating", "title", "text", "display_name", "anonymous", "verified_buyer", "language",
                  "created_at", "helpful_count", "reply_text", "reply_at"))
    if rating is not None:
        rows = rows.filter(rating=rating)
    items, following = _page(rows, sort=sort, keys=keys, cursor=cursor, limit=limit)
    photos: dict[int, list[dict[str, Any]]] = {}
    if items:
        for photo in ReviewPhoto.objects.filter(review_id__in=[r.pk for r in items]).order_by("review_id", "position", "id"):
            photos.setdefault(photo.review_id, []).append(
                {"url": photo_url(base_url, photo.key, photo.extension), "width": photo.width, "height": photo.height})
    return {
        "product": state.product_json(),
        "aggregate": state.aggregate(),
        "items": [review_json(review, photos.get(review.pk, [])) for review in items],
        "next": following,
    }


def review_json(review: Review, photos: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "id": review.pk, "rating": review.rating, "title": review.title, "text": review.text,
        "author": review.author, "verified": review.verified_buyer, "language": review.language,
        "created_at": iso(review.created_at), "photos": photos, "helpful": review.helpful_count,
        "reply": {"text": review.reply_text, "created_at": iso(review.reply_at)} if review.reply_text else None,
    }


def _answers_of(question_ids: list[int]) -> dict[int, list[Answer]]:
    answers: dict[int, list[Answer]] = {}
    rows = (Answer.objects.filter(question_id__in=question_ids, status=Status.PUBLISHED)
            .order_by("question_id", "-by_staff", "-helpful_count", "created_at", "id"))
    for answer in rows:
        bucket = answers.setdefault(answer.question_id, [])
        if len(bucket) < ANSWERS_PER_QUESTION:
            bucket.append(answer)
    return answers


def answer_json(answer: Answer) -> dict[str, Any]:
    return {"id": answer.pk, "text": answer.text, "author": answer.author, "by_staff": answer.by_staff,
            "verified_buyer": answer.verified_buyer, "helpful": answer.helpful_count,
            "created_at": iso(answer.created_at)}


def questions_page(*, state: ProductState, sort: str = "newest", cursor: str | None = None,
                   limit: int = DEFAULT_LIMIT) -> dict[str, Any]:
    keys = NEWEST if sort == "newest" else OLDEST
    rows = Question.objects.filter(store_id=state.store_id, product_id=state.product_id, status=Status.PUBLISHED)
    items, following = _page(rows, sort=sort, keys=keys, cursor=cursor, limit=limit)
    answers = _answers_of([q.pk for q in items])
    return {
        "product": state.product_json(),
        "items": [{"id": q.pk, "text": q.text, "author": q.author, "created_at": iso(q.created_at),
                   "answers": [answer_json(a) for a in answers.get(q.pk, [])]} for q in items],
        "next": following,
    }


def _best(answers: list[Answer]) -> Answer | None:
    if not answers:
        return None
    return max(answers, key=lambda a: (a.helpful_count, a.by_staff, a.verified_buyer, -a.created_at.timestamp(), -a.pk))


def faq_items(*, store_id: int, product_id: int, size: int = FAQ_SIZE) -> list[dict[str, Any]]:
    """The community FAQ: questions whose best answer readers found helpful (or staff gave, or staff pinned)."""
    questions = list(Question.objects.filter(store_id=store_id, product_id=product_id, status=Status.PUBLISHED)
                     .order_by("created_at", "id")[:500])
    answers = _answers_of([q.pk for q in questions])
    chosen = []
    for question in questions:
        best = _best(answers.get(question.pk, []))
        if best is None:
            continue
        if question.pinned or best.by_staff or best.helpful_count >= FAQ_MIN_HELPFUL:
            chosen.append((question, best))
    chosen.sort(key=lambda pair: (not pair[0].pinned, -pair[1].helpful_count, pair[0].created_at, pair[0].pk))
    return [{"question_id": q.pk, "question": q.text, "answer": a.text, "answer_id": a.pk, "author": a.author,
             "by_staff": a.by_staff, "verified_buyer": a.verified_buyer, "helpful": a.helpful_count}
            for q, a in chosen[:size]]


def comments_page(*, state: ProductState, cursor: str | None = None, limit: int = DEFAULT_LIMIT) -> dict[str, Any]:
    """Top-level comments, newest first, each with its whole published thread of replies (oldest first)."""
    rows = Comment.objects.filter(store_id=state.store_id, product_id=state.product_id, status=Status.PUBLISHED,
                                  parent__isnull=True)
    roots, following = _page(rows, sort="newest", keys=NEWEST, cursor=cursor, limit=limit)
    children: dict[int, list[Comment]] = {}
    frontier = [c.pk for c in roots]
    while frontier:
        level = list(Comment.objects.filter(parent_id__in=frontier, status=Status.PUBLISHED).order_by("created_at", "id"))
        for reply in level:
            children.setdefault(reply.parent_id, []).append(reply)
        frontier = [c.pk for c in level]

    def tree(comment: Comment) -> dict[str, Any]:
        return {"id": comment.pk, "text": comment.text, "author": comment.author, "created_at": iso(comment.created_at),
                "replies": [tree(reply) for reply in children.get(comment.pk, [])]}

    return {"product": state.product_json(), "items": [tree(c) for c in roots], "next": following}


def testimonials_page(*, store: Store, cursor: str | None = None, limit: int = DEFAULT_LIMIT) -> dict[str, Any]:
    rows = Testimonial.objects.for_store(store).filter(status=Status.PUBLISHED)
    items, following = _page(rows, sort="newest", keys=NEWEST, cursor=cursor, limit=limit)
    return {"items": [{"id": t.pk, "text": t.text, "rating": t.rating, "author": t.author,
                       "created_at": iso(t.created_at)} for t in items], "next": following}


def forum_threads_page(*, store: Store, category: Category, cursor: str | None = None,
                       limit: int = DEFAULT_LIMIT) -> dict[str, Any]:
    keys = [("last_post_at", True), ("id", True)]
    rows = ForumThread.objects.for_store(store).filter(category=category, status=Status.PUBLISHED)
    items, following = _page(rows, sort="active", keys=keys, cursor=cursor, limit=limit)
    return {"category": {"id": category.external_id, "name": category.name},
            "items": [{"id": t.pk, "title": t.title, "text": t.text, "author": t.author, "posts": t.post_count,
                       "created_at": iso(t.created_at), "last_post_at": iso(t.last_post_at)} for t in items],
            "next": following}


def forum_thread_page(*, store: Store, thread_id: int, cursor: str | None = None,
                      limit: int = DEFAULT_LIMIT) -> dict[str, Any] | None:
    thread = (ForumThread.objects.for_store(store).filter(pk=thread_id, status=Status.PUBLISHED)
              .select_related("category").first())
    if thread is None:
        return None
    rows = ForumPost.objects.for_store(store).filter(thread=thread, status=Status.PUBLISHED)
    items, following = _page(rows, sort="oldest", keys=OLDEST, cursor=cursor, limit=limit)
    return {"thread": {"id": thread.pk, "title": thread.title, "text": thread.text, "author": thread.author,
                       "category": {"id": thread.category.external_id, "name": thread.category.name},
                       "created_at": iso(thread.created_at)},
            "items": [{"id": p.pk, "text": p.text, "author": p.author, "reply_to": p.reply_to_id,
                       "created_at": iso(p.created_at)} for p in items],
            "next": following}


# --- the embed and the feed ------------------------------------------------------------------------


def product_for_embed(*, store: Store, sku: str) -> Product | None:
    return Product.objects.for_store(store).filter(sku=sku, active=True).select_related("category").first()


def _with_photos(reviews: list[Review]):
    photos: dict[int, list[ReviewPhoto]] = {}
    for photo in ReviewPhoto.objects.filter(review_id__in=[r.pk for r in reviews]).order_by("position", "id"):
        photos.setdefault(photo.review_id, []).append(photo)
    for review in reviews:
        yield review, photos.get(review.pk, [])


def store_reviews_all(*, store: Store):
    """Published reviews of a store in id order, in chunks of 1,000 (keyset), each with its photos."""
    last = 0
    while True:
        chunk = list(Review.objects.for_store(store).filter(status=Status.PUBLISHED, pk__gt=last)
                     .select_related("product").order_by("id")[:1000])
        if not chunk:
            return
        yield from _with_photos(chunk)
        last = chunk[-1].pk


# --- the moderation queue (interface 2) ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class QueueReason:
    code: str
    score: float
    evidence: list[str]
    message: str


@dataclass(frozen=True, slots=True)
class QueueItem:
    content_type: str
    id: int
    status: str
    text: str
    title: str
    rating: int | None
    author: str
    email_known: bool
    language: str
    created_at: datetime
    verified_buyer: bool
    flag_count: int
    subject: str  # the product, category or store it is about
    product_sku: str
    action: str  # what the automatic check decided
    policy_version: int
    reasons: list[QueueReason] = field(default_factory=list)
    photos: list[str] = field(default_factory=list)  # site-relative URLs (staff may see photos of held reviews)


def _subject(content_type: str, item) -> tuple[str, str]:
    if content_type in (ContentType.REVIEW, ContentType.QUESTION, ContentType.COMMENT):
        return item.product.title, item.product.sku
    if content_type == ContentType.ANSWER:
        return item.question.product.title, item.question.product.sku
    if content_type == ContentType.FORUM_THREAD:
        return item.category.name, ""
    if content_type == ContentType.FORUM_POST:
        return item.thread.title, ""
    return item.store.name, ""


_RELATED = {
    ContentType.REVIEW: ("product",), ContentType.QUESTION: ("product",), ContentType.COMMENT: ("product",),
    ContentType.ANSWER: ("question__product",), ContentType.FORUM_THREAD: ("category",),
    ContentType.FORUM_POST: ("thread",), ContentType.TESTIMONIAL: ("store",),
}


def moderation_queue(*, store: Store, code: str | None = None, content_type: str | None = None,
                     language: str = "es", limit: int = 500) -> list[QueueItem]:
    """Held items of the store, oldest first, with the verdict that held them (or the flags that did)."""
    from tertulia.ugc.services import MODELS

    kinds = [content_type] if content_type else list(MODELS)
    found: list[QueueItem] = []
    for kind in kinds:
        model = MODELS.get(kind)
        if model is None:
            continue
        rows = (model.objects.for_store(store).filter(status=Status.HELD).select_related(*_RELATED[kind])
                .order_by("created_at", "id")[:limit])
        items = list(rows)
        photos: dict[int, list[str]] = {}
        if kind == ContentType.REVIEW and items:
            for photo in ReviewPhoto.objects.filter(review_id__in=[i.pk for i in items]).order_by("position", "id"):
                photos.setdefault(photo.review_id, []).append(photo_url("", photo.key, photo.extension))
        for item in items:
            verdict = item.moderation or {}
            results = sorted((r for r in verdict.get("results", []) if float(r.get("score", 0)) > 0),
                             key=lambda r: -float(r["score"]))
            if code and code not in {r.get("code") for r in results}:
                continue
            subject, sku = _subject(kind, item)
            found.append(QueueItem(
                content_type=kind, id=item.pk, status=item.status, text=item.text,
                title=getattr(item, "title", "") or "", rating=getattr(item, "rating", None), author=item.author,
                email_known=bool(item.author_email), language=item.language, created_at=item.created_at,
                verified_buyer=item.verified_buyer, flag_count=item.flag_count, subject=subject, product_sku=sku,
                action=str(verdict.get("action", "")), policy_version=int(verdict.get("policy_version") or 0),
                reasons=[QueueReason(code=r["code"], score=float(r["score"]), evidence=list(r.get("evidence", [])),
                                     message=reason_text(r["code"], language)) for r in results],
                photos=photos.get(item.pk, []),
            ))
    found.sort(key=lambda q: (q.created_at, q.content_type, q.id))
    return found[:limit]
