"""The public community API under /api/v1/public/ (interface 3 of docs/ugc.md): no login, CORS for the
store's origins, submissions rate-limited, every error in the core error shape.

Reads of a product's content are answered from a server cache keyed by the product's summary
version, with an ETag from the same key: a new review or a moderator's decision bumps the version in
the database, so the next request anywhere misses the cache and revalidating clients get the change.
"""

import hashlib
import logging
from collections.abc import Callable
from typing import Any, Literal

import orjson
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse
from django.http.multipartparser import MultiPartParserError
from django.urls import URLPattern
from django.utils import translation
from django.utils.translation import gettext as _
from ninja import NinjaAPI, Query, Router, Schema
from pydantic import Field

from tertulia.catalog.models import Category, Product
from tertulia.core.api import OrjsonRenderer, error_handlers_install, json_body
from tertulia.core.errors import ApiError, ErrorDetail, error_response
from tertulia.core.models import Store
from tertulia.ugc import selectors, services
from tertulia.ugc.cors import cors
from tertulia.ugc.identity import identity_hash
from tertulia.ugc.limits import RateLimited, rate_limit_check
from tertulia.ugc.models import ContentType
from tertulia.ugc.photos import MAX_BYTES, MAX_PHOTOS
from tertulia.ugc.selectors import ProductState

logger = logging.getLogger(__name__)

CACHE_SECONDS = 3600
CACHE_CONTROL = "public, no-cache"  # keep it, but ask us (ETag) every time: a decision shows at once

public_api = NinjaAPI(
    title="Tertulia public community API",
    version="1",
    description=(
        "Reviews, questions and answers, FAQ, comments, testimonials and forum of a store, read without "
        "login and written by shoppers (moderated). Errors: "
        '{"error": {"code", "message", "details": [{"field", "code", "message"}]}}. See docs/ugc.md.'
    ),
    auth=None,
    renderer=OrjsonRenderer(),
    urls_namespace="public_api",
    openapi_url="/openapi.json",
    docs_url="/docs",
)
router = Router(tags=["community"])


# --- errors ----------------------------------------------------------------------------------------


@public_api.exception_handler(RateLimited)
def _rate_limited(request, exc: RateLimited) -> HttpResponse:
    response = error_response(exc)
    response["Retry-After"] = str(exc.retry_after)
    return response


error_handlers_install(public_api, name="public API")


# --- schemas (documentation of the bodies; validation is the services') ---------------------------


class AuthorFields(Schema):
    display_name: str | None = Field(None, max_length=80, description="Shown with the text; leave out to post anonymously.")
    email: str | None = Field(None, description="Never shown; used to tell you about moderation decisions.")
    device_id: str | None = Field(None, description="A random id the widget keeps in localStorage (8-128 chars).")
    language: Literal["es", "en"] | None = Field(None, description="Language of the text and of our answer.")


class ReviewIn(AuthorFields):
    rating: int = Field(..., ge=1, le=5)
    title: str | None = Field(None, max_length=200)
    text: str = Field(..., max_length=5000)
    token: str | None = Field(None, description="The signed review link of a delivered order: verified buyer.")


class QuestionIn(AuthorFields):
    text: str = Field(..., max_length=5000)


class AnswerIn(QuestionIn):
    token: str | None = Field(None, description="A review link of an order with this product: verified buyer.")


class CommentIn(QuestionIn):
    parent_id: int | None = Field(None, description="The comment this one replies to.")


class TestimonialIn(QuestionIn):
    rating: int | None = Field(None, ge=1, le=5)


class ThreadIn(QuestionIn):
    title: str = Field(..., max_length=150)


class PostIn(QuestionIn):
    reply_to_id: int | None = None


class VoteIn(Schema):
    device_id: str = Field(..., description="The widget's random device id: one vote per device.")


class FlagIn(Schema):
    reason: Literal["spam", "offensive", "off_topic", "personal_data", "fake", "other"]
    note: str | None = Field(None, max_length=500)
    device_id: str | None = None


class ReasonOut(Schema):
    code: str
    message: str


class SubmissionOut(Schema):
    id: int
    status: Literal["published", "held", "rejected"]
    reasons: list[ReasonOut]
    message: str


def _body_doc(schema: type[Schema], multipart: bool = False) -> dict:
    content: dict[str, Any] = {"application/json": {"schema": schema.model_json_schema()}}
    if multipart:
        form = schema.model_json_schema()
        form["properties"]["photos"] = {"type": "array", "maxItems": MAX_PHOTOS,
                                        "items": {"type": "string", "format": "binary"}}
        content["multipart/form-data"] = {"schema": form}
    return {"requestBody": {"required": True, "content": content}}


