"""Badges of the top navigation (open alerts; unread notifications and conversations past their SLA)."""

from django import template

from tertulia.inbox import selectors as inbox_selectors
from tertulia.listening import selectors as listening_selectors

register = template.Library()


@register.simple_tag
def inbox_badge(store, user) -> dict[str, int]:
    unread = inbox_selectors.unread_count(store=store, user=user)
    breaching = inbox_selectors.breaching_count(store=store)
    return {"unread": unread, "breaching": breaching, "total": unread + breaching}


@register.simple_tag
def listening_badge(store) -> int:
    return listening_selectors.alerts_unacknowledged_count(store=store)
