"""URLs of the store webhooks, mounted at /webhooks/ (a trailing slash pasted into a shop's settings works too)."""

from django.urls import re_path

from tertulia.events.webhooks.views import shopify_webhook, woocommerce_webhook

urlpatterns = [
    re_path(r"^shopify/(?P<store_slug>[-a-zA-Z0-9_]+)/?$", shopify_webhook, name="webhook-shopify"),
    re_path(r"^woocommerce/(?P<store_slug>[-a-zA-Z0-9_]+)/?$", woocommerce_webhook, name="webhook-woocommerce"),
]
