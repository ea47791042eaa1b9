"""Writes of the community: every kind of submission, votes, flags, store replies and moderators' decisions.

Every submission is validated completely before anything is written (a 422 stores nothing), saved,
judged by the moderation app and given the status its verdict says, all in one transaction. The
product's summary version goes up in that same transaction, so every cached answer about the
product changes the moment the change commits, in every process. See docs/ugc.md.
"""

import hashlib
import logging
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.files.storage import default_storage
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.db.models import Count, F
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from tertulia.catalog.models import Category, Product
from tertulia.commerce.models import Order, OrderStatus
from tertulia.core.errors import ApiError, ErrorDetail
from tertulia.core.models import Store
from tertulia.journeys.links import review_token_read
from tertulia.ugc.identity import device_id_valid, identity_hash
from tertulia.ugc.models import (
    Answer,
    Comment,
    ContentType,
    Contribution,
    Flag,
    FlagReason,
    ForumPost,
    ForumThread,
    ProductSummary,
    Question,
    Review,
    ReviewPhoto,
    Status,
    StoreOrigin,
    Testimonial,
    Vote,
)
from tertulia.ugc.moderating import Judgement, content_judge, decision_human, reason_text, reasons_of
from tertulia.ugc.photos import MAX_PHOTOS, EncodedPhoto, photo_encode, photo_store

logger = logging.getLogger(__name__)

TEXT_MAX = 5000
TITLE_MAX = 200
THREAD_TITLE_MAX = 150
NAME_MAX = 80
NOTE_MAX = 500
COMMENT_MAX_DEPTH = 5
LANGUAGES = ("es", "en")
MODELS: dict[str, type[Contribution]] = {
    ContentType.REVIEW: Review, ContentType.QUESTION: Question, ContentType.ANSWER: Answer,
    ContentType.COMMENT: Comment, ContentType.TESTIMONIAL: Testimonial,
    ContentType.FORUM_THREAD: ForumThread, ContentType.FORUM_POST: ForumPost,
}
VOTABLE = (ContentType.REVIEW, ContentType.ANSWER)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_CLIENT_KEY = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
_ORIGIN = re.compile(r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?$")


def replay_window() -> timedelta:
    return timedelta(seconds=int(getattr(settings, "TERTULIA_UGC_REPLAY_SECONDS", 60)))


def flags_to_hold() -> int:
    return int(getattr(settings, "TERTULIA_UGC_FLAGS_TO_HOLD", 3))


# --- what callers pass and get back ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Author:
    """Who is writing. `customer_id` is trusted (a review link, staff tooling, the demo): a typed e-mail is not."""

    display_name: str = ""
    email: str = ""
    device_id: str = ""
    ip: str = ""
    customer_id: int | None = None
    answer_language: str = ""  # language of what we tell the author; defaults to the content's, then the store's


@dataclass(frozen=True, slots=True)
class Reason:
    code: str
    message: str


@dataclass(frozen=True, slots=True)
class Submission:
    content_type: str
    id: int
    status: str
    reasons: list[Reason] = field(default_factory=list)
    message: str = ""
    replayed: bool = False
    edited: bool = False  # an earlier review of the same order item was changed instead of a new one added


@dataclass(frozen=True, slots=True)
class VoteResult:
    counted: bool
    helpful: int


@dataclass(frozen=True, slots=True)
class FlagResult:
    counted: bool
    held: bool


# --- validation ------------------------------------------------------------------------------------


class _Problems:
    """Collects every problem of a submission so the author sees them all at once."""

    def __init__(self) -> None:
        self.details: list[ErrorDetail] = []

    def add(self, field_name: str, code: str, message: str) -> None:
        self.details.append(ErrorDetail(field=field_name, code=code, message=message))

    def text(self, field_name: str, value, *, required: bool, maximum: int, single_line: bool = False) -> str:
        if value is None:
            value = ""
        if not isinstance(value, str):
            self.add(field_name, "invalid_type", _("Must be text."))
            return ""
        value = unicodedata.normalize("NFC", value).strip()
        if single_line:
            value = " ".join(value.split())
        if _CONTROL.search(value):
            self.add(field_name, "control_characters", _("Must not contain control characters."))
            return ""
        if required and not value:
            self.add(field_name, "required", _("This field is required."))
        elif len(value) > maximum:
            self.add(field_name, "too_long", _("At most %(max)d characters.") % {"max": maximum})
        return value

    def rating(self, field_name: str, value, *, required: bool = True) -> int | None:
        if value is None or value == "":
            if required:
                self.add(field_name, "required", _("Choose a rating from 1 to 5 stars."))
            return None
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value.strip())
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 5:
            self.add(field_name, "out_of_range", _("The rating must be a whole number from 1 to 5."))
            return None
        return value

    def email(self, value) -> str:
        email = self.text("email", value, required=False, maximum=254, single_line=True)
        if email:
            try:
                validate_email(email)
            except DjangoValidationError:
                self.add("email", "invalid_email", _("Enter a valid e-mail address."))
                return ""
        return email.lower()

    def language(self, value) -> str:
        language = self.text("language", value, required=False, maximum=16, single_line=True).lower()
        language = language.split("-")[0].split("_")[0]
        if language and language not in LANGUAGES:
            self.add("language", "unsupported_language", _("Use 'es' or 'en', or leave it out."))
            return ""
        return language

    def device_id(self, value) -> str:
        device = self.text("device_id", value, required=False, maximum=128, single_line=True)
        if device and not device_id_valid(device):
            self.add("device_id", "invalid_device_id", _("8 to 128 letters, digits or . _ : -"))
            return ""
        return device

    def client_key(self, value: str) -> str:
        if value and not _CLIENT_KEY.match(value):
            self.add("Idempotency-Key", "invalid_idempotency_key", _("1 to 64 letters, digits or . _ : -"))
            return ""
        return value

    def raise_if_any(self) -> None:
        if self.details:
            raise ApiError("invalid_request", _("Some fields need fixing; nothing was saved."), 422, self.details)


