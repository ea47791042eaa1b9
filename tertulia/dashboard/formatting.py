"""Numbers, money, percentages and durations written the way the active language writes them."""

from decimal import Decimal

from django.utils.formats import number_format
from django.utils.translation import get_language
from django.utils.translation import gettext as _

from tertulia.dashboard.selectors import Money

_SYMBOLS = {"EUR": "€", "USD": "$", "GBP": "£"}


def format_count(value: int) -> str:
    return number_format(value, force_grouping=True)


def format_money(money: Money) -> str:
    amount = number_format(Decimal(money.amount), decimal_pos=2, force_grouping=True)
    symbol = _SYMBOLS.get(money.currency)
    if symbol is None:
        return f"{amount}\u00a0{money.currency}".strip()
    # Spanish writes the symbol after the amount with a space ("1.234,50 €"), English before it ("€1,234.50").
    if (get_language() or "es").startswith("en"):
        return f"{symbol}{amount}"
    return f"{amount}\u00a0{symbol}"


def format_percent(ratio: float) -> str:
    number = number_format(ratio * 100, decimal_pos=1)
    if (get_language() or "es").startswith("en"):
        return f"{number}%"
    return f"{number}\u00a0%"


def format_duration(seconds: float | None) -> str:
    """A time span in its largest readable unit: 45 s, 12 min, 5 h, 3 days ("—" for none)."""
    if seconds is None:
        return "—"
    seconds = max(float(seconds), 0.0)
    if seconds < 90:
        return _("%(n)s s") % {"n": format_count(round(seconds))}
    if seconds < 90 * 60:
        return _("%(n)s min") % {"n": format_count(round(seconds / 60))}
    if seconds < 48 * 3600:
        return _("%(n)s h") % {"n": format_count(round(seconds / 3600))}
    return _("%(n)s days") % {"n": format_count(round(seconds / 86400))}
