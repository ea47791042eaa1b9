"""`tertulia apikey create|list|revoke`: a store's API keys; the secret is printed once and never again."""

from django.core.management.base import BaseCommand, CommandError

from tertulia.core.errors import ApiError
from tertulia.core.models import ApiKey, ApiKeyScope, Store
from tertulia.core.services import api_key_create, api_key_revoke


class Command(BaseCommand):
    help = "Issue, list and revoke a store's API keys."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        create = sub.add_parser("create", help="Issue a key and print its secret once.")
        create.add_argument("--store", required=True)
        create.add_argument("--name", required=True)
        create.add_argument("--scope", choices=ApiKeyScope.values, default=ApiKeyScope.READ_WRITE)
        listing = sub.add_parser("list", help="List a store's keys (never their secrets).")
        listing.add_argument("--store", required=True)
        revoke = sub.add_parser("revoke", help="Revoke a key by id; requests with it get 401 at once.")
        revoke.add_argument("key_id", type=int)
        revoke.add_argument("--store", required=True)

    def handle(self, *args, action: str, store: str, **options):
        found = Store.objects.filter(slug=store).first()
        if found is None:
            raise CommandError(f"No store '{store}'.")
        if action == "create":
            try:
                issued = api_key_create(store=found, name=options["name"], scope=options["scope"])
            except ApiError as exc:
                raise CommandError(exc.message) from None
            self.stderr.write(f"Key {issued.key.pk} ({issued.key.scope}) for {found.slug}. Keep the secret now: "
                              "it is stored hashed and cannot be shown again.")
            self.stdout.write(issued.secret)
        elif action == "list":
            for key in ApiKey.objects.for_store(found).order_by("id"):
                state = f"revoked {key.revoked_at:%Y-%m-%d %H:%M}" if key.revoked_at else "active"
                used = f"{key.last_used_at:%Y-%m-%d %H:%M}" if key.last_used_at else "never"
                self.stdout.write(f"{key.pk}\t{key.name}\t{key.scope}\t{ApiKey.PREFIX}{key.lookup}…\t{state}\tlast used {used}")
        else:
            if not ApiKey.objects.for_store(found).filter(pk=options["key_id"]).exists():
                raise CommandError(f"Store '{found.slug}' has no key {options['key_id']}.")
            api_key_revoke(store=found, key_id=options["key_id"])
            self.stdout.write(f"Key {options['key_id']} revoked.")