@dataclass(frozen=True, slots=True)
class _Clean:
    display_name: str
    email: str
    device_id: str
    language: str
    client_key: str


def _author_fields(problems: _Problems, author: Author, *, language, client_key: str) -> _Clean:
    return _Clean(
        display_name=problems.text("display_name", author.display_name, required=False, maximum=NAME_MAX,
                                   single_line=True),
        email=problems.email(author.email),
        device_id=problems.device_id(author.device_id),
        language=problems.language(language),
        client_key=problems.client_key(client_key or ""),
    )


# --- shared steps ----------------------------------------------------------------------------------


def _now(now: datetime | None) -> datetime:
    return now or timezone.now()


def _fingerprint(*parts: object) -> str:
    return hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).hexdigest()


def _author_key(store: Store, author: Author, clean: _Clean) -> str:
    if author.customer_id:
        return f"customer:{author.customer_id}"
    if clean.device_id:
        return "device:" + identity_hash(store_id=store.pk, kind="device", value=clean.device_id)
    if clean.email:
        return "email:" + clean.email
    return "ip:" + identity_hash(store_id=store.pk, kind="ip", value=author.ip)


def _earlier(model: type[Contribution], store: Store, clean: _Clean, fingerprint: str, now: datetime):
    """A contribution this request repeats: same Idempotency-Key, or same author and content moments ago."""
    rows = model.objects.for_store(store)
    if clean.client_key:
        earlier = rows.filter(client_key=clean.client_key).first()
        if earlier is not None:
            return earlier
    return rows.filter(fingerprint=fingerprint, created_at__gte=now - replay_window()).order_by("-id").first()


def _fill_author(item: Contribution, store: Store, author: Author, clean: _Clean, fingerprint: str, now: datetime):
    item.store = store
    item.display_name = clean.display_name
    item.anonymous = not clean.display_name
    item.language = clean.language
    item.customer_id = author.customer_id
    item.author_email = clean.email
    item.ip_hash = identity_hash(store_id=store.pk, kind="ip", value=author.ip)
    item.device_hash = identity_hash(store_id=store.pk, kind="device", value=clean.device_id)
    item.client_key = clean.client_key
    item.fingerprint = fingerprint
    item.created_at = now
    item.updated_at = now


def _judge(*, store: Store, item: Contribution, kind: str, content_type: str, author: Author, clean: _Clean,
           subject: str, terms: list[str], now: datetime) -> Judgement:
    judgement = content_judge(
        store=store, kind=kind, content_type=content_type, content_id=item.pk, text=item.text,
        title=getattr(item, "title", ""), author_name=item.display_name, customer_id=item.customer_id,
        email=clean.email, device_id=clean.device_id, ip=author.ip, language=item.language, subject=subject,
        subject_terms=terms,
    )
    item.status = judgement.status
    item.moderation = judgement.as_json()
    if not item.language and judgement.language in LANGUAGES:
        item.language = judgement.language
    item.decided_by = ""
    item.decided_at = now
    item.save(update_fields=["status", "moderation", "language", "decided_by", "decided_at"])
    return judgement


def author_language(*, store: Store, item: Contribution, preferred: str = "") -> str:
    for language in (preferred, item.language, store.language):
        if language in LANGUAGES:
            return language
    return "es"


def _outcome(store: Store, item: Contribution, content_type: str, *, language: str, replayed: bool = False,
             edited: bool = False) -> Submission:
    codes = reasons_of(item.moderation or {}, item.status)
    reasons = [Reason(code=code, message=reason_text(code, language)) for code in codes]
    with translation.override(language):
        if item.status == Status.PUBLISHED:
            message = _("Thank you! It is published.")
        elif item.status == Status.HELD:
            message = _("Thank you! A moderator will read it before it is published.")
        else:
            message = _("It was not published because it does not follow the community rules.")
        if reasons and item.status != Status.PUBLISHED:
            message = f"{message} " + " ".join(r.message for r in reasons)
    return Submission(content_type=content_type, id=item.pk, status=item.status, reasons=reasons,
                      message=message, replayed=replayed, edited=edited)