# --- helpers ---------------------------------------------------------------------------------------


def _client_ip(request: HttpRequest) -> str:
    # REMOTE_ADDR only (see dashboard.views.client_ip): a forgeable header would make limits meaningless.
    return request.META.get("REMOTE_ADDR", "")


def _base_url(request: HttpRequest) -> str:
    return f"{request.scheme}://{request.get_host()}"


def _state(store: str, sku: str) -> ProductState:
    state = selectors.product_state(store_slug=store, sku=sku)
    if state is None:
        raise ApiError("not_found", "There is no such product in this store.", 404)
    return state


def _store(slug: str) -> Store:
    store = Store.objects.filter(slug=slug).first()
    if store is None:
        raise ApiError("not_found", "There is no such store.", 404)
    return store


def _etag_matches(request: HttpRequest, etag: str) -> bool:
    header = request.META.get("HTTP_IF_NONE_MATCH", "")
    if not header:
        return False
    if header.strip() == "*":
        return True
    return any(tag.strip().removeprefix("W/") == etag for tag in header.split(","))


def _json_response(body: bytes, etag: str, status: int = 200) -> HttpResponse:
    response = HttpResponse(body, status=status, content_type="application/json")
    response["ETag"] = etag
    response["Cache-Control"] = CACHE_CONTROL
    return response


def _not_modified(etag: str) -> HttpResponse:
    response = HttpResponse(status=304)
    response["ETag"] = etag
    response["Cache-Control"] = CACHE_CONTROL
    return response


def versioned_response(request: HttpRequest, state: ProductState, kind: str, params: tuple,
                       build: Callable[[], dict]) -> HttpResponse:
    """Answer from the server cache, keyed (like the ETag) by everything the body depends on."""
    key = "\x1f".join(map(str, (kind, state.store_id, state.product_id, state.version, state.updated_at,
                                _base_url(request), *params)))
    digest = hashlib.blake2b(key.encode(), digest_size=16).hexdigest()
    etag = f'"{digest}"'
    if _etag_matches(request, etag):
        return _not_modified(etag)
    cache_key = f"ugc:page:{digest}"
    body = cache.get(cache_key)
    if body is None:
        body = orjson.dumps(build())
        cache.set(cache_key, body, CACHE_SECONDS)
    return _json_response(body, etag)


def hashed_response(request: HttpRequest, payload: dict) -> HttpResponse:
    """Uncached reads (store-wide lists): still an ETag, from the body itself."""
    body = orjson.dumps(payload)
    etag = '"' + hashlib.blake2b(body, digest_size=16).hexdigest() + '"'
    if _etag_matches(request, etag):
        return _not_modified(etag)
    return _json_response(body, etag)


class _Body:
    """A submission's fields (JSON object, or multipart form) and photos, with unknown fields refused."""

    def __init__(self, request: HttpRequest, allowed: set[str], *, photos: bool = False):
        self.photos: list[bytes] = []
        if (request.content_type or "") == "multipart/form-data":
            if not photos:
                raise ApiError("unsupported_media_type", "Send the body as application/json.", 415)
            try:
                self.data: dict[str, Any] = {k: request.POST.get(k) for k in request.POST}
                files = request.FILES.getlist("photos")
            except MultiPartParserError as exc:
                raise ApiError("invalid_multipart", "The multipart body could not be read.", 400,
                               [ErrorDetail(field="", code="invalid_multipart", message=str(exc)[:200])]) from None
            extra_files = [name for name in request.FILES if name != "photos"]
            problems = [ErrorDetail(field=name, code="unknown_field", message="Not a field of this endpoint.")
                        for name in extra_files]
            if len(files) > MAX_PHOTOS:
                problems.append(ErrorDetail(field="photos", code="too_many", message=f"At most {MAX_PHOTOS} photos."))
            for index, upload in enumerate(files[:MAX_PHOTOS]):
                if upload.size > MAX_BYTES:
                    problems.append(ErrorDetail(field=f"photos[{index}]", code="too_large",
                                                message="Photos may be at most 5 MB."))
                else:
                    self.photos.append(upload.read())
            if problems:
                raise ApiError("invalid_request", "Some fields need fixing; nothing was saved.", 422, problems)
        else:
            data = json_body(request)
            if not isinstance(data, dict):
                raise ApiError("invalid_request", "The body must be a JSON object.", 422,
                               [ErrorDetail(field="", code="not_an_object", message="Send a JSON object.")])
            self.data = data
        unknown = sorted(set(self.data) - allowed)
        if unknown:
            raise ApiError("invalid_request", "Some fields need fixing; nothing was saved.", 422,
                           [ErrorDetail(field=name, code="unknown_field", message="Not a field of this endpoint.")
                            for name in unknown])

    def get(self, name: str, default: Any = None) -> Any:
        value = self.data.get(name, default)
        return default if value is None else value

    def optional_int(self, name: str) -> int | None:
        value = self.data.get(name)
        if value is None or value == "":
            return None
        if isinstance(value, str) and value.strip().isdigit():
            return int(value)
        if isinstance(value, int) and not isinstance(value, bool) and 0 < value < 2**63:
            return value
        raise ApiError("invalid_request", "Some fields need fixing; nothing was saved.", 422,
                       [ErrorDetail(field=name, code="invalid_type", message="Must be an id (a whole number).")])


