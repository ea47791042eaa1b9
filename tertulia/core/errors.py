"""The one error shape every endpoint answers with.

    {"error": {"code": "...", "message": "...", "details": [{"index", "field", "code", "message"}]}}
"""

from dataclasses import asdict, dataclass, field

import orjson
from django.http import HttpResponse


@dataclass(frozen=True, slots=True)
class ErrorDetail:
    field: str
    code: str
    message: str
    index: int | None = None


@dataclass
class ApiError(Exception):
    """Raised by services and endpoints; rendered by `error_response`."""

    code: str
    message: str
    status: int = 400
    details: list[ErrorDetail] = field(default_factory=list)

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


def error_body(code: str, message: str, details: list[ErrorDetail] | None = None) -> dict:
    return {"error": {"code": code, "message": message, "details": [asdict(d) for d in details or []]}}


def error_response(error: ApiError) -> HttpResponse:
    return HttpResponse(
        orjson.dumps(error_body(error.code, error.message, error.details)),
        status=error.status,
        content_type="application/json",
    )