def _notify_author(store: Store, item: Contribution, content_type: str, language: str) -> None:
    """Tell a known author by e-mail, after commit, when their words are not (or no longer) public."""
    if not item.author_email or item.status == Status.PUBLISHED:
        return
    from tertulia.core.jobs import job_schedule
    from tertulia.ugc.tasks import author_notice_send

    stamp = int((item.decided_at or timezone.now()).timestamp() * 1000)
    job_schedule(task=author_notice_send, kwargs={"content_type": content_type, "content_id": item.pk,
                                                  "language": language},
                 unique_key=f"ugc-notice:{content_type}:{item.pk}:{item.status}:{stamp}", store=store)


def _product_terms(store: Store, product: Product) -> list[str]:
    terms = [product.title, product.sku, store.name]
    category = product.category
    while category is not None and len(terms) < 8:
        terms.append(category.name)
        category = category.parent
    return [t for t in terms if t]


def products_touch(*, store: Store, product_ids: Sequence[int], reviews: bool = False,
                   now: datetime | None = None) -> None:
    """Bump the version of each product's community content (and recount its reviews when they changed).

    Runs in the caller's transaction; the summary row is created on first use.
    """
    ids = sorted({pid for pid in product_ids if pid})
    if not ids:
        return
    moment = _now(now)
    empty = {str(n): 0 for n in range(1, 6)}
    ProductSummary.objects.bulk_create(
        [ProductSummary(store=store, product_id=pid, histogram=dict(empty), updated_at=moment) for pid in ids],
        ignore_conflicts=True,
    )
    summaries = ProductSummary.objects.for_store(store).filter(product_id__in=ids)
    summaries.update(version=F("version") + 1, updated_at=moment)
    if not reviews:
        return
    counts: dict[int, dict[str, int]] = {pid: dict(empty) for pid in ids}
    rows = (Review.objects.for_store(store).filter(product_id__in=ids, status=Status.PUBLISHED)
            .values_list("product_id", "rating").annotate(n=Count("id")))
    for product_id, rating, n in rows:
        counts[product_id][str(rating)] = n
    for pid, histogram in counts.items():
        total = sum(histogram.values())
        ProductSummary.objects.for_store(store).filter(product_id=pid).update(
            review_count=total, rating_sum=sum(int(r) * n for r, n in histogram.items()), histogram=histogram)


def _product_of(content_type: str, item: Contribution) -> int | None:
    if content_type in (ContentType.REVIEW, ContentType.QUESTION, ContentType.COMMENT):
        return item.product_id  # type: ignore[attr-defined]
    if content_type == ContentType.ANSWER:
        return Question.objects.filter(pk=item.question_id).values_list("product_id", flat=True).first()  # type: ignore[attr-defined]
    return None


def _bought(store: Store, customer_id: int | None, sku: str) -> Order | None:
    """The customer's most recent order holding `sku` that was not cancelled, if any."""
    if not customer_id:
        return None
    orders = (Order.objects.for_store(store).filter(customer_id=customer_id).exclude(status=OrderStatus.CANCELLED)
              .order_by("-placed_at", "-id").only("id", "items", "status", "customer_id"))
    for order in orders:
        if any(isinstance(line, dict) and line.get("sku") == sku for line in order.items or []):
            return order
    return None


@dataclass(frozen=True, slots=True)
class ReviewLinkGrant:
    order: Order
    customer_id: int


def review_link_open(*, token: str, store: Store | None = None) -> ReviewLinkGrant | None:
    """The order a review link (#3's signed token) opens, or None: forged, expired, another store, cancelled."""
    grant = review_token_read(token) if isinstance(token, str) and len(token) < 2000 else None
    if grant is None or (store is not None and grant.store_id != store.pk):
        return None
    order = (Order.objects.filter(pk=grant.order_id, store_id=grant.store_id, customer_id=grant.customer_id)
             .select_related("store").first())
    if order is None or order.status == OrderStatus.CANCELLED:
        return None
    return ReviewLinkGrant(order=order, customer_id=grant.customer_id)


def order_skus(order: Order) -> list[str]:
    seen: list[str] = []
    for line in order.items or []:
        sku = line.get("sku") if isinstance(line, dict) else None
        if isinstance(sku, str) and sku and sku not in seen:
            seen.append(sku)
    return seen


# --- reviews ---------------------------------------------------------------------------------------


