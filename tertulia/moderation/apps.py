from django.apps import AppConfig


class ModerationConfig(AppConfig):
    name = "tertulia.moderation"
    label = "moderation"
