"""Public pages of the community: the embed fragment with JSON-LD, the Google product review feed, the
widget script, review photos, and the review form reached by an order's signed link."""

import hashlib
import logging
import re
from pathlib import Path
from xml.etree import ElementTree as ET

import orjson
from django.contrib.staticfiles import finders
from django.core.cache import cache
from django.core.files.storage import default_storage
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils import translation
from django.utils.safestring import mark_safe
from django.utils.translation import gettext as _
from django.views.decorators.clickjacking import xframe_options_exempt
from django.views.decorators.http import require_GET, require_http_methods

from tertulia.catalog.models import Product
from tertulia.core.errors import ApiError
from tertulia.core.models import Membership, Store
from tertulia.customers.models import Customer
from tertulia.ugc import selectors, services
from tertulia.ugc.models import Review, ReviewPhoto, Status
from tertulia.ugc.photos import MAX_BYTES, MAX_PHOTOS

logger = logging.getLogger(__name__)

EMBED_REVIEWS = 10
EMBED_QUESTIONS = 10
_XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _language(request: HttpRequest, fallback: str = "") -> str:
    """?lang=, else the browser's Accept-Language (when it sends one), else `fallback`, else Spanish."""
    asked = (request.GET.get("lang") or "").lower()[:2]
    if asked in ("es", "en"):
        return asked
    if request.headers.get("Accept-Language"):
        detected = (translation.get_language_from_request(request) or "")[:2]
        if detected in ("es", "en"):
            return detected
    return fallback if fallback in ("es", "en") else "es"


def _base_url(request: HttpRequest) -> str:
    return f"{request.scheme}://{request.get_host()}"


def json_ld_script(data: dict) -> str:
    """JSON for a <script type="application/ld+json">: `<`, `>` and `&` escaped so no text can end the script."""
    text = orjson.dumps(data).decode()
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


# --- embed -----------------------------------------------------------------------------------------


def product_json_ld(*, product: Product, state: selectors.ProductState, reviews: list[Review], language: str) -> dict:
    data: dict = {"@context": "https://schema.org", "@type": "Product", "name": product.title, "sku": product.sku}
    if product.description:
        data["description"] = product.description
    if product.url:
        data["url"] = product.url
    if product.image_url:
        data["image"] = product.image_url
    if product.price is not None and product.currency:
        offer = {"@type": "Offer", "price": str(product.price), "priceCurrency": product.currency}
        if product.stock is not None:
            offer["availability"] = "https://schema.org/InStock" if product.stock > 0 else "https://schema.org/OutOfStock"
        if product.url:
            offer["url"] = product.url
        data["offers"] = offer
    if state.review_count:
        data["aggregateRating"] = {"@type": "AggregateRating", "ratingValue": round(state.rating_sum / state.review_count, 2),
                                   "reviewCount": state.review_count, "bestRating": 5, "worstRating": 1}
    with translation.override(language):
        anonymous = _("Anonymous")
    if reviews:
        data["review"] = [{
            "@type": "Review",
            "author": {"@type": "Person", "name": review.author or anonymous},
            "datePublished": review.created_at.date().isoformat(),
            **({"name": review.title} if review.title else {}),
            "reviewBody": review.text,
            **({"inLanguage": review.language} if review.language else {}),
            "reviewRating": {"@type": "Rating", "ratingValue": review.rating, "bestRating": 5, "worstRating": 1},
        } for review in reviews]
    return data


@xframe_options_exempt
@require_GET
def embed(request: HttpRequest, store: str, sku: str) -> HttpResponse:
    state = selectors.product_state(store_slug=store, sku=sku)
    if state is None:
        return HttpResponse(_("There is no such product."), status=404, content_type="text/plain; charset=utf-8")
    store_row = Store.objects.only("id", "slug", "name", "language").get(pk=state.store_id)
    language = _language(request, store_row.language)
    key = "\x1f".join(map(str, ("embed", state.product_id, state.version, state.updated_at, language,
                                _base_url(request))))
    digest = hashlib.blake2b(key.encode(), digest_size=16).hexdigest()
    etag = f'"{digest}"'
    if any(t.strip().removeprefix("W/") == etag for t in request.headers.get("If-None-Match", "").split(",")):
        response = HttpResponse(status=304)
    else:
        body = cache.get(f"ugc:embed:{digest}")
        if body is None:
            body = _embed_render(request, store_row, state, language)
            cache.set(f"ugc:embed:{digest}", body, 3600)
        response = HttpResponse(body, content_type="text/html; charset=utf-8")
    response["ETag"] = etag
    response["Cache-Control"] = "public, no-cache"
    response["Content-Language"] = language
    return response


