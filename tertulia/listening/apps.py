from django.apps import AppConfig


class ListeningConfig(AppConfig):
    name = "tertulia.listening"
    label = "listening"
