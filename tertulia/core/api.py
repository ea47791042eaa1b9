"""The REST API object: bearer API-key authentication and the one error shape for every failure."""

import logging

import orjson
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.http import Http404, HttpRequest, HttpResponse
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, AuthorizationError, HttpError, ValidationError
from ninja.renderers import BaseRenderer
from ninja.security import HttpBearer

from tertulia.core.errors import ApiError, ErrorDetail, error_body, error_response
from tertulia.core.middleware import body_too_large
from tertulia.core.models import ApiKeyScope, Store
from tertulia.core.services import api_key_authenticate

logger = logging.getLogger(__name__)


class OrjsonRenderer(BaseRenderer):
    media_type = "application/json"

    def render(self, request, data, *, response_status):
        return orjson.dumps(data, default=str)


class ApiKeyAuth(HttpBearer):
    """`Authorization: Bearer <api key>`; the key decides the store every query is scoped to."""

    def authenticate(self, request: HttpRequest, token: str):
        key = api_key_authenticate(secret=token.strip())
        if key is None:
            raise ApiError("invalid_api_key", "The API key is unknown or has been revoked.", 401)
        if request.method not in ("GET", "HEAD", "OPTIONS") and key.scope != ApiKeyScope.READ_WRITE:
            raise ApiError("read_only_key", "This API key may only read.", 403)
        request.store = key.store  # type: ignore[attr-defined]
        request.api_key = key  # type: ignore[attr-defined]
        return key


def request_store(request: HttpRequest) -> Store:
    return request.store  # type: ignore[attr-defined]


api = NinjaAPI(
    title="Tertulia API",
    version="1",
    description=(
        "Store events in, customers and commerce state out. Every request is scoped to the store "
        "of its API key. Errors always have the shape "
        '{"error": {"code", "message", "details": [{"index", "field", "code", "message"}]}}.'
    ),
    auth=ApiKeyAuth(),
    renderer=OrjsonRenderer(),
    urls_namespace="api",
    openapi_url="/openapi.json",
    docs_url="/docs",
)


def _invalid(request, exc: ValidationError) -> HttpResponse:
    details = []
    for problem in exc.errors:
        location = [str(part) for part in problem.get("loc", ()) if part not in ("query", "body", "path")]
        details.append(ErrorDetail(field=".".join(location), code=problem.get("type", "invalid"),
                                   message=problem.get("msg", "Invalid value.")))
    return error_response(ApiError("invalid_request", "The request has invalid parameters.", 422, details))


def error_handlers_install(target: NinjaAPI, *, name: str) -> None:
    """Answer every failure of `target` in the core error shape; one set of handlers for every API object."""

    def unexpected(request, exc: Exception) -> HttpResponse:
        logger.exception(f"unhandled {name} error", extra={"path": request.path})
        return HttpResponse(
            orjson.dumps(error_body("internal_error", "Something went wrong on our side; nothing was stored.")),
            status=500, content_type="application/json",
        )

    handlers = {
        ApiError: lambda exc: exc,
        AuthenticationError: lambda exc: ApiError("unauthenticated", "Send 'Authorization: Bearer <api key>'.", 401),
        AuthorizationError: lambda exc: ApiError("forbidden", str(exc) or "Not allowed.", 403),
        Http404: lambda exc: ApiError("not_found", str(exc) or "Not found.", 404),
        HttpError: lambda exc: ApiError("http_error", str(exc), exc.status_code),
        # Reached when a body gets past the Content-Length check in core.middleware (see body_too_large).
        RequestDataTooBig: lambda exc: body_too_large(),
        SuspiciousOperation: lambda exc: ApiError("bad_request", "The request was refused as malformed.", 400),
    }
    for kind, make in handlers.items():
        target.add_exception_handler(kind, lambda request, exc, make=make: error_response(make(exc)))
    target.add_exception_handler(ValidationError, _invalid)
    target.add_exception_handler(Exception, unexpected)


error_handlers_install(api, name="API")


def json_body(request: HttpRequest):
    """Parse the raw body as JSON or raise the machine-readable 400."""
    content_type = request.content_type or ""
    if content_type and content_type != "application/json" and not content_type.endswith("+json"):
        raise ApiError("unsupported_media_type", "Send the body as application/json.", 415)
    try:
        return orjson.loads(request.body)
    except orjson.JSONDecodeError as exc:
        raise ApiError("invalid_json", f"The body is not valid JSON: {exc}.", 400,
                       [ErrorDetail(field="", code="invalid_json", message=str(exc))]) from None
