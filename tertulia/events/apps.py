from django.apps import AppConfig


class EventsConfig(AppConfig):
    name = "tertulia.events"
    label = "events"
