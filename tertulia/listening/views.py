"""HTTP endpoints of listening: the inbound webhook connector (docs/listening.md, "Inbound webhook")."""

from django.http import HttpRequest, HttpResponse, JsonResponse

from tertulia.core.views import webhook_view
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

