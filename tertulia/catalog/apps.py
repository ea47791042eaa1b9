from django.apps import AppConfig


class CatalogConfig(AppConfig):
    name = "tertulia.catalog"
    label = "catalog"
