from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "tertulia.core"
    label = "core"
    verbose_name = "Tertulia core"
