"""`tertulia store create|list|show`: manage stores (tenants) from the command line."""

import json

from django.core.management.base import BaseCommand, CommandError

from tertulia.core.errors import ApiError
from tertulia.core.models import Store
from tertulia.core.services import store_create


class Command(BaseCommand):
    help = "Create and list stores. A new store gets its Shopify and WooCommerce webhook secrets."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        create = sub.add_parser("create", help="Create a store.")
        create.add_argument("slug")
        create.add_argument("--name", required=True)
        create.add_argument("--currency", default="EUR")
        create.add_argument("--language", default="es", choices=["es", "en"])
        create.add_argument("--timezone", default="Europe/Madrid")
        create.add_argument("--website", default="")
        sub.add_parser("list", help="List stores.")
        show = sub.add_parser("show", help="Show a store with its webhook secrets.")
        show.add_argument("slug")

    def handle(self, *args, action: str, **options):
        if action == "create":
            try:
                store = store_create(
                    slug=options["slug"], name=options["name"], currency=options["currency"].upper(),
                    language=options["language"], timezone_name=options["timezone"], website_url=options["website"],
                )
            except ApiError as exc:
                raise CommandError(exc.message) from None
            self.stdout.write(json.dumps(_describe(store), indent=2))
        elif action == "list":
            for store in Store.objects.order_by("slug"):
                self.stdout.write(f"{store.slug}\t{store.name}\t{store.currency}\t{store.timezone}")
        else:
            store = Store.objects.filter(slug=options["slug"]).first()
            if store is None:
                raise CommandError(f"No store '{options['slug']}'.")
            self.stdout.write(json.dumps(_describe(store), indent=2))


def _describe(store: Store) -> dict:
    return {
        "store": store.slug, "name": store.name, "currency": store.currency, "timezone": store.timezone,
        "shopify_webhook_path": f"/webhooks/shopify/{store.slug}",
        "woocommerce_webhook_path": f"/webhooks/woocommerce/{store.slug}",
        "shopify_secret": store.shopify_secret, "woocommerce_secret": store.woocommerce_secret,
    }