_AUTHOR = {"display_name", "email", "device_id", "language"}


def _author(request: HttpRequest, body: _Body) -> services.Author:
    language = body.get("language", "")
    answer_language = language if language in ("es", "en") else translation.get_language_from_request(request)
    return services.Author(
        display_name=body.get("display_name", ""), email=body.get("email", ""), device_id=body.get("device_id", ""),
        ip=_client_ip(request), answer_language=(answer_language or "")[:2],
    )


def _limit(request: HttpRequest, store_id: int, kind: str, body: _Body | None = None) -> None:
    identity = ""
    if body is not None:
        raw = body.get("device_id", "") or body.get("email", "")
        if isinstance(raw, str) and raw:
            identity = identity_hash(store_id=store_id, kind="limit", value=raw[:254].lower())
    rate_limit_check(store_id=store_id, kind=kind,
                     ip_hash=identity_hash(store_id=store_id, kind="ip", value=_client_ip(request) or "unknown"),
                     identity_hash=identity)


def _submitted(result: services.Submission) -> HttpResponse:
    body = {"id": result.id, "status": result.status,
            "reasons": [{"code": r.code, "message": r.message} for r in result.reasons], "message": result.message}
    response = HttpResponse(orjson.dumps(body), status=200 if result.edited else 201, content_type="application/json")
    if result.replayed:
        response["Idempotent-Replayed"] = "true"
    return response


def _product(state: ProductState) -> Product:
    return Product.objects.select_related("category", "category__parent").get(pk=state.product_id)


def _idempotency_key(request: HttpRequest) -> str:
    return request.META.get("HTTP_IDEMPOTENCY_KEY", "")


# --- product reads ---------------------------------------------------------------------------------

ReviewSort = Literal["newest", "oldest", "highest", "lowest", "helpful"]
CursorParam = Query(None, max_length=300)
LimitParam = Query(selectors.DEFAULT_LIMIT, ge=1, le=selectors.MAX_LIMIT)


@router.get("/{store}/products/{sku}/reviews", summary="Published reviews of a product, with the aggregate")
def reviews_list(request, store: str, sku: str, sort: ReviewSort = "newest", rating: int | None = Query(None, ge=1, le=5),
                 cursor: str | None = CursorParam, limit: int = LimitParam):
    state = _state(store, sku)
    return versioned_response(
        request, state, "reviews", (sort, rating, cursor, limit),
        lambda: selectors.reviews_page(state=state, sort=sort, rating=rating, cursor=cursor, limit=limit,
                                       base_url=_base_url(request)))


@router.get("/{store}/products/{sku}/questions", summary="Published questions of a product with their answers")
def questions_list(request, store: str, sku: str, sort: Literal["newest", "oldest"] = "newest",
                   cursor: str | None = CursorParam, limit: int = LimitParam):
    state = _state(store, sku)
    return versioned_response(request, state, "questions", (sort, cursor, limit),
                              lambda: selectors.questions_page(state=state, sort=sort, cursor=cursor, limit=limit))


@router.get("/{store}/products/{sku}/faq", summary="The product's community FAQ: best answers")
def faq_list(request, store: str, sku: str):
    state = _state(store, sku)
    return versioned_response(request, state, "faq", (),
                              lambda: {"items": selectors.faq_items(store_id=state.store_id, product_id=state.product_id)})