def review_submit(*, store: Store, product: Product, rating, text, title="", author: Author = Author(),
                  language="", token: str = "", photos: Sequence[bytes] = (), client_key: str = "",
                  now: datetime | None = None) -> Submission:
    """Write (or, for an order item reviewed before through its link, rewrite) a review and judge it."""
    moment = _now(now)
    problems = _Problems()
    rating = problems.rating("rating", rating)
    title = problems.text("title", title, required=False, maximum=TITLE_MAX, single_line=True)
    text = problems.text("text", text, required=True, maximum=TEXT_MAX)
    clean = _author_fields(problems, author, language=language, client_key=client_key)
    grant = None
    if token:
        grant = review_link_open(token=token, store=store)
        if grant is None:
            problems.add("token", "invalid_token", _("This review link is not valid or has expired."))
        elif product.sku not in order_skus(grant.order):
            problems.add("token", "not_in_order", _("This product is not part of that order."))
            grant = None
    if len(photos) > MAX_PHOTOS:
        problems.add("photos", "too_many", _("At most %(max)d photos.") % {"max": MAX_PHOTOS})
    encoded: list[EncodedPhoto] = []
    for index, data in enumerate(photos[:MAX_PHOTOS]):
        result = photo_encode(data=data, index=index)
        if isinstance(result, ErrorDetail):
            problems.details.append(result)
        else:
            encoded.append(result)
    problems.raise_if_any()

    if grant is not None:
        author = Author(display_name=author.display_name, email=author.email, device_id=author.device_id,
                        ip=author.ip, customer_id=grant.customer_id, answer_language=author.answer_language)
    fingerprint = _fingerprint("review", product.pk, _author_key(store, author, clean), rating, title, text)
    earlier = _earlier(Review, store, clean, fingerprint, moment)
    if earlier is not None:
        reply_language = author_language(store=store, item=earlier, preferred=author.answer_language or clean.language)
        return _outcome(store, earlier, ContentType.REVIEW, language=reply_language, replayed=True)

    stored_files: list[str] = []
    try:
        with transaction.atomic():
            review = None
            order = grant.order if grant else None
            if order is not None:
                # Serialise writers of one order so "one review per item per order" holds under retries too.
                Order.objects.select_for_update().filter(pk=order.pk).first()
                review = Review.objects.for_store(store).filter(order=order, product=product).first()
            edited = review is not None
            if review is None:
                review = Review(product=product, order=order)
                _fill_author(review, store, author, clean, fingerprint, moment)
            else:
                review.display_name = clean.display_name
                review.anonymous = not clean.display_name
                review.language = clean.language
                review.author_email = clean.email or review.author_email
                review.fingerprint = fingerprint
                review.updated_at = moment
            review.rating = rating
            review.title = title
            review.text = text
            review.status = Status.PENDING
            review.verified_buyer = order is not None or _bought(store, author.customer_id, product.sku) is not None
            review.save()
            if encoded:
                old = list(ReviewPhoto.objects.filter(review=review).values_list("file", flat=True))
                ReviewPhoto.objects.filter(review=review).delete()
                for position, photo in enumerate(encoded):
                    key, name = photo_store(store_id=store.pk, photo=photo)
                    stored_files.append(name)
                    ReviewPhoto.objects.create(store=store, review=review, key=key, file=name,
                                               content_type=photo.content_type, width=photo.width,
                                               height=photo.height, size_bytes=len(photo.data),
                                               position=position, created_at=moment)
                transaction.on_commit(lambda: _files_delete(old))
            _judge(store=store, item=review, kind="review", content_type=ContentType.REVIEW, author=author,
                   clean=clean, subject=product.title, terms=_product_terms(store, product), now=moment)
            products_touch(store=store, product_ids=[product.pk], reviews=True, now=moment)
            _review_journeys(store, review, written=True, now=moment)
            reply_language = author_language(store=store, item=review, preferred=author.answer_language or clean.language)
            _notify_author(store, review, ContentType.REVIEW, reply_language)
    except Exception:
        _files_delete(stored_files)
        raise
    return _outcome(store, review, ContentType.REVIEW, language=reply_language, edited=edited)


def _review_journeys(store: Store, review: Review, *, written: bool, now: datetime) -> None:
    """A known customer's review ends their review request (the reminder is not needed) and, once it is
    published with a good rating, starts the referral request (#3 journeys decide whether it is good)."""
    if review.customer_id is None:
        return
    from tertulia.journeys.services import enrollments_exit, journeys_trigger_review

    if written:
        enrollments_exit(store=store, customer_id=review.customer_id, reason="reviewed",
                         journey_keys=["review_request"], now=now)
    if review.status == Status.PUBLISHED:
        journeys_trigger_review(store=store, customer_id=review.customer_id, review_id=review.pk,
                                rating=review.rating, at=review.created_at, now=now)


def _files_delete(names: Sequence[str]) -> None:
    for name in names:
        try:
            default_storage.delete(name)
        except OSError:
            logger.warning("could not delete a photo file", extra={"file": name})


def store_reply(*, store: Store, review_id: int, text: str, user=None, now: datetime | None = None) -> Review:
    """The store's public answer to a review; empty text removes it."""
    problems = _Problems()
    text = problems.text("text", text, required=False, maximum=TEXT_MAX)
    problems.raise_if_any()
    moment = _now(now)
    with transaction.atomic():
        review = Review.objects.for_store(store).select_for_update().filter(pk=review_id).first()
        if review is None:
            raise ApiError("not_found", _("There is no such review."), 404)
        review.reply_text = text
        review.reply_at = moment if text else None
        review.reply_by = getattr(user, "username", "") if text else ""
        review.updated_at = moment
        review.save(update_fields=["reply_text", "reply_at", "reply_by", "updated_at"])
        products_touch(store=store, product_ids=[review.product_id], now=moment)
    return review


# --- questions and answers -------------------------------------------------------------------------


