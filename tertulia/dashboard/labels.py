"""Translated names for the codes stored in the database (event types, statuses, channels, roles)."""

from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

EVENT_TYPES = {
    "category_upserted": _("Category updated"),
    "product_upserted": _("Product updated"),
    "customer_upserted": _("Profile updated"),
    "consent_changed": _("Consent changed"),
    "cart_updated": _("Cart updated"),
    "checkout_started": _("Checkout started"),
    "order_placed": _("Order placed"),
    "order_fulfilled": _("Order fulfilled"),
    "order_delivered": _("Order delivered"),
    "order_cancelled": _("Order cancelled"),
}

CART_STATUSES = {
    "open": pgettext_lazy("cart", "Open"),
    "emptied": pgettext_lazy("cart", "Emptied"),
    "converted": pgettext_lazy("cart", "Converted to an order"),
}

ORDER_STATUSES = {
    "placed": pgettext_lazy("order", "Placed"),
    "fulfilled": pgettext_lazy("order", "Fulfilled"),
    "delivered": pgettext_lazy("order", "Delivered"),
    "cancelled": pgettext_lazy("order", "Cancelled"),
}

CONSENT_STATUSES = {
    "subscribed": _("Subscribed"),
    "unsubscribed": _("Unsubscribed"),
    "pending_confirmation": _("Pending confirmation"),
    None: _("Not asked"),
}

CHANNELS = {
    "email": _("E-mail"),
    "sms": _("SMS"),
    "social_dm": _("Social direct message"),
}

IDENTITY_KINDS = {
    "email": _("E-mail"),
    "phone": _("Phone"),
    "external": _("Store customer id"),
    "mastodon": "Mastodon",
    "bluesky": "Bluesky",
    "x": "X",
    "instagram": "Instagram",
    "facebook": "Facebook",
    "tiktok": "TikTok",
}

ROLES = {
    "owner": _("Owner"),
    "manager": _("Manager"),
    "community_manager": _("Community manager"),
    "agent": _("Agent"),
    "moderator": _("Moderator"),
    "analyst": _("Analyst"),
}

TIMELINE_KINDS = {
    "event": _("Event"),
    "cart": _("Cart"),
    "order": _("Order"),
    "consent": _("Consent"),
}

_TABLES = {
    "event": EVENT_TYPES,
    "cart": CART_STATUSES,
    "order": ORDER_STATUSES,
    "consent": CONSENT_STATUSES,
    "channel": CHANNELS,
    "identity": IDENTITY_KINDS,
    "role": ROLES,
    "kind": TIMELINE_KINDS,
}


def label(table: str, code: str | None) -> str:
    """The translated name of `code`; an unknown code (added by a newer version) shows as itself."""
    return str(_TABLES[table].get(code, code or ""))
