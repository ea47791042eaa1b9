"""Provider callbacks for outbound messages, mounted at /webhooks/ (Twilio status callbacks)."""

from django.urls import re_path

from tertulia.channels.webhooks import twilio_status_callback

urlpatterns = [
    re_path(r"^twilio/(?P<store_slug>[-a-zA-Z0-9_]+)/status/?$", twilio_status_callback, name="webhook-twilio-status"),
]