@router.get("/{store}/products/{sku}/comments", summary="Threaded comments on a product")
def comments_list(request, store: str, sku: str, cursor: str | None = CursorParam, limit: int = LimitParam):
    state = _state(store, sku)
    return versioned_response(request, state, "comments", (cursor, limit),
                              lambda: selectors.comments_page(state=state, cursor=cursor, limit=limit))


# --- product writes --------------------------------------------------------------------------------


@router.post("/{store}/products/{sku}/reviews", response={201: SubmissionOut}, summary="Write a review",
             openapi_extra=_body_doc(ReviewIn, multipart=True))
def review_create(request, store: str, sku: str):
    state = _state(store, sku)
    store_row = _store(store)
    body = _Body(request, _AUTHOR | {"rating", "title", "text", "token"}, photos=True)
    _limit(request, state.store_id, "submit", body)
    result = services.review_submit(
        store=store_row, product=_product(state), rating=body.get("rating"), title=body.get("title", ""),
        text=body.get("text", ""), author=_author(request, body), language=body.get("language", ""),
        token=body.get("token", ""), photos=body.photos, client_key=_idempotency_key(request))
    return _submitted(result)


@router.post("/{store}/products/{sku}/questions", response={201: SubmissionOut}, summary="Ask a question",
             openapi_extra=_body_doc(QuestionIn))
def question_create(request, store: str, sku: str):
    state = _state(store, sku)
    body = _Body(request, _AUTHOR | {"text"})
    _limit(request, state.store_id, "submit", body)
    result = services.question_ask(store=_store(store), product=_product(state), text=body.get("text", ""),
                                   author=_author(request, body), language=body.get("language", ""),
                                   client_key=_idempotency_key(request))
    return _submitted(result)


@router.post("/{store}/questions/{question_id}/answers", response={201: SubmissionOut}, summary="Answer a question",
             openapi_extra=_body_doc(AnswerIn))
def answer_create(request, store: str, question_id: int):
    store_row = _store(store)
    body = _Body(request, _AUTHOR | {"text", "token"})
    _limit(request, store_row.pk, "submit", body)
    result = services.answer_post(store=store_row, question_id=question_id, text=body.get("text", ""),
                                  author=_author(request, body), language=body.get("language", ""),
                                  token=body.get("token", ""), client_key=_idempotency_key(request))
    return _submitted(result)


@router.post("/{store}/products/{sku}/comments", response={201: SubmissionOut}, summary="Comment on a product",
             openapi_extra=_body_doc(CommentIn))
def comment_create(request, store: str, sku: str):
    state = _state(store, sku)
    body = _Body(request, _AUTHOR | {"text", "parent_id"})
    _limit(request, state.store_id, "submit", body)
    result = services.comment_post(store=_store(store), product=_product(state), text=body.get("text", ""),
                                   author=_author(request, body), language=body.get("language", ""),
                                   parent_id=body.optional_int("parent_id"), client_key=_idempotency_key(request))
    return _submitted(result)


# --- votes and flags -------------------------------------------------------------------------------

_PLURALS = {
    "reviews": ContentType.REVIEW, "questions": ContentType.QUESTION, "answers": ContentType.ANSWER,
    "comments": ContentType.COMMENT, "testimonials": ContentType.TESTIMONIAL, "threads": ContentType.FORUM_THREAD,
    "posts": ContentType.FORUM_POST,
}
Votable = Literal["reviews", "answers"]
Flaggable = Literal["reviews", "questions", "answers", "comments", "testimonials", "threads", "posts"]


@router.post("/{store}/{kind}/{item_id}/votes", summary="Mark a review or an answer helpful (one per device)",
             openapi_extra=_body_doc(VoteIn))
def vote_create(request, store: str, kind: Votable, item_id: int):
    store_row = _store(store)
    body = _Body(request, {"device_id"})
    _limit(request, store_row.pk, "react", body)
    result = services.vote_cast(store=store_row, content_type=_PLURALS[kind], object_id=item_id,
                                device_id=body.get("device_id", ""), ip=_client_ip(request))
    return HttpResponse(orjson.dumps({"helpful": result.helpful, "counted": result.counted}),
                        status=201 if result.counted else 200, content_type="application/json")


@router.post("/{store}/{kind}/{item_id}/flags", summary="Report content to the moderators",
             openapi_extra=_body_doc(FlagIn))
