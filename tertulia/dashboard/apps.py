from django.apps import AppConfig


class DashboardConfig(AppConfig):
    name = "tertulia.dashboard"
    label = "dashboard"