def question_ask(*, store: Store, product: Product, text, author: Author = Author(), language="",
                 client_key: str = "", now: datetime | None = None) -> Submission:
    moment = _now(now)
    problems = _Problems()
    text = problems.text("text", text, required=True, maximum=TEXT_MAX)
    clean = _author_fields(problems, author, language=language, client_key=client_key)
    problems.raise_if_any()
    fingerprint = _fingerprint("question", product.pk, _author_key(store, author, clean), text)
    earlier = _earlier(Question, store, clean, fingerprint, moment)
    preferred = author.answer_language or clean.language
    if earlier is not None:
        return _outcome(store, earlier, ContentType.QUESTION, replayed=True,
                        language=author_language(store=store, item=earlier, preferred=preferred))
    with transaction.atomic():
        question = Question(product=product, text=text)
        _fill_author(question, store, author, clean, fingerprint, moment)
        question.save()
        _judge(store=store, item=question, kind="question", content_type=ContentType.QUESTION, author=author,
               clean=clean, subject=product.title, terms=_product_terms(store, product), now=moment)
        products_touch(store=store, product_ids=[product.pk], now=moment)
        language = author_language(store=store, item=question, preferred=preferred)
        _notify_author(store, question, ContentType.QUESTION, language)
        _invite_buyers_if_published(store, question)
    return _outcome(store, question, ContentType.QUESTION, language=language)


def _invite_buyers_if_published(store: Store, question: Question) -> None:
    if question.status != Status.PUBLISHED or question.buyers_invited_at is not None:
        return
    from tertulia.core.jobs import job_schedule
    from tertulia.ugc.tasks import question_buyers_invite

    job_schedule(task=question_buyers_invite, kwargs={"question_id": question.pk},
                 unique_key=f"ugc-invite:{question.pk}", store=store)


def answer_post(*, store: Store, question_id: int, text, author: Author = Author(), language="",
                token: str = "", staff_user=None, client_key: str = "", now: datetime | None = None) -> Submission:
    """An answer from staff (published at once, audited as a human decision) or from anyone (judged)."""
    moment = _now(now)
    problems = _Problems()
    text = problems.text("text", text, required=True, maximum=TEXT_MAX)
    clean = _author_fields(problems, author, language=language, client_key=client_key)
    question = (Question.objects.for_store(store).filter(pk=question_id, status=Status.PUBLISHED)
                .select_related("product", "product__category").first())
    if question is None:
        raise ApiError("not_found", _("There is no such question."), 404)
    grant = None
    if token:
        grant = review_link_open(token=token, store=store)
        if grant is None:
            problems.add("token", "invalid_token", _("This review link is not valid or has expired."))
    problems.raise_if_any()
    customer_id = grant.customer_id if grant else author.customer_id
    author = Author(display_name=author.display_name, email=author.email, device_id=author.device_id,
                    ip=author.ip, customer_id=customer_id, answer_language=author.answer_language)
    fingerprint = _fingerprint("answer", question.pk, _author_key(store, author, clean), text)
    preferred = author.answer_language or clean.language
    earlier = _earlier(Answer, store, clean, fingerprint, moment)
    if earlier is not None:
        return _outcome(store, earlier, ContentType.ANSWER, replayed=True,
                        language=author_language(store=store, item=earlier, preferred=preferred))
    product = question.product
    with transaction.atomic():
        answer = Answer(question=question, text=text, by_staff=staff_user is not None, staff_user=staff_user)
        _fill_author(answer, store, author, clean, fingerprint, moment)
        if staff_user is not None and not answer.display_name:
            answer.display_name = store.name
            answer.anonymous = False
        answer.verified_buyer = _bought(store, customer_id, product.sku) is not None
        answer.save()
        if staff_user is not None:
            answer.status = Status.PUBLISHED
            answer.moderation = {"action": "publish", "results": [], "policy_version": 0, "language": answer.language}
            answer.decided_by = getattr(staff_user, "username", "")
            answer.decided_at = moment
            answer.save(update_fields=["status", "moderation", "decided_by", "decided_at"])
            decision_human(store=store, content_type=ContentType.ANSWER, content_id=answer.pk, action="publish",
                           previous=answer.moderation, user=staff_user, note="staff answer")
        else:
            _judge(store=store, item=answer, kind="answer", content_type=ContentType.ANSWER, author=author,
                   clean=clean, subject=product.title, terms=_product_terms(store, product), now=moment)
        products_touch(store=store, product_ids=[product.pk], now=moment)
        language = author_language(store=store, item=answer, preferred=preferred)
        _notify_author(store, answer, ContentType.ANSWER, language)
    return _outcome(store, answer, ContentType.ANSWER, language=language)


def question_pin(*, store: Store, question_id: int, pinned: bool) -> None:
    """Put a question (with its best answer) into the product's FAQ whatever the votes say, or take it out."""
    with transaction.atomic():
        question = Question.objects.for_store(store).filter(pk=question_id).first()
        if question is None:
            raise ApiError("not_found", _("There is no such question."), 404)
        Question.objects.filter(pk=question.pk).update(pinned=pinned, updated_at=timezone.now())
        products_touch(store=store, product_ids=[question.product_id])


