"""Dashboard pages of listening, mounted under /app/ in the dashboard namespace."""

from django.urls import path

from tertulia.dashboard import views_listening

urlpatterns: list = [
    path("listening/", views_listening.listening, name="listening"),
    path("listening/mentions/<int:mention_id>/inbox/", views_listening.mention_to_inbox, name="listening_to_inbox"),
    path("listening/alerts/<int:alert_id>/acknowledge/", views_listening.alert_ack, name="listening_alert_ack"),
    path("listening/sources/", views_listening.listening_sources, name="listening_sources"),
    path("listening/terms/", views_listening.listening_terms, name="listening_terms"),
    path("listening/terms/add/", views_listening.term_add, name="listening_term_add"),
    path("listening/terms/sync/", views_listening.terms_sync, name="listening_terms_sync"),
    path("listening/terms/<int:term_id>/remove/", views_listening.term_remove, name="listening_term_remove"),
]
