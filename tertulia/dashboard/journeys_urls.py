"""Dashboard pages of the journeys area, mounted under /app/ in the dashboard namespace."""

from django.urls import path

from tertulia.dashboard import views_journeys

urlpatterns: list = [
    path("journeys/", views_journeys.journeys, name="journeys"),
    path("journeys/<slug:key>/", views_journeys.journey, name="journey"),
    path("journeys/<slug:key>/preview/", views_journeys.journey_preview, name="journey_preview"),
    path("outbox/", views_journeys.outbox, name="outbox"),
    path("outbox/<int:message_id>/", views_journeys.outbox_message, name="outbox_message"),
]
