from django.apps import AppConfig


class ChannelsConfig(AppConfig):
    name = "tertulia.channels"
    label = "channels"