def flag_create(request, store: str, kind: Flaggable, item_id: int):
    store_row = _store(store)
    body = _Body(request, {"reason", "note", "device_id"})
    _limit(request, store_row.pk, "react", body)
    with translation.override(translation.get_language_from_request(request)):
        result = services.flag_raise(store=store_row, content_type=_PLURALS[kind], object_id=item_id,
                                     reason=body.get("reason"), note=body.get("note", ""),
                                     device_id=body.get("device_id", ""), ip=_client_ip(request))
        message = _("Thank you; the moderators will have a look.")
    return HttpResponse(orjson.dumps({"counted": result.counted, "message": message}),
                        status=201 if result.counted else 200, content_type="application/json")


# --- store-wide: testimonials and the forum --------------------------------------------------------


@router.get("/{store}/testimonials", summary="Published testimonials about the store")
def testimonials_list(request, store: str, cursor: str | None = CursorParam, limit: int = LimitParam):
    return hashed_response(request, selectors.testimonials_page(store=_store(store), cursor=cursor, limit=limit))


@router.post("/{store}/testimonials", response={201: SubmissionOut}, summary="Say something about the store",
             openapi_extra=_body_doc(TestimonialIn))
def testimonial_create(request, store: str):
    store_row = _store(store)
    body = _Body(request, _AUTHOR | {"text", "rating"})
    _limit(request, store_row.pk, "submit", body)
    result = services.testimonial_submit(store=store_row, text=body.get("text", ""), rating=body.get("rating"),
                                         author=_author(request, body), language=body.get("language", ""),
                                         client_key=_idempotency_key(request))
    return _submitted(result)


def _category(store: Store, category: str) -> Category:
    row = Category.objects.for_store(store).filter(external_id=category).first()
    if row is None:
        raise ApiError("not_found", "There is no such category in this store.", 404)
    return row


@router.get("/{store}/forum/categories/{category}/threads", summary="Threads of a category's forum, latest activity first")
def threads_list(request, store: str, category: str, cursor: str | None = CursorParam, limit: int = LimitParam):
    store_row = _store(store)
    return hashed_response(request, selectors.forum_threads_page(
        store=store_row, category=_category(store_row, category), cursor=cursor, limit=limit))


@router.post("/{store}/forum/categories/{category}/threads", response={201: SubmissionOut},
             summary="Open a thread in a category's forum", openapi_extra=_body_doc(ThreadIn))
def thread_create(request, store: str, category: str):
    store_row = _store(store)
    category_row = _category(store_row, category)
    body = _Body(request, _AUTHOR | {"text", "title"})
    _limit(request, store_row.pk, "submit", body)
    result = services.forum_post(store=store_row, category=category_row, title=body.get("title", ""),
                                 text=body.get("text", ""), author=_author(request, body),
                                 language=body.get("language", ""), client_key=_idempotency_key(request))
    return _submitted(result)


@router.get("/{store}/forum/threads/{thread_id}", summary="A thread and its replies, oldest first")
def thread_detail(request, store: str, thread_id: int, cursor: str | None = CursorParam, limit: int = LimitParam):
    page = selectors.forum_thread_page(store=_store(store), thread_id=thread_id, cursor=cursor, limit=limit)
    if page is None:
        raise ApiError("not_found", "There is no such thread.", 404)
    return hashed_response(request, page)


@router.post("/{store}/forum/threads/{thread_id}/posts", response={201: SubmissionOut}, summary="Reply in a thread",
             openapi_extra=_body_doc(PostIn))
def post_create(request, store: str, thread_id: int):
    store_row = _store(store)
    body = _Body(request, _AUTHOR | {"text", "reply_to_id"})
    _limit(request, store_row.pk, "submit", body)
    result = services.forum_post(store=store_row, thread_id=thread_id, reply_to_id=body.optional_int("reply_to_id"),
                                 text=body.get("text", ""), author=_author(request, body),
                                 language=body.get("language", ""), client_key=_idempotency_key(request))
    return _submitted(result)


public_api.add_router("", router)


def public_urls() -> tuple[list, str, str]:
    """The API's URL patterns, each view wrapped for CORS (preflights never reach ninja)."""
    patterns, app_name, namespace = public_api.urls
    wrapped = []
    for pattern in patterns:
        if isinstance(pattern, URLPattern) and "store" in str(pattern.pattern):
            pattern = URLPattern(pattern.pattern, cors(pattern.callback), pattern.default_args, pattern.name)
        wrapped.append(pattern)
    return wrapped, app_name, namespace

