"""Sources the platform pushes to (the inbound webhook, inbound mail): find, authenticate, store, keep health.

A pushed source has a random token (listening.sources.source_webhook_token). A delivery authenticates
with `Authorization: Bearer <token>`, or with `X-Tertulia-Signature: sha256=<hex HMAC-SHA256 of the raw
body under the token>` for senders that sign instead. What cannot be read is kept (MalformedPayload) and
counted in the source's health, and the sender gets a 4xx saying why; nothing of it is stored otherwise.
"""

import hashlib
import hmac
from collections.abc import Sequence

from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone

from tertulia.channels.credentials import CredentialsError, secrets_decrypt
from tertulia.core.errors import ApiError, ErrorDetail
from tertulia.listening.connectors.base import Post
from tertulia.listening.models import Source
from tertulia.listening.runner import heard_changes, malformed_record
from tertulia.listening.services import IngestResult, mentions_ingest

MAX_BODY = 5 * 1024 * 1024


def pushed_source(*, store_slug: str, key: str, networks: Sequence[str]) -> Source:
    source = (Source.objects.filter(store__slug=store_slug, key=key, network__in=list(networks), enabled=True)
              .select_related("store").first())
    if source is None:
        raise ApiError("not_found", "No such source.", 404)
    return source


def pushed_authenticate(request: HttpRequest, source: Source) -> None:
    try:
        token = str(secrets_decrypt(source.secrets_encrypted).get("token") or "")
    except CredentialsError:
        token = ""
    if not token:
        raise ApiError("not_configured", "This source has no token yet (tertulia listening source token).", 401)
    given = request.headers.get("Authorization", "")
    if given.startswith("Bearer ") and hmac.compare_digest(given[7:].strip().encode(), token.encode()):
        return
    signature = request.headers.get("X-Tertulia-Signature", "")
    if signature.startswith("sha256="):
        expected = hmac.new(token.encode(), request.body, hashlib.sha256).hexdigest()
        if hmac.compare_digest(signature[7:].strip().lower().encode(), expected.encode()):
            return
    raise ApiError("unauthorized", "Send the source's token (Authorization: Bearer) or sign the body "
                                   "(X-Tertulia-Signature: sha256=...).", 401)


def pushed_reject(source: Source, raw: bytes, *, code: str, message: str, status: int = 422,
                  details: list[ErrorDetail] | None = None) -> ApiError:
    """Keep what could not be read, count it, and return the error to answer with."""
    detail_text = "; ".join(f"{d.index if d.index is not None else ''} {d.field}: {d.message}".strip()
                            for d in details or [])
    malformed_record(source_id=source.pk, store_id=source.store_id, raw=raw.decode("utf-8", errors="replace"),
                     error=f"{message} {detail_text}".strip(), code=code)
    return ApiError(code, message, status, details or [])


def pushed_ingest(source: Source, posts: Sequence[Post]) -> IngestResult:
    """Store the posts and the source's health in one transaction."""
    moment = timezone.now()
    with transaction.atomic():
        result = mentions_ingest(store_id=source.store_id, posts=posts, source_id=source.pk, now=moment)
        Source.objects.filter(pk=source.pk).update(
            last_run_at=moment, consecutive_failures=0, failing_since=None, lag_seconds=0.0,
            **heard_changes(posts=posts, newest_of=posts, result=result, moment=moment))
    return result

