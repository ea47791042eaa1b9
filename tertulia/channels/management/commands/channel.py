"""`tertulia channel set|show|test|delete|rotate`: a store's provider accounts (SMTP, Twilio, Mastodon).

Secrets never go on the command line (shell history, `ps`): give them as environment variable names
(--secret-env auth_token=TWILIO_AUTH_TOKEN) or as a JSON object on standard input (--secrets-stdin).
Nothing this command prints contains a secret.
"""

import json

from django.core.management.base import BaseCommand, CommandError

from tertulia.channels.accounts import (
    PROVIDERS,
    channel_account_config,
    channel_account_delete,
    channel_account_describe,
    channel_account_set,
    channel_accounts_rotate,
)
from tertulia.channels.base import OutboundMessage, SendError
from tertulia.channels.credentials import CredentialsError
from tertulia.channels.models import ChannelAccount
from tertulia.channels.registry import adapter_for, adapter_from_account
from tertulia.core.commandline import key_values, option_value, secrets_from_options
from tertulia.core.errors import ApiError
from tertulia.core.models import Store

CHANNELS = sorted({spec.channel for spec in PROVIDERS.values()})






class Command(BaseCommand):
    help = "Configure a store's provider account per channel (email: smtp, sms: twilio, social_dm: mastodon)."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        set_ = sub.add_parser("set", help="Create or replace a store's account for a channel.")
        set_.add_argument("store")
        set_.add_argument("channel", choices=CHANNELS)
        set_.add_argument("--provider", required=True, choices=sorted(PROVIDERS))
        set_.add_argument("--setting", action="append", default=[], metavar="KEY=VALUE",
                          help="A non-secret setting (repeat): account_sid=AC..., from_number=+34..., base_url=...")
        set_.add_argument("--secret-env", action="append", default=[], metavar="KEY=ENVVAR",
                          help="A secret read from an environment variable (repeat): auth_token=TWILIO_AUTH_TOKEN")
        set_.add_argument("--secrets-stdin", action="store_true", help="Read the secrets as a JSON object from stdin.")
        set_.add_argument("--disabled", action="store_true", help="Keep the account but do not use it.")
        show = sub.add_parser("show", help="Show a store's accounts without their secrets.")
        show.add_argument("store")
        show.add_argument("channel", nargs="?", choices=CHANNELS)
        test = sub.add_parser("test", help="Check the account with its provider; with --to, send a test message.")
        test.add_argument("store")
        test.add_argument("channel", choices=CHANNELS)
        test.add_argument("--to", default="", help="Send a test message to this address, number or handle.")
        test.add_argument("--text", default="Tertulia: mensaje de prueba / test message.")
        delete = sub.add_parser("delete", help="Remove a store's account for a channel.")
        delete.add_argument("store")
        delete.add_argument("channel", choices=CHANNELS)
        sub.add_parser("rotate", help="Re-encrypt every account's secrets under the current SECRET_KEY.")

    def handle(self, *args, action: str, **options):
        if action == "rotate":
            try:
                count = channel_accounts_rotate()
            except CredentialsError as exc:
                raise CommandError(str(exc)) from None
            self.stdout.write(json.dumps({"rotated": count}))
            return
        store = Store.objects.filter(slug=options["store"]).first()
        if store is None:
            raise CommandError(f"No store '{options['store']}'.")
        if action == "set":
            self._set(store, options)
        elif action == "show":
            accounts = ChannelAccount.objects.for_store(store).order_by("channel")
            if options["channel"]:
                accounts = accounts.filter(channel=options["channel"])
            self.stdout.write(json.dumps({"store": store.slug,
                                          "accounts": [channel_account_describe(a) for a in accounts]}, indent=2))
        elif action == "delete":
            deleted = channel_account_delete(store=store, channel=options["channel"])
            self.stdout.write(json.dumps({"store": store.slug, "channel": options["channel"], "deleted": deleted}))
        else:
            self._test(store, options)

    def _set(self, store: Store, options) -> None:
        settings = {key: option_value(value) for key, value in key_values(options["setting"], "--setting")}
        secrets = secrets_from_options(secret_env=options["secret_env"], secrets_stdin=options["secrets_stdin"])
        try:
            account = channel_account_set(store=store, channel=options["channel"], provider=options["provider"],
                                          settings=settings, secrets=secrets, enabled=not options["disabled"])
        except ApiError as exc:
            problems = "; ".join(f"{d.field}: {d.message}" for d in exc.details)
            raise CommandError(f"{exc.message} {problems}".strip()) from None
        self.stdout.write(json.dumps({"store": store.slug, **channel_account_describe(account)}, indent=2))

    def _test(self, store: Store, options) -> None:
        channel = options["channel"]
        try:
            if options["to"]:
                adapter = adapter_for(store_id=store.pk, channel=channel)
                result = adapter.send(OutboundMessage(
                    delivery_id=0, store_id=store.pk, channel=channel, to=options["to"], text=options["text"],
                    subject="Tertulia: prueba / test" if channel == "email" else ""))
                report = {"sent": True, "provider": result.provider, "provider_message_id": result.provider_message_id,
                          "provider_status": result.provider_status}
            else:
                account = channel_account_config(store_id=store.pk, channel=channel)
                if account is None:
                    raise CommandError(f"Store '{store.slug}' has no enabled {channel} account; "
                                       "without one, --to shows where messages would go.")
                adapter = adapter_from_account(account)
                report = {"ok": True, **adapter.check()}
        except SendError as exc:
            raise CommandError(f"{type(exc).__name__} [{exc.code}]: {exc} {json.dumps(exc.response, default=str)}") from None
        except CredentialsError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(json.dumps(report, default=str))