# --- comments, testimonials, forum -----------------------------------------------------------------


def comment_post(*, store: Store, product: Product, text, author: Author = Author(), language="",
                 parent_id: int | None = None, client_key: str = "", now: datetime | None = None) -> Submission:
    moment = _now(now)
    problems = _Problems()
    text = problems.text("text", text, required=True, maximum=TEXT_MAX)
    clean = _author_fields(problems, author, language=language, client_key=client_key)
    parent = None
    if parent_id is not None:
        parent = Comment.objects.for_store(store).filter(pk=parent_id, product=product, status=Status.PUBLISHED).first()
        if parent is None:
            problems.add("parent_id", "not_found", _("There is no such comment on this product."))
    problems.raise_if_any()
    # Threads stay readable: a reply below the deepest level joins its parent's conversation.
    while parent is not None and parent.depth >= COMMENT_MAX_DEPTH:
        parent = parent.parent
    fingerprint = _fingerprint("comment", product.pk, parent.pk if parent else "", _author_key(store, author, clean), text)
    preferred = author.answer_language or clean.language
    earlier = _earlier(Comment, store, clean, fingerprint, moment)
    if earlier is not None:
        return _outcome(store, earlier, ContentType.COMMENT, replayed=True,
                        language=author_language(store=store, item=earlier, preferred=preferred))
    with transaction.atomic():
        comment = Comment(product=product, parent=parent, depth=parent.depth + 1 if parent else 0, text=text)
        _fill_author(comment, store, author, clean, fingerprint, moment)
        comment.save()
        _judge(store=store, item=comment, kind="comment", content_type=ContentType.COMMENT, author=author,
               clean=clean, subject=product.title, terms=_product_terms(store, product), now=moment)
        products_touch(store=store, product_ids=[product.pk], now=moment)
        language = author_language(store=store, item=comment, preferred=preferred)
        _notify_author(store, comment, ContentType.COMMENT, language)
    return _outcome(store, comment, ContentType.COMMENT, language=language)


def testimonial_submit(*, store: Store, text, rating=None, author: Author = Author(), language="",
                       client_key: str = "", now: datetime | None = None) -> Submission:
    moment = _now(now)
    problems = _Problems()
    text = problems.text("text", text, required=True, maximum=TEXT_MAX)
    rating = problems.rating("rating", rating, required=False)
    clean = _author_fields(problems, author, language=language, client_key=client_key)
    problems.raise_if_any()
    fingerprint = _fingerprint("testimonial", _author_key(store, author, clean), rating, text)
    preferred = author.answer_language or clean.language
    earlier = _earlier(Testimonial, store, clean, fingerprint, moment)
    if earlier is not None:
        return _outcome(store, earlier, ContentType.TESTIMONIAL, replayed=True,
                        language=author_language(store=store, item=earlier, preferred=preferred))
    with transaction.atomic():
        testimonial = Testimonial(text=text, rating=rating)
        _fill_author(testimonial, store, author, clean, fingerprint, moment)
        testimonial.save()
        _judge(store=store, item=testimonial, kind="testimonial", content_type=ContentType.TESTIMONIAL,
               author=author, clean=clean, subject=store.name, terms=[store.name], now=moment)
        language = author_language(store=store, item=testimonial, preferred=preferred)
        _notify_author(store, testimonial, ContentType.TESTIMONIAL, language)
    return _outcome(store, testimonial, ContentType.TESTIMONIAL, language=language)


def forum_post(*, store: Store, text, author: Author = Author(), language="", category: Category | None = None,
               title="", thread_id: int | None = None, reply_to_id: int | None = None, client_key: str = "",
               now: datetime | None = None) -> Submission:
    """Open a thread in a category's forum (category + title), or reply in a thread (thread_id)."""
    moment = _now(now)
    problems = _Problems()
    text = problems.text("text", text, required=True, maximum=TEXT_MAX)
    clean = _author_fields(problems, author, language=language, client_key=client_key)
    thread = reply_to = None
    if thread_id is None:
        title = problems.text("title", title, required=True, maximum=THREAD_TITLE_MAX, single_line=True)
        if category is None:
            problems.add("category", "required", _("Choose the forum of a category."))
    else:
        thread = (ForumThread.objects.for_store(store).filter(pk=thread_id, status=Status.PUBLISHED)
                  .select_related("category").first())
        if thread is None:
            raise ApiError("not_found", _("There is no such thread."), 404)
        category = thread.category
        if reply_to_id is not None:
            reply_to = ForumPost.objects.for_store(store).filter(pk=reply_to_id, thread=thread).first()
            if reply_to is None:
                problems.add("reply_to_id", "not_found", _("There is no such post in this thread."))
    problems.raise_if_any()
    assert category is not None
    content_type = ContentType.FORUM_THREAD if thread is None else ContentType.FORUM_POST
    model: type[Contribution] = ForumThread if thread is None else ForumPost
    fingerprint = _fingerprint(content_type, category.pk, thread.pk if thread else "",
                               _author_key(store, author, clean), title, text)
    preferred = author.answer_language or clean.language
    earlier = _earlier(model, store, clean, fingerprint, moment)
    if earlier is not None:
        return _outcome(store, earlier, content_type, replayed=True,
                        language=author_language(store=store, item=earlier, preferred=preferred))
    terms = [category.name, store.name] + ([thread.title] if thread else [])
    with transaction.atomic():
        if thread is None:
            item: Contribution = ForumThread(category=category, title=title, text=text, last_post_at=moment)
        else:
            item = ForumPost(thread=thread, reply_to=reply_to, text=text)
        _fill_author(item, store, author, clean, fingerprint, moment)
        item.save()
        _judge(store=store, item=item, kind="forum_post", content_type=content_type, author=author, clean=clean,
               subject=category.name, terms=terms, now=moment)
        if thread is not None and item.status == Status.PUBLISHED:
            ForumThread.objects.filter(pk=thread.pk).update(post_count=F("post_count") + 1, last_post_at=moment)
        language = author_language(store=store, item=item, preferred=preferred)
        _notify_author(store, item, content_type, language)
    return _outcome(store, item, content_type, language=language)


