"""`tertulia customer export|erase <id> --store SLUG`: a person's data rights from the command line."""

import sys
from pathlib import Path

import orjson
from django.core.management.base import BaseCommand, CommandError, CommandParser

from tertulia.core.errors import ApiError
from tertulia.core.models import Store
from tertulia.customers.privacy import customer_erase, customer_export


class Command(BaseCommand):
    help = "Export everything held on a person as JSON, or erase the person (GDPR / LOPDGDD)."

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True, metavar="{export,erase}")
        export = actions.add_parser("export", help="Write all data held on the person as JSON.")
        export.add_argument("customer_id", type=int)
        export.add_argument("--store", required=True, help="Slug of the store.")
        export.add_argument("--output", "-o", help="File to write (default: standard output).")
        erase = actions.add_parser("erase", help="Remove or anonymise the person's data; figures are kept.")
        erase.add_argument("customer_id", type=int)
        erase.add_argument("--store", required=True, help="Slug of the store.")
        erase.add_argument("--yes", action="store_true", help="Do not ask for confirmation.")

    def handle(self, *args, action: str, customer_id: int, store: str, **options) -> None:
        shop = Store.objects.filter(slug=store).first()
        if shop is None:
            raise CommandError(f"No store '{store}'.")
        try:
            if action == "export":
                self._export(shop, customer_id, options.get("output"))
            else:
                self._erase(shop, customer_id, confirmed=options["yes"])
        except ApiError as exc:
            raise CommandError(exc.message) from None

    def _export(self, store: Store, customer_id: int, output: str | None) -> None:
        data = orjson.dumps(customer_export(store=store, customer_id=customer_id),
                            default=str, option=orjson.OPT_INDENT_2) + b"\n"
        if output:
            Path(output).write_bytes(data)
            self.stderr.write(f"Wrote customer {customer_id} of {store.slug} to {output}.")
        else:
            self.stdout.write(data.decode(), ending="")

    def _erase(self, store: Store, customer_id: int, *, confirmed: bool) -> None:
        if not confirmed:
            if not sys.stdin.isatty():
                raise CommandError("Erasure cannot be undone; pass --yes to confirm when not at a terminal.")
            answer = input(f"Erase customer {customer_id} of {store.slug}? This cannot be undone. Type 'yes': ")
            if answer.strip().lower() != "yes":
                raise CommandError("Nothing erased.")
        result = customer_erase(store=store, customer_id=customer_id)
        self.stdout.write(orjson.dumps(result.as_dict(), default=str).decode())