def _embed_render(request: HttpRequest, store: Store, state: selectors.ProductState, language: str) -> str:
    product = selectors.product_for_embed(store=store, sku=state.sku)
    assert product is not None
    base = _base_url(request)
    reviews_page = selectors.reviews_page(state=state, limit=EMBED_REVIEWS, base_url=base)
    reviews = list(Review.objects.filter(pk__in=[r["id"] for r in reviews_page["items"]]).order_by("-created_at", "-id"))
    questions = selectors.questions_page(state=state, limit=EMBED_QUESTIONS)
    faq = selectors.faq_items(store_id=state.store_id, product_id=state.product_id)
    with translation.override(language):
        html = render(request, "ugc/embed.html", {
            "store": store, "product": product, "aggregate": state.aggregate(), "reviews": reviews_page["items"],
            "questions": questions["items"], "faq": faq, "language": language, "stars": range(1, 6),
            "json_ld": mark_safe(json_ld_script(product_json_ld(  # noqa: S308 - escaped by json_ld_script
                product=product, state=state, reviews=reviews, language=language))),
        }).content.decode()
    return html


# --- Google product review feed --------------------------------------------------------------------


def _xml_text(value: str) -> str:
    return _XML_INVALID.sub("", value or "")


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attributes: str) -> ET.Element:
    element = ET.SubElement(parent, tag, attributes)
    if text is not None:
        element.text = _xml_text(text)
    return element


@require_GET
def review_feed(request: HttpRequest, store: str) -> HttpResponse:
    """The store's published reviews in Google's product review feed format (schema 2.4), always complete."""
    store_row = Store.objects.filter(slug=store).first()
    if store_row is None:
        raise Http404("no such store")
    base = _base_url(request)
    with translation.override(store_row.language if store_row.language in ("es", "en") else "es"):
        anonymous = _("Anonymous")
    feed = ET.Element("feed", {
        "xmlns:vc": "http://www.w3.org/2007/XMLSchema-versioning",
        "xmlns:xsi": "http://www.w3.org/2001/XMLSchema-instance",
        "xsi:noNamespaceSchemaLocation": "http://www.google.com/shopping/reviews/schema/product/2.4/product_reviews.xsd",
    })
    _sub(feed, "version", "2.4")
    _sub(feed, "aggregator").append(_named("Tertulia"))
    publisher = _sub(feed, "publisher")
    _sub(publisher, "name", store_row.name)
    reviews = _sub(feed, "reviews")
    for review, photos in selectors.store_reviews_all(store=store_row):
        product = review.product
        product_url = product.url or base + reverse("ugc:embed", kwargs={"store": store_row.slug, "sku": product.sku})
        element = _sub(reviews, "review")
        _sub(element, "review_id", str(review.pk))
        reviewer = _sub(element, "reviewer")
        if review.author:
            _sub(reviewer, "name", review.author)
        else:
            _sub(reviewer, "name", anonymous, is_anonymous="true")
        _sub(element, "is_verified_purchase", "true" if review.verified_buyer else "false")
        _sub(element, "is_incentivized_review", "false")
        _sub(element, "review_timestamp", selectors.iso(review.created_at))
        if review.title:
            _sub(element, "title", review.title)
        _sub(element, "content", review.text)
        if review.language:
            _sub(element, "review_language", review.language)
        _sub(element, "review_url", f"{product_url}#tertulia-review-{review.pk}", type="group")
        if photos:
            images = _sub(element, "reviewer_images")
            for photo in photos:
                _sub(_sub(images, "reviewer_image"), "url", selectors.photo_url(base, photo.key, photo.extension))
        ratings = _sub(element, "ratings")
        _sub(ratings, "overall", str(review.rating), min="1", max="5")
        products = _sub(_sub(element, "products"), "product")
        _sub(_sub(_sub(products, "product_ids"), "skus"), "sku", product.sku)
        _sub(products, "product_name", product.title)
        _sub(products, "product_url", product_url)
        _sub(element, "collection_method", "post_fulfillment" if review.order_id else "unsolicited")
    body = ET.tostring(feed, encoding="utf-8", xml_declaration=True)
    response = HttpResponse(body, content_type="application/xml; charset=utf-8")
    response["Cache-Control"] = "public, max-age=300"
    return response


def _named(name: str) -> ET.Element:
    element = ET.Element("name")
    element.text = name
    return element


# --- the widget script -----------------------------------------------------------------------------

_WIDGET: dict[str, tuple[float, bytes, str]] = {}


@require_GET
def widget_js(request: HttpRequest) -> HttpResponse:
    """/widget.js: the file WIDGET writes, with an ETag, a short max-age and any-origin access."""
    path = finders.find("ugc/widget.js")
    if not path:
        raise Http404("widget not built")
    stamp = Path(path).stat().st_mtime
    cached = _WIDGET.get(path)
    if cached is None or cached[0] != stamp:
        data = Path(path).read_bytes()
        cached = (stamp, data, '"' + hashlib.blake2b(data, digest_size=16).hexdigest() + '"')
        _WIDGET[path] = cached
    _stamp, data, etag = cached
    if any(t.strip().removeprefix("W/") == etag for t in request.headers.get("If-None-Match", "").split(",")):
        response = HttpResponse(status=304)
    else:
        response = HttpResponse(data, content_type="text/javascript; charset=utf-8")
    response["ETag"] = etag
    # Not fingerprinted, so cached briefly; revalidation is cheap (304) after that.
    response["Cache-Control"] = "public, max-age=300, stale-while-revalidate=86400"
    response["Access-Control-Allow-Origin"] = "*"
    response["Cross-Origin-Resource-Policy"] = "cross-origin"
    return response


