from django.apps import AppConfig


class CommerceConfig(AppConfig):
    name = "tertulia.commerce"
    label = "commerce"
