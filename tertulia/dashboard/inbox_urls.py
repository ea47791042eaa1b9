"""Dashboard pages of the team inbox, mounted under /app/ in the dashboard namespace."""

from django.urls import path

from tertulia.dashboard import views_inbox

urlpatterns: list = [
    path("inbox/", views_inbox.inbox, name="inbox"),
    path("inbox/<int:conversation_id>/", views_inbox.conversation_view, name="inbox_conversation"),
    path("inbox/<int:conversation_id>/reply/", views_inbox.reply, name="inbox_reply"),
    path("inbox/<int:conversation_id>/note/", views_inbox.note, name="inbox_note"),
    path("inbox/<int:conversation_id>/assign/", views_inbox.assign, name="inbox_assign"),
    path("inbox/<int:conversation_id>/status/", views_inbox.status, name="inbox_status"),
    path("inbox/<int:conversation_id>/priority/", views_inbox.priority, name="inbox_priority"),
    path("inbox/<int:conversation_id>/presence/", views_inbox.presence, name="inbox_presence"),
    path("inbox/times/", views_inbox.response_times, name="inbox_times"),
    path("inbox/canned/", views_inbox.canned_list, name="inbox_canned"),
    path("inbox/canned/new/", views_inbox.canned_edit, name="inbox_canned_new"),
    path("inbox/canned/<int:canned_reply_id>/", views_inbox.canned_edit, name="inbox_canned_edit"),
    path("inbox/canned/<int:canned_reply_id>/delete/", views_inbox.canned_delete, name="inbox_canned_delete"),
    path("inbox/teams/", views_inbox.teams, name="inbox_teams"),
    path("inbox/teams/<int:team_id>/", views_inbox.teams, name="inbox_team"),
    path("inbox/settings/", views_inbox.inbox_settings, name="inbox_settings"),
]