# --- photos ----------------------------------------------------------------------------------------


@require_GET
def photo(request: HttpRequest, key: str, extension: str) -> HttpResponse:
    """A review photo: public once its review is published; before that, only to the store's staff."""
    row = ReviewPhoto.objects.filter(key=key).select_related("review").first()
    if row is None or row.extension != extension:
        raise Http404("no such photo")
    public = row.review.status == Status.PUBLISHED
    if not public and not (request.user.is_authenticated and (
            request.user.is_superuser or Membership.objects.filter(store_id=row.store_id, user=request.user).exists())):
        raise Http404("no such photo")
    try:
        handle = default_storage.open(row.file.name, "rb")
    except OSError:
        raise Http404("photo file missing") from None
    response = FileResponse(handle, content_type=row.content_type)
    response["Cache-Control"] = "public, max-age=3600" if public else "private, no-store"
    response["Cross-Origin-Resource-Policy"] = "cross-origin"
    return response


# --- the review form of a delivered order ----------------------------------------------------------


def _form_language(request: HttpRequest, store: Store, customer: Customer | None) -> str:
    asked = (request.GET.get("lang") or request.POST.get("lang") or "").lower()[:2]
    for language in (asked, customer.language if customer else "", store.language):
        if language in ("es", "en"):
            return language
    return "es"


def _default_name(customer: Customer | None) -> str:
    if customer is None:
        return ""
    initial = f" {customer.last_name[:1]}." if customer.last_name else ""
    return f"{customer.first_name}{initial}".strip()


@require_http_methods(["GET", "POST"])
def review_form(request: HttpRequest, token: str) -> HttpResponse:
    grant = services.review_link_open(token=token)
    if grant is None:
        with translation.override(_language(request)):
            return render(request, "ugc/review_invalid.html", {"reason": "invalid"}, status=404)
    order = grant.order
    store = order.store
    customer = Customer.objects.filter(pk=grant.customer_id, store=store).first()
    language = _form_language(request, store, customer)
    with translation.override(language):
        if order.delivered_at is None and order.fulfilled_at is None and order.status not in ("delivered", "fulfilled"):
            return render(request, "ugc/review_invalid.html", {"reason": "not_delivered", "store": store}, status=409)
        products = {p.sku: p for p in Product.objects.for_store(store).filter(sku__in=services.order_skus(order))}
        existing = {r.product_id: r for r in Review.objects.for_store(store).filter(order=order)}
        items = []
        for index, sku in enumerate(services.order_skus(order)):
            product = products.get(sku)
            if product is None:
                continue
            review = existing.get(product.pk)
            items.append({"index": index, "product": product, "review": review, "errors": {}, "result": None,
                          "rating": str(review.rating) if review else "", "title": review.title if review else "",
                          "text": review.text if review else ""})
        display_name = _default_name(customer)
        if existing:
            display_name = next(iter(existing.values())).display_name
        done = False
        if request.method == "POST":
            display_name = str(request.POST.get("display_name", ""))[:200]
            done = _form_submit(request, store, token, items, display_name, language)
        return render(request, "ugc/review_form.html", {
            "store": store, "order": order, "items": items, "display_name": display_name, "language": language,
            "token": token, "done": done, "stars": range(5, 0, -1), "max_photos": MAX_PHOTOS,
        })


def _form_submit(request: HttpRequest, store: Store, token: str, items: list[dict], display_name: str,
                 language: str) -> bool:
    """Submit every item that got a rating; each is saved (or refused) on its own. True if any was saved."""
    saved = False
    for item in items:
        index = item["index"]
        rating = str(request.POST.get(f"rating-{index}", "")).strip()
        item["rating"], item["title"] = rating, str(request.POST.get(f"title-{index}", ""))
        item["text"] = str(request.POST.get(f"text-{index}", ""))
        if not rating and not item["text"].strip():
            continue
        uploads = request.FILES.getlist(f"photos-{index}")
        photos, too_big = [], False
        for upload in uploads[: MAX_PHOTOS + 1]:
            if upload.size > MAX_BYTES:
                too_big = True
            else:
                photos.append(upload.read())
        if too_big:
            item["errors"] = {"photos": _("Photos may be at most 5 MB.")}
            continue
        try:
            result = services.review_submit(
                store=store, product=item["product"], rating=rating, title=item["title"], text=item["text"],
                author=services.Author(display_name=display_name, ip=request.META.get("REMOTE_ADDR", ""),
                                       answer_language=language),
                token=token, photos=photos)
        except ApiError as error:
            item["errors"] = {d.field.split("[")[0]: d.message for d in error.details} or {"": error.message}
            continue
        item["result"] = result
        saved = True
    return saved
