"""Reads on the event log."""

from collections.abc import Sequence

from django.db.models import QuerySet

from tertulia.core.models import Store
from tertulia.events.models import Event


def events_about(*, store: Store, customer_ids: Sequence[int]) -> QuerySet[Event]:
    """Every event tied to these profiles, oldest first (the person's timeline)."""
    return Event.objects.for_store(store).filter(customer_id__in=customer_ids).order_by("occurred_at", "id")
