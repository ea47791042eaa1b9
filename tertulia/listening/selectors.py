"""Reads of listening."""

from tertulia.core.models import Store
from tertulia.listening.matching import Matcher, Term
from tertulia.listening.models import TrackedTerm


def terms_for_store(*, store: Store) -> list[Term]:
    rows = TrackedTerm.objects.for_store(store).order_by("id").values_list("id", "term", "kind", "exclude", "product_id")
    return [Term(term=t, kind=k, exclude=e, product_id=p, term_id=i) for i, t, k, e, p in rows]


def matcher_for_store(*, store: Store) -> Matcher:
    """The store's automaton, built from its terms (thousands of terms build in well under a second)."""
    return Matcher(terms_for_store(store=store))
