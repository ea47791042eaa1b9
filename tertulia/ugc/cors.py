"""CORS for the public API and the embed: a store's own origins may call it from the browser.

Allowed for a store: the origin of Store.website_url, its StoreOrigin rows, the deployment-wide
TERTULIA_UGC_CORS_ORIGINS setting (comma-separated env var; "*" allows any), and Tertulia's own
origin (the demo's sample shop page). Reads without an Origin header (servers, curl) are not
affected. A browser POST from an origin not allowed is refused outright, because multipart posts
need no preflight and would otherwise let any site submit content in a visitor's name.
"""

from collections.abc import Callable
from functools import wraps
from urllib.parse import urlsplit

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse
from django.utils.translation import gettext as _

from tertulia.core.errors import ApiError, error_response

ORIGINS_TTL = 60
ALLOWED_METHODS = "GET, POST, OPTIONS"
ALLOWED_HEADERS = "Content-Type, Idempotency-Key, Accept-Language, If-None-Match"
EXPOSED_HEADERS = "ETag, Retry-After, Idempotent-Replayed, X-Request-ID"


def origin_of(url: str) -> str:
    parts = urlsplit(url or "")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return ""
    default = {"http": 80, "https": 443}[parts.scheme]
    port = f":{parts.port}" if parts.port and parts.port != default else ""
    return f"{parts.scheme}://{parts.hostname.lower()}{port}"


def _key(slug: str) -> str:
    return f"ugc:origins:{slug}"


def store_origins(slug: str) -> frozenset[str]:
    """The origins allowed for the store with this slug (empty for an unknown store); cached for a minute."""
    cached = cache.get(_key(slug))
    if cached is not None:
        return cached
    from tertulia.core.models import Store
    from tertulia.ugc.models import StoreOrigin

    origins: set[str] = set()
    store = Store.objects.filter(slug=slug).only("id", "website_url").first()
    if store is not None:
        if origin_of(store.website_url):
            origins.add(origin_of(store.website_url))
        origins.update(StoreOrigin.objects.for_store(store).values_list("origin", flat=True))
    value = frozenset(origins)
    cache.set(_key(slug), value, ORIGINS_TTL)
    return value


def origins_forget(slug: str) -> None:
    cache.delete(_key(slug))


def origin_allowed(request: HttpRequest, slug: str, origin: str) -> bool:
    configured = getattr(settings, "TERTULIA_UGC_CORS_ORIGINS", ())
    if "*" in configured or origin in configured:
        return True
    if origin == f"{request.scheme}://{request.get_host().lower()}":
        return True
    return origin in store_origins(slug)


def _decorate(response: HttpResponse, origin: str) -> HttpResponse:
    response["Access-Control-Allow-Origin"] = origin
    response["Access-Control-Expose-Headers"] = EXPOSED_HEADERS
    _vary(response)
    return response


def _vary(response: HttpResponse) -> None:
    vary = response.get("Vary", "")
    if "origin" not in vary.lower():
        response["Vary"] = f"{vary}, Origin" if vary else "Origin"


def cors(view: Callable) -> Callable:
    """Wrap a view whose URL has a `store` slug: answer preflights, add CORS headers, refuse foreign posts."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        origin = request.META.get("HTTP_ORIGIN", "")  # META, not .headers: this runs on every public read
        slug = kwargs.get("store", "")
        allowed = bool(origin) and origin_allowed(request, slug, origin)
        if request.method == "OPTIONS":
            response = HttpResponse(status=204)
            if allowed:
                _decorate(response, origin)
                response["Access-Control-Allow-Methods"] = ALLOWED_METHODS
                response["Access-Control-Allow-Headers"] = ALLOWED_HEADERS
                response["Access-Control-Max-Age"] = "600"
            else:
                _vary(response)
            return response
        if origin and not allowed and request.method not in ("GET", "HEAD"):
            response = error_response(ApiError(
                "origin_not_allowed", _("This site may not send content to this store."), 403))
            _vary(response)
            return response
        response = view(request, *args, **kwargs)
        if allowed:
            _decorate(response, origin)
        else:
            _vary(response)
        return response

    return wrapper
