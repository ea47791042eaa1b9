"""`tertulia journeys list|show|set|sweep`: a store's journeys from the command line.

`set` takes the same changes as PATCH /api/v1/journeys/{key} (a JSON object), validated and versioned
by `journey_update`; `sweep` runs the trigger sweep once (the worker runs it every second).
"""

import json

from django.core.management.base import BaseCommand, CommandError

from tertulia.core.errors import ApiError
from tertulia.core.models import Store
from tertulia.journeys.definitions import journey_keys, journey_update, journeys_ensure_defaults
from tertulia.journeys.triggers import triggers_sweep


class Command(BaseCommand):
    help = "List, show, change and sweep a store's journeys (abandoned cart, thank you, review, referral, welcome, win-back)."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        listing = sub.add_parser("list", help="The store's journeys: key, on/off, version, steps.")
        listing.add_argument("store")
        show = sub.add_parser("show", help="One journey's definition as JSON.")
        show.add_argument("store")
        show.add_argument("key", choices=journey_keys())
        change = sub.add_parser("set", help="Change a journey: a JSON object as in PATCH /api/v1/journeys/{key}.")
        change.add_argument("store")
        change.add_argument("key", choices=journey_keys())
        change.add_argument("changes", help='e.g. \'{"enabled": false}\' or \'{"trigger": {"delay_seconds": 900}}\'')
        sweep = sub.add_parser("sweep", help="Enroll everyone whose trigger moment has come, now (all stores by default).")
        sweep.add_argument("store", nargs="?")

    def handle(self, *args, action: str, **options):
        store = None
        if options.get("store"):
            store = Store.objects.filter(slug=options["store"]).first()
            if store is None:
                raise CommandError(f"No store '{options['store']}'.")
        if action == "sweep":
            self.stdout.write(json.dumps({"enrolled": triggers_sweep(store=store, full=True)}))
            return
        journeys = {j.key: j for j in journeys_ensure_defaults(store=store)}
        if action == "list":
            for key in journey_keys():
                journey = journeys[key]
                steps = ", ".join(f"{s['key']}:{s['channel']}@{s['delay_seconds']}s"
                                  for s in journey.definition.get("steps", []))
                self.stdout.write(f"{key:17} {'on ' if journey.enabled else 'off'} v{journey.version:<3} {steps}")
        elif action == "show":
            journey = journeys[options["key"]]
            self.stdout.write(json.dumps({"key": journey.key, "enabled": journey.enabled, "version": journey.version,
                                          "definition": journey.definition}, indent=2, ensure_ascii=False))
        else:
            try:
                changes = json.loads(options["changes"])
            except ValueError as exc:
                raise CommandError(f"changes: not JSON ({exc}).") from None
            try:
                journey = journey_update(store=store, key=options["key"], changes=changes, changed_by="cli")
            except ApiError as error:
                problems = "; ".join(f"{d.field or '(body)'}: {d.message}" for d in error.details)
                raise CommandError(f"{error.message} {problems}") from None
            self.stdout.write(json.dumps({"key": journey.key, "enabled": journey.enabled, "version": journey.version}))
