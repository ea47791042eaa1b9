"""Inbound webhook URLs of listening, mounted under /webhooks/."""

from django.urls import path

from tertulia.listening import views

urlpatterns = [
    path("listening/<slug:store_slug>/<slug:source_key>", views.inbound_webhook, name="listening_webhook"),
    path("email/<slug:store_slug>/<slug:source_key>", views.inbound_email, name="listening_email"),
]
