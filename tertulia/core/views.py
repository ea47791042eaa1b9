"""Operations endpoints: /healthz and /metrics."""

import logging

from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
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
