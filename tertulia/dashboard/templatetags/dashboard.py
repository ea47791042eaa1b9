"""Template filters for the dashboard: translated code names and localised figures."""

from django import template

from tertulia.dashboard import formatting, labels
from tertulia.dashboard.selectors import Money

register = template.Library()


@register.filter
def label(code: str | None, table: str) -> str:
    return labels.label(table, code)


@register.filter
def money(value) -> str:
    """A Money, or any record with `total` and `currency` (a cart, an order)."""
    if value is None:
        return ""
    if not isinstance(value, Money):
        value = Money(value.total, value.currency or "")
    return formatting.format_money(value)


@register.filter
def percent(ratio: float) -> str:
    return formatting.format_percent(ratio)


@register.filter
def count(value: int) -> str:
    return formatting.format_count(value)
