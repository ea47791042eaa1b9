"""Numbers, money and percentages written the way the active language writes them."""

from decimal import Decimal

from django.utils.formats import number_format
from django.utils.translation import get_language

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