# --- votes and flags -------------------------------------------------------------------------------


def _published_target(store: Store, content_type: str, object_id: int) -> Contribution:
    model = MODELS.get(content_type)
    item = model.objects.for_store(store).filter(pk=object_id, status=Status.PUBLISHED).first() if model else None
    if item is None:
        raise ApiError("not_found", _("There is nothing published with that id."), 404)
    return item


def vote_cast(*, store: Store, content_type: str, object_id: int, device_id: str = "", ip: str = "",
              customer_id: int | None = None, now: datetime | None = None) -> VoteResult:
    """One helpful vote per person (customer) or device; a repeated vote changes nothing."""
    problems = _Problems()
    device = problems.device_id(device_id)
    if not device and not customer_id:
        problems.add("device_id", "required", _("This field is required."))
    if content_type not in VOTABLE:
        problems.add("content_type", "not_votable", _("Only reviews and answers take helpful votes."))
    problems.raise_if_any()
    item = _published_target(store, content_type, object_id)
    voter = (identity_hash(store_id=store.pk, kind="customer", value=str(customer_id)) if customer_id
             else identity_hash(store_id=store.pk, kind="device", value=device))
    model = MODELS[content_type]
    with transaction.atomic():
        try:
            with transaction.atomic():
                Vote.objects.create(store=store, content_type=content_type, object_id=item.pk, voter_hash=voter,
                                    ip_hash=identity_hash(store_id=store.pk, kind="ip", value=ip),
                                    created_at=_now(now))
        except IntegrityError:
            return VoteResult(counted=False, helpful=model.objects.get(pk=item.pk).helpful_count)
        model.objects.filter(pk=item.pk).update(helpful_count=F("helpful_count") + 1)
        products_touch(store=store, product_ids=[_product_of(content_type, item)], now=now)
    return VoteResult(counted=True, helpful=model.objects.get(pk=item.pk).helpful_count)


def flag_raise(*, store: Store, content_type: str, object_id: int, reason, note="", device_id: str = "",
               ip: str = "", now: datetime | None = None) -> FlagResult:
    """A reader's report. At TERTULIA_UGC_FLAGS_TO_HOLD distinct reporters a published item goes back to a person."""
    problems = _Problems()
    if reason not in FlagReason.values:
        problems.add("reason", "invalid_choice", _("Choose one of: %(choices)s.") % {"choices": ", ".join(FlagReason.values)})
    note = problems.text("note", note, required=False, maximum=NOTE_MAX)
    device = problems.device_id(device_id)
    if content_type not in MODELS:
        problems.add("content_type", "invalid_choice", _("Unknown kind of content."))
    problems.raise_if_any()
    item = _published_target(store, content_type, object_id)
    reporter = (identity_hash(store_id=store.pk, kind="device", value=device) if device
                else identity_hash(store_id=store.pk, kind="ip", value=ip or "unknown"))
    model = MODELS[content_type]
    moment = _now(now)
    with transaction.atomic():
        try:
            with transaction.atomic():
                Flag.objects.create(store=store, content_type=content_type, object_id=item.pk, reporter_hash=reporter,
                                    ip_hash=identity_hash(store_id=store.pk, kind="ip", value=ip), reason=reason,
                                    note=note, created_at=moment)
        except IntegrityError:
            return FlagResult(counted=False, held=False)
        model.objects.filter(pk=item.pk).update(flag_count=F("flag_count") + 1)
        item = model.objects.select_for_update().get(pk=item.pk)
        held = False
        if item.flag_count >= flags_to_hold() and item.status == Status.PUBLISHED:
            item.status = Status.HELD
            item.decided_by = ""
            item.decided_at = moment
            item.updated_at = moment
            item.save(update_fields=["status", "decided_by", "decided_at", "updated_at"])
            decision_human(store=store, content_type=content_type, content_id=item.pk, action="hold",
                           previous=item.moderation or {}, user=None,
                           note=f"flagged by {item.flag_count} readers")
            held = True
        products_touch(store=store, product_ids=[_product_of(content_type, item)],
                       reviews=held and content_type == ContentType.REVIEW, now=moment)
    return FlagResult(counted=True, held=held)


