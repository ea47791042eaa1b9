"""HTTP endpoints of listening: the inbound webhook connector and inbound mail (docs/listening.md)."""

from django.http import HttpRequest, HttpResponse, JsonResponse

from tertulia.core.errors import ApiError
from tertulia.core.views import webhook_view
from tertulia.listening.connectors import email as email_connector
from tertulia.listening.connectors.webhook import PayloadError, parse
from tertulia.listening.pushed import (
    MAX_BODY,
    pushed_authenticate,
    pushed_ingest,
    pushed_reject,
    pushed_source,
)


@webhook_view
def inbound_webhook(request: HttpRequest, store_slug: str, source_key: str) -> HttpResponse:
    source = pushed_source(store_slug=store_slug, key=source_key, networks=["webhook"])
    pushed_authenticate(request, source)
    body = request.body
    if len(body) > MAX_BODY:
        raise pushed_reject(source, body[:10_000], code="too_large", message="The body is larger than 5 MB.", status=413)
    try:
        posts = parse(body, source_key=source.key)
    except PayloadError as error:
        raise pushed_reject(source, body, code=error.code, message=error.message,
                            status=400 if error.code == "invalid_json" else 422, details=error.details) from None
    result = pushed_ingest(source, posts)
    return JsonResponse({"accepted": len(posts), "stored": result.stored, "duplicates": result.duplicates,
                         "ignored": result.ignored})



@webhook_view
def inbound_email(request: HttpRequest, store_slug: str, source_key: str) -> HttpResponse:
    """Inbound mail for an e-mail source in webhook mode (docs/listening.md, "E-mail"): raw RFC 822 or JSON."""
    source = pushed_source(store_slug=store_slug, key=source_key, networks=["email"])
    if (source.settings or {}).get("mode") != "webhook":
        raise ApiError("not_found", "No such source.", 404)  # an IMAP source reads its mailbox; it takes no posts
    pushed_authenticate(request, source)
    body = request.body
    if len(body) > MAX_BODY:
        raise pushed_reject(source, body[:10_000], code="too_large", message="The body is larger than 5 MB.", status=413)
    try:
        post = email_connector.webhook_post(body, content_type=request.content_type or "",
                                            own_address=str(source.settings.get("address") or "").lower())
    except email_connector.Skipped as skipped:
        # An auto-reply, a bounce, our own mail: accepted (the sender must not retry it), never answered.
        return JsonResponse({"accepted": 0, "stored": 0, "duplicates": 0, "ignored": 1, "skipped": skipped.reason})
    except email_connector.MessageError as error:
        status = {"invalid_json": 400, "unsupported_media_type": 415}.get(error.code, 422)
        raise pushed_reject(source, body, code=error.code, message=error.message, status=status,
                            details=error.details) from None
    result = pushed_ingest(source, [post])
    return JsonResponse({"accepted": 1, "stored": result.stored, "duplicates": result.duplicates,
                         "ignored": result.ignored, "message_id": post.external_id})
