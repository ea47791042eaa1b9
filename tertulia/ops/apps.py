"""App config for the operations commands (no models)."""

from django.apps import AppConfig


class OpsConfig(AppConfig):
    name = "tertulia.ops"
    label = "ops"
    verbose_name = "Tertulia operations"