# --- moderators' decisions (interface 2) -----------------------------------------------------------


def content_decide(*, store: Store, content_type: str, ids: list[int], action: str, user,
                   note: str = "", now: datetime | None = None) -> int:
    """Approve or reject items by hand: audited, status changed, caches invalidated, authors told.

    Returns how many items changed status. Ids of another store or unknown ids are skipped.
    """
    if action not in ("approve", "reject"):
        raise ApiError("invalid_request", _("The action must be approve or reject."), 422,
                       [ErrorDetail(field="action", code="invalid_choice", message="approve | reject")])
    model = MODELS.get(content_type)
    if model is None:
        raise ApiError("invalid_request", _("Unknown kind of content."), 422,
                       [ErrorDetail(field="content_type", code="invalid_choice", message=", ".join(MODELS))])
    status = Status.PUBLISHED if action == "approve" else Status.REJECTED
    moderation_action = "publish" if action == "approve" else "reject"
    moment = _now(now)
    changed = 0
    with transaction.atomic():
        items = list(model.objects.for_store(store).select_for_update().filter(pk__in=list(ids)).order_by("pk"))
        products: list[int | None] = []
        for item in items:
            if item.status == status:
                continue
            was_published = item.status == Status.PUBLISHED
            decision_human(store=store, content_type=content_type, content_id=item.pk, action=moderation_action,
                           previous=item.moderation or {}, user=user, note=note)
            item.status = status
            item.decided_by = getattr(user, "username", "") or "staff"
            item.decided_at = moment
            item.updated_at = moment
            item.save(update_fields=["status", "decided_by", "decided_at", "updated_at"])
            changed += 1
            products.append(_product_of(content_type, item))
            if isinstance(item, ForumPost) and (status == Status.PUBLISHED) != was_published:
                ForumThread.objects.filter(pk=item.thread_id).update(
                    post_count=F("post_count") + (1 if status == Status.PUBLISHED else -1))
            if isinstance(item, Question):
                _invite_buyers_if_published(store, item)
            if isinstance(item, Review):
                _review_journeys(store, item, written=False, now=moment)
            if item.author_email:
                from tertulia.core.jobs import job_schedule
                from tertulia.ugc.tasks import author_notice_send

                job_schedule(task=author_notice_send,
                             kwargs={"content_type": content_type, "content_id": item.pk,
                                     "language": author_language(store=store, item=item)},
                             unique_key=f"ugc-notice:{content_type}:{item.pk}:{status}:{int(moment.timestamp() * 1000)}",
                             store=store)
        products_touch(store=store, product_ids=[p for p in products if p],
                       reviews=content_type == ContentType.REVIEW, now=moment)
    return changed


# --- store origins (CORS) --------------------------------------------------------------------------


def store_origin_add(*, store: Store, origin: str) -> StoreOrigin:
    origin = origin.strip().rstrip("/").lower()
    if not _ORIGIN.match(origin):
        raise ApiError("invalid_request", _("An origin is scheme://host[:port], e.g. https://shop.example."), 422,
                       [ErrorDetail(field="origin", code="invalid_origin", message=origin[:100])])
    row, _created = StoreOrigin.objects.get_or_create(store=store, origin=origin)
    from tertulia.ugc.cors import origins_forget

    transaction.on_commit(lambda: origins_forget(store.slug))
    return row


def store_origin_remove(*, store: Store, origin: str) -> bool:
    deleted, _ = StoreOrigin.objects.for_store(store).filter(origin=origin.strip().rstrip("/").lower()).delete()
    from tertulia.ugc.cors import origins_forget

    transaction.on_commit(lambda: origins_forget(store.slug))
    return bool(deleted)


# --- privacy ---------------------------------------------------------------------------------------


def author_data_erase(*, store: Store, customer_id: int | None = None, email: str = "") -> int:
    """Anonymise everything a person wrote (by customer id and/or the e-mail they gave): name, e-mail, hashes
    and the link to the customer go; the text stays as anonymous content. Returns how many items changed.

    For customers.privacy.customer_erase to call (GDPR / LOPDGDD erasure)."""
    from django.db.models import Q

    email = (email or "").strip().lower()
    if not customer_id and not email:
        return 0
    match = Q(pk__in=[])
    if customer_id:
        match |= Q(customer_id=customer_id)
    if email:
        match |= Q(author_email=email)
    changed = 0
    products: list[int | None] = []
    with transaction.atomic():
        for content_type, model in MODELS.items():
            rows = model.objects.for_store(store).filter(match)
            if content_type in (ContentType.REVIEW, ContentType.QUESTION, ContentType.COMMENT):
                products += list(rows.values_list("product_id", flat=True))
            elif content_type == ContentType.ANSWER:
                products += list(rows.values_list("question__product_id", flat=True))
            changed += rows.update(display_name="", anonymous=True, author_email="", customer=None, ip_hash="",
                                   device_hash="", updated_at=timezone.now())
        products_touch(store=store, product_ids=[p for p in products if p])
    return changed
