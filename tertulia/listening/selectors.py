"""Reads of listening: terms and the store's matcher."""

import threading
import time

from django.db.models import Count, Max

from tertulia.core.models import Store
from tertulia.listening.matching import Matcher, Term
from tertulia.listening.models import TrackedTerm


def terms_for_store(*, store: Store | int) -> list[Term]:
    rows = TrackedTerm.objects.for_store(store).order_by("id").values_list("id", "term", "kind", "exclude", "product_id")
    return [Term(term=t, kind=k, exclude=e, product_id=p, term_id=i) for i, t, k, e, p in rows]


def matcher_for_store(*, store: Store) -> Matcher:
    """The store's automaton, built from its terms (thousands of terms build in well under a second)."""
    return Matcher(terms_for_store(store=store))


_MATCHERS: dict[int, tuple[tuple, float, Matcher]] = {}
_MATCHERS_LOCK = threading.Lock()
MATCHER_RECHECK_SECONDS = 5.0


def _terms_version(store_id: int) -> tuple:
    # Terms are only ever added or deleted (never edited), so their count and highest id say when they changed.
    row = TrackedTerm.objects.for_store(store_id).aggregate(n=Count("id"), top=Max("id"))
    return (row["n"], row["top"])


def matcher_cached(*, store_id: int) -> Matcher:
    """The store's automaton, rebuilt when its terms changed; looked at again at most every few seconds,
    so a busy stream costs no query per post (thread-safe; one cache per process)."""
    moment = time.monotonic()
    with _MATCHERS_LOCK:
        entry = _MATCHERS.get(store_id)
    if entry is not None and moment - entry[1] < MATCHER_RECHECK_SECONDS:
        return entry[2]
    version = _terms_version(store_id)
    if entry is not None and entry[0] == version:
        matcher = entry[2]
    else:
        matcher = Matcher(terms_for_store(store=store_id))
    with _MATCHERS_LOCK:
        _MATCHERS[store_id] = (version, moment, matcher)
    return matcher


def matchers_forget() -> None:
    with _MATCHERS_LOCK:
        _MATCHERS.clear()
