"""Request ids and request logs, the body-size limit, and the error shape for every machine-facing failure."""

import logging
import re
import time
import uuid

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse

from tertulia.core import logging as structured
from tertulia.core.errors import ApiError, ErrorDetail, error_response

logger = logging.getLogger("tertulia.request")

_MACHINE_PREFIXES = ("/api/", "/webhooks/")
_QUIET_PREFIXES = ("/static/", "/metrics", "/healthz")
# A client's own id is kept only if it is short and plain, so it is safe in logs and headers.
_CLIENT_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_CODES = {
    400: "bad_request", 401: "unauthenticated", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
    406: "not_acceptable", 413: "body_too_large", 415: "unsupported_media_type", 429: "too_many_requests",
}


def body_too_large() -> ApiError:
    limit = settings.TERTULIA_MAX_BODY_BYTES
    return ApiError(
        "body_too_large", f"Request bodies are limited to {limit} bytes.", 413,
        [ErrorDetail(field="", code="too_large", message=f"Send at most {limit} bytes; split the batch.")],
    )


def _refusal(request: HttpRequest) -> HttpResponse | None:
    """Refuse a body by its declared length before anyone reads it."""
    declared = request.META.get("CONTENT_LENGTH") or ""
    if not declared:
        # No length: Django's request stream then reads nothing, so an undeclared body never gets in.
        return None
    try:
        length = int(declared)
    except ValueError:
        length = -1
    if length < 0:
        return error_response(ApiError("invalid_content_length", "The Content-Length header is not a number of bytes.", 400))
    if length > settings.TERTULIA_MAX_BODY_BYTES:
        return error_response(body_too_large())
    return None


def _as_error_shape(response: HttpResponse) -> HttpResponse:
    """Django's own 404/405/400 pages are HTML; machine clients get the one error shape instead."""
    status = response.status_code
    code = _CODES.get(status, "internal_error" if status >= 500 else "http_error")
    message = response.reason_phrase or "Request failed."
    if status == 404:
        message = "There is nothing at this URL; see /api/v1/docs."
    converted = error_response(ApiError(code, message, status))
    if response.has_header("Allow"):
        converted["Allow"] = response["Allow"]
    return converted


class RequestLogMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        offered = request.META.get("HTTP_X_REQUEST_ID", "")
        request_id = offered if _CLIENT_REQUEST_ID.match(offered) else uuid.uuid4().hex
        request.request_id = request_id  # type: ignore[attr-defined]
        token = structured.request_id.set(request_id)
        try:
            response = _refusal(request) or self.get_response(request)
            if (
                request.path.startswith(_MACHINE_PREFIXES)
                and response.status_code >= 400
                and not response.get("Content-Type", "").startswith("application/json")
            ):
                response = _as_error_shape(response)
            response["X-Request-ID"] = request_id
            elapsed = time.perf_counter() - started
            from tertulia.core import metrics

            metrics.observe_request(request, response, elapsed)
            if not request.path.startswith(_QUIET_PREFIXES):
                extra = {"method": request.method, "path": request.path, "status": response.status_code,
                         "ms": round(elapsed * 1000, 2)}
                store = getattr(request, "store", None)
                if store is not None:
                    extra["store"] = store.slug
                logger.info("request", extra=extra)
            return response
        finally:
            structured.request_id.reset(token)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if isinstance(exception, RequestDataTooBig):
            # A body that got past the Content-Length check (see _refusal) still gets our 413.
            return error_response(body_too_large())
        # Machine clients always get the error shape, never Django's HTML 500 page.
        if request.path.startswith(_MACHINE_PREFIXES):
            if isinstance(exception, ApiError):
                return error_response(exception)
            logger.exception("unhandled error", extra={"path": request.path})
            return error_response(ApiError("internal_error", "Something went wrong on our side; nothing was stored.", 500))
        return None
