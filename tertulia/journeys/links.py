"""Signed links that stand in for a login: the review link of a delivered order (valid 45 days).

The review form itself belongs to ugc (#4); it reads the token with review_token_read and, when the
token is good, marks the review as written by a verified buyer of that order.
"""

from dataclasses import dataclass

from django.core import signing

REVIEW_LINK_MAX_AGE = 45 * 24 * 3600
_REVIEW_SALT = "tertulia.journeys.review-link"


@dataclass(frozen=True, slots=True)
class ReviewGrant:
    store_id: int
    order_id: int
    customer_id: int


def review_token_make(*, store_id: int, order_id: int, customer_id: int) -> str:
    return signing.dumps([store_id, order_id, customer_id], salt=_REVIEW_SALT, compress=True)


def review_token_read(token: str, *, max_age: int = REVIEW_LINK_MAX_AGE) -> ReviewGrant | None:
    """The grant a review link carries, or None when it is forged, malformed or older than max_age."""
    try:
        store_id, order_id, customer_id = signing.loads(token, salt=_REVIEW_SALT, max_age=max_age)
    except (signing.BadSignature, ValueError, TypeError):
        return None
    if not all(isinstance(v, int) for v in (store_id, order_id, customer_id)):
        return None
    return ReviewGrant(store_id=store_id, order_id=order_id, customer_id=customer_id)
