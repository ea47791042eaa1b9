from django.apps import AppConfig


class InboxConfig(AppConfig):
    name = "tertulia.inbox"
    label = "inbox"
    verbose_name = "Team inbox"
