"""Dashboard pages of the moderation area, mounted under /app/ in the dashboard namespace."""

from django.urls import path

from tertulia.dashboard import views_moderation

urlpatterns: list = [
    path("moderation/", views_moderation.moderation, name="moderation"),
    path("moderation/decide/", views_moderation.moderation_decide, name="moderation_decide"),
]
