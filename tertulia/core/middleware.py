"""Request logging, the body-size limit, and a last line of defence against 500s on the API."""

import logging
import time

from django.conf import settings

from tertulia.core.errors import ApiError, error_response

logger = logging.getLogger("tertulia.request")

_MACHINE_PREFIXES = ("/api/", "/webhooks/")


class RequestLogMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        started = time.perf_counter()
        length = request.META.get("CONTENT_LENGTH") or "0"
        try:
            too_big = int(length) > settings.TERTULIA_MAX_BODY_BYTES
        except ValueError:
            too_big = False
        if too_big:
            response = error_response(
                ApiError("body_too_large", f"Request bodies are limited to {settings.TERTULIA_MAX_BODY_BYTES} bytes.", 413)
            )
        else:
            response = self.get_response(request)
        elapsed_ms = round((time.perf_counter() - started) * 1000, 2)
        from tertulia.core import metrics

        metrics.observe_request(request, response, elapsed_ms / 1000)
        if not request.path.startswith(("/static/", "/metrics", "/healthz")):
            logger.info(
                "request",
                extra={"method": request.method, "path": request.path, "status": response.status_code, "ms": elapsed_ms},
            )
        return response

    def process_exception(self, request, exception):
        # Machine clients always get the error shape, never Django's HTML 500 page.
        if request.path.startswith(_MACHINE_PREFIXES):
            if isinstance(exception, ApiError):
                return error_response(exception)
            logger.exception("unhandled error", extra={"path": request.path})
            return error_response(ApiError("internal_error", "Something went wrong on our side; nothing was stored.", 500))
        return None
