"""Stores that existed before journeys get the six default journeys (new stores get them from store_create)."""

import copy

from django.db import migrations
from django.utils import timezone


def ensure_defaults(apps, schema_editor):
    from tertulia.journeys.definitions import DEFAULTS

    Store = apps.get_model("core", "Store")
    Journey = apps.get_model("journeys", "Journey")
    JourneyRevision = apps.get_model("journeys", "JourneyRevision")
    moment = timezone.now()
    for store in Store.objects.all():
        existing = set(Journey.objects.filter(store=store).values_list("key", flat=True))
        for key, definition in DEFAULTS.items():
            if key in existing:
                continue
            journey = Journey.objects.create(store=store, key=key, enabled=True, definition=copy.deepcopy(definition),
                                             version=1, created_at=moment, updated_at=moment)
            JourneyRevision.objects.create(store=store, journey=journey, version=1, enabled=True,
                                           definition=journey.definition, changed_by="system", created_at=moment)


class Migration(migrations.Migration):

    dependencies = [
        ("journeys", "0001_initial"),
    ]

    operations = [
        migrations.RunPython(ensure_defaults, migrations.RunPython.noop),
    ]
