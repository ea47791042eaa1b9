"""Operations endpoints: /healthz and /metrics."""

import logging
from collections.abc import Callable
from functools import wraps

from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from prometheus_client import CONTENT_TYPE_LATEST

from tertulia.core import metrics
from tertulia.core.errors import ApiError, ErrorDetail, error_response

logger = logging.getLogger(__name__)


def healthz(request: HttpRequest) -> HttpResponse:
    """200 when the database answers a query; 503 with the error shape when it does not."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:  # noqa: BLE001 - any database failure means unhealthy
        logger.warning("health check failed", extra={"error": type(exc).__name__})
        return error_response(ApiError(
            "database_unavailable", "The database did not answer.", 503,
            [ErrorDetail(field="database", code="unreachable", message=type(exc).__name__)],
        ))
    return JsonResponse({"status": "ok", "database": connection.vendor})


def metrics_view(request: HttpRequest) -> HttpResponse:
    return HttpResponse(metrics.exposition(), content_type=CONTENT_TYPE_LATEST)


def webhook_view(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """A provider's callback (shop webhooks, Twilio): POST only, no CSRF token (the signature
    authenticates), errors in the one error shape."""

    @csrf_exempt
    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if request.method != "POST":
            response = error_response(ApiError("method_not_allowed", "Webhooks are delivered with POST.", 405))
            response["Allow"] = "POST"
            return response
        try:
            return view(request, *args, **kwargs)
        except ApiError as error:
            return error_response(error)

    return wrapper
