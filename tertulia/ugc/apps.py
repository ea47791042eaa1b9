from django.apps import AppConfig


class UgcConfig(AppConfig):
    name = "tertulia.ugc"
    label = "ugc"
