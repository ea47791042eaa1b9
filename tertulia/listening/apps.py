from django.apps import AppConfig


class ListeningConfig(AppConfig):
    name = "tertulia.listening"
    label = "listening"

    def ready(self) -> None:
        from tertulia.core.metrics import collector_register
        from tertulia.listening.metrics import InboxCollector, ListeningCollector

        collector_register(ListeningCollector())
        collector_register(InboxCollector())
