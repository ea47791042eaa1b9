from django.apps import AppConfig


class CustomersConfig(AppConfig):
    name = "tertulia.customers"
    label = "customers"
