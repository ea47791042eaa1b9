"""The public endpoints behind the links in messages: click redirect, open pixel, unsubscribe, answers.

No login anywhere: the signed token in the path is the authority (channels.tracking). Pages speak
the language the message was sent in, tell search engines to stay away, and are never cached.
"""

import base64

from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.utils import translation
from django.utils.cache import add_never_cache_headers
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods, require_safe

from tertulia.channels import tracking
from tertulia.channels.models import Delivery
from tertulia.customers.models import ConsentStatus
from tertulia.journeys.rendering import language_pick

# The smallest transparent GIF (42 bytes).
PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")


# The pages carry no script and load nothing; forms post back to themselves.
CONTENT_SECURITY_POLICY = ("default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
                           "form-action 'self'; base-uri 'none'; frame-ancestors 'none'")


def _public(response: HttpResponse) -> HttpResponse:
    response["X-Robots-Tag"] = "noindex, nofollow"
    response["Referrer-Policy"] = "no-referrer"  # the token must not travel to the store's site
    response["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    add_never_cache_headers(response)
    return response


def _language(request: HttpRequest, delivery: Delivery | None) -> str:
    return language_pick(delivery.language if delivery else None, getattr(request, "LANGUAGE_CODE", None))


def _page(request: HttpRequest, template: str, *, delivery: Delivery | None = None, status: int = 200,
          **context) -> HttpResponse:
    language = _language(request, delivery)
    with translation.override(language):
        response = render(request, f"channels/public/{template}", {
            "delivery": delivery, "store": delivery.store if delivery else None, "language": language, **context,
        }, status=status)
    return _public(response)


def not_found(request: HttpRequest, *, delivery: Delivery | None = None) -> HttpResponse:
    return _page(request, "not_found.html", delivery=delivery, status=404)


@require_safe
def click(request: HttpRequest, token: str) -> HttpResponse:
    """/r/<token>: record the click and redirect to the delivery's own link, never anywhere else."""
    if request.method == "HEAD":
        # Link checkers and mail scanners ask with HEAD; answer without counting a click.
        found = tracking.delivery_for(token, purpose=tracking.CLICK)
        return _public(HttpResponse(status=200 if found else 404))
    outcome = tracking.click_record(token=token)
    if outcome is None:
        return not_found(request)
    return _public(HttpResponseRedirect(outcome[1]))


@require_safe
def open_pixel(request: HttpRequest, token: str) -> HttpResponse:
    """/o/<token>.gif: the open pixel. Always answers the image, so a bad token shows no broken picture."""
    recorded = request.method == "GET" and tracking.open_record(token=token)
    response = HttpResponse(PIXEL, content_type="image/gif", status=200 if recorded else 404)
    return _public(response)


@csrf_exempt  # RFC 8058: mail providers POST without a session; the signed token is the authority
@require_http_methods(["GET", "HEAD", "POST"])
def unsubscribe(request: HttpRequest, token: str) -> HttpResponse:
    """/u/<token>: GET shows a page with one button; POST (the button, or one-click from the inbox) unsubscribes."""
    found = tracking.delivery_for(token, purpose=tracking.UNSUBSCRIBE)
    if found is None:
        return not_found(request)
    delivery = found[0]
    if request.method != "POST":
        already = tracking.consent_status(delivery=delivery) == ConsentStatus.UNSUBSCRIBED
        return _page(request, "unsubscribe.html", delivery=delivery, already=already,
                     address=_masked(delivery.to_address), channel=delivery.channel)
    one_click = request.POST.get("List-Unsubscribe") == "One-Click"
    tracking.unsubscribe_record(delivery=delivery, user_agent=request.headers.get("User-Agent", ""),
                                one_click=one_click and not request.POST.get("from_page"))
    # RFC 8058: answer the POST itself (no redirect); a person pressing the button reads this page.
    return _page(request, "unsubscribed.html", delivery=delivery, channel=delivery.channel)


@csrf_exempt  # the note form posts back to the signed address; the token is the authority, no cookie needed
@require_http_methods(["GET", "HEAD", "POST"])
def answer(request: HttpRequest, token: str) -> HttpResponse:
    """/a/<token>: one click records why the cart was left; the page thanks and offers a note."""
    if request.method == "HEAD":
        found = tracking.delivery_for(token, purpose=tracking.ANSWER)
        return _public(HttpResponse(status=200 if found else 404))
    note = ""
    if request.method == "POST":
        note = str(request.POST.get("note", ""))
    outcome = tracking.answer_record(token=token, note=note)
    if outcome is None:
        return not_found(request)
    website = outcome.delivery.store.website_url or ""
    return _page(request, "answer.html", delivery=outcome.delivery, choice=tracking.ANSWER_LABELS[outcome.choice],
                 noted=bool(note.strip()), note_max=tracking.ANSWER_NOTE_MAX,
                 back_url=website if website.lower().startswith(("https://", "http://")) else "")


@csrf_exempt
@require_http_methods(["GET", "HEAD", "POST"])
def confirm(request: HttpRequest, token: str) -> HttpResponse:
    """/c/<token>: double opt-in. GET asks (mail scanners follow links), POST confirms."""
    found = tracking.delivery_for(token, purpose=tracking.CONFIRM)
    if found is None:
        return not_found(request)
    delivery = found[0]
    if request.method == "POST":
        state = tracking.confirmation_record(delivery=delivery, user_agent=request.headers.get("User-Agent", ""))
        return _page(request, "confirm.html", delivery=delivery, state=state or "none", done=True)
    state = tracking.consent_status(delivery=delivery, channel="email")
    return _page(request, "confirm.html", delivery=delivery, state=state or "none", done=False)


def _masked(address: str) -> str:
    """Enough of the address to recognise it, not enough to harvest it: l•••@example.com."""
    if "@" in address:
        local, _, domain = address.partition("@")
        return f"{local[:1]}•••@{domain}"
    if len(address) > 4:
        return "•••" + address[-3:]
    return ""
