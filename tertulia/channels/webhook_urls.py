"""Provider callbacks for outbound messages, mounted at /webhooks/ (Twilio status callbacks and incoming messages)."""

from django.urls import re_path

from tertulia.channels.webhooks import twilio_inbound_message, twilio_status_callback

urlpatterns = [
    re_path(r"^twilio/(?P<store_slug>[-a-zA-Z0-9_]+)/status/?$", twilio_status_callback, name="webhook-twilio-status"),
    re_path(r"^twilio/(?P<store_slug>[-a-zA-Z0-9_]+)/inbound/?$", twilio_inbound_message, name="webhook-twilio-inbound"),
]
