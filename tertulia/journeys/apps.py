from django.apps import AppConfig


class JourneysConfig(AppConfig):
    name = "tertulia.journeys"
    label = "journeys"
