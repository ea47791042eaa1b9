"""Rate limits for public submissions, per client address and per identity (device id or e-mail).

Fixed windows counted in Django's cache. With the default in-process cache each web process counts
on its own (so the effective limit is multiplied by the number of processes); production sets
REDIS_URL and every process shares one count. Limits are settings so a store under attack (or a
test) can change them: TERTULIA_UGC_RATE_LIMITS = {"submit": (per_ip, per_identity, seconds), ...}.
"""

import time
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache
from django.utils.translation import gettext as _

from tertulia.core.errors import ApiError, ErrorDetail

DEFAULT_LIMITS = {
    # kind: (requests per address, requests per identity, window in seconds)
    "submit": (20, 8, 600),  # reviews, questions, answers, comments, testimonials, forum posts
    "react": (120, 60, 600),  # votes and flags
}


@dataclass
class RateLimited(ApiError):
    retry_after: int = 60


def _limits(kind: str) -> tuple[int, int, int]:
    configured = getattr(settings, "TERTULIA_UGC_RATE_LIMITS", {}) or {}
    return tuple(configured.get(kind, DEFAULT_LIMITS[kind]))  # type: ignore[return-value]


def _hit(key: str, limit: int, window: int, now: float) -> int | None:
    """Count one request in the current window; seconds to wait when over the limit, else None."""
    start = int(now // window) * window
    bucket = f"ugc:rl:{key}:{start}"
    cache.add(bucket, 0, window + 5)
    try:
        count = cache.incr(bucket)
    except ValueError:  # evicted between add and incr
        cache.set(bucket, 1, window + 5)
        count = 1
    if count > limit:
        return max(1, int(start + window - now))
    return None


def rate_limit_check(*, store_id: int, kind: str, ip_hash: str, identity_hash: str = "",
                     now: float | None = None) -> None:
    """Raise the 429 (error shape, with Retry-After) when the address or the identity is over its limit."""
    per_ip, per_identity, window = _limits(kind)
    moment = time.time() if now is None else now
    waits = []
    if ip_hash:
        waits.append(_hit(f"{store_id}:{kind}:ip:{ip_hash}", per_ip, window, moment))
    if identity_hash:
        waits.append(_hit(f"{store_id}:{kind}:id:{identity_hash}", per_identity, window, moment))
    wait = max((w for w in waits if w is not None), default=None)
    if wait is not None:
        raise RateLimited(
            "rate_limited", _("Too many submissions; try again in %(seconds)d seconds.") % {"seconds": wait}, 429,
            [ErrorDetail(field="", code="rate_limited", message=_("Wait before sending more."))], retry_after=wait)
