"""`tertulia listening source|terms|mentions`: a store's listening sources (connectors), tracked terms and mentions.

Secrets never go on the command line (shell history, `ps`): give them as environment variable names
(--secret-env access_token=MASTODON_TOKEN) or as a JSON object on standard input (--secrets-stdin).
Nothing this command prints contains a secret, except the token of a pushed source (webhook, inbound
mail) when it is made, which is shown once.
"""

import json

from django.core.management.base import BaseCommand, CommandError

from tertulia.core.commandline import key_values, option_value, secrets_from_options
from tertulia.core.errors import ApiError
from tertulia.core.models import Store
from tertulia.listening.connectors import MODULES, spec_for
from tertulia.listening.models import Mention, Source, TermKind, TrackedTerm
from tertulia.listening.runner import source_claim, source_session_run
from tertulia.listening.services import tracked_term_add, tracked_term_remove, tracked_terms_sync_catalogue
from tertulia.listening.sources import (
    source_cursor_reset,
    source_delete,
    source_describe,
    source_set,
    source_webhook_token,
)


def _api_error(exc: ApiError) -> CommandError:
    problems = "; ".join(f"{d.field}: {d.message}" for d in exc.details)
    return CommandError(f"{exc.message} {problems}".strip())


class Command(BaseCommand):
    help = "Listening: a store's sources (connectors) with their health, its tracked terms, its mentions."

    def add_arguments(self, parser):
        top = parser.add_subparsers(dest="area", required=True)
        source = top.add_parser("source", help="Sources: Mastodon, Bluesky, X, RSS/Atom, inbound webhook, e-mail.")
        sub = source.add_subparsers(dest="action", required=True)
        set_ = sub.add_parser("set", help="Create or replace a source (nothing is saved when anything is invalid).")
        set_.add_argument("store")
        set_.add_argument("key", help="The store's name for the source: lower-case letters, digits, - and _.")
        set_.add_argument("--network", required=True, choices=sorted(MODULES))
        set_.add_argument("--name", default="")
        set_.add_argument("--setting", action="append", default=[], metavar="KEY=VALUE",
                          help='A setting (repeat); JSON values are read as JSON: hashtags=\'["tertulia"]\'')
        set_.add_argument("--secret-env", action="append", default=[], metavar="KEY=ENVVAR",
                          help="A secret read from an environment variable (repeat).")
        set_.add_argument("--secrets-stdin", action="store_true", help="Read the secrets as a JSON object from stdin.")
        set_.add_argument("--disabled", action="store_true", help="Keep the source but do not run it.")
        for name, text in (("list", "The store's sources and their health."),
                           ("show", "One source, its settings (not its secrets), cursor and health.")):
            parser_ = sub.add_parser(name, help=text)
            parser_.add_argument("store")
            if name == "show":
                parser_.add_argument("key")
        for name, text in (("delete", "Remove a source (its mentions stay)."),
                           ("reset-cursor", "Forget where the source stopped: the next session starts from now."),
                           ("token", "A new token for a pushed source (webhook, inbound mail), shown once."),
                           ("run", "Run one session of the source now and print how it went.")):
            parser_ = sub.add_parser(name, help=text)
            parser_.add_argument("store")
            parser_.add_argument("key")
        terms = top.add_parser("terms", help="Tracked terms.")
        tsub = terms.add_subparsers(dest="action", required=True)
        tlist = tsub.add_parser("list")
        tlist.add_argument("store")
        tadd = tsub.add_parser("add")
        tadd.add_argument("store")
        tadd.add_argument("term")
        tadd.add_argument("--kind", default=TermKind.KEYWORD, choices=TermKind.values)
        tadd.add_argument("--exclude", action="store_true", help="A post containing it is not a mention at all.")
        tremove = tsub.add_parser("remove")
        tremove.add_argument("store")
        tremove.add_argument("id", type=int)
        tsync = tsub.add_parser("sync", help="Product titles and SKUs of the catalogue become terms.")
        tsync.add_argument("store")
        mentions = top.add_parser("mentions", help="The newest mentions, one JSON object per line.")
        mentions.add_argument("store")
        mentions.add_argument("--limit", type=int, default=20)

    def handle(self, *args, area: str, action: str = "", **options):
        store = Store.objects.filter(slug=options["store"]).first()
        if store is None:
            raise CommandError(f"No store '{options['store']}'.")
        if area == "terms":
            return self._terms(store, action, options)
        if area == "mentions":
            if not 1 <= options["limit"] <= 1000:
                raise CommandError("--limit is between 1 and 1000.")
            for mention in Mention.objects.for_store(store).order_by("-posted_at", "-id")[:options["limit"]]:
                self.stdout.write(json.dumps({
                    "id": mention.pk, "network": mention.network, "kind": mention.kind, "url": mention.url,
                    "author": mention.author_handle, "posted_at": mention.posted_at.isoformat(), "text": mention.text,
                    "language": mention.language, "sentiment": mention.sentiment,
                    "sentiment_score": mention.sentiment_score, "intent": mention.intent,
                    "toxicity": mention.toxicity, "terms": mention.terms}, ensure_ascii=False))
            return None
        return self._source(store, action, options)

    def _source(self, store: Store, action: str, options) -> None:
        if action == "set":
            return self._set(store, options)
        if action == "list":
            rows = [source_describe(s) for s in Source.objects.for_store(store).order_by("key")]
            self.stdout.write(json.dumps({"store": store.slug, "sources": rows}, indent=2, default=str))
            return None
        source = Source.objects.for_store(store).filter(key=options["key"]).first()
        if source is None:
            raise CommandError(f"Store '{store.slug}' has no source '{options['key']}'.")
        if action == "show":
            self.stdout.write(json.dumps(source_describe(source), indent=2, default=str))
        elif action == "delete":
            self.stdout.write(json.dumps({"deleted": source_delete(store=store, key=source.key)}))
        elif action == "reset-cursor":
            self.stdout.write(json.dumps({"reset": source_cursor_reset(store=store, key=source.key)}))
        elif action == "token":
            if not spec_for(source.network).pushed and source.network != "email":
                raise CommandError(f"A {source.network} source is not pushed to; it has no token.")
            _source, token = source_webhook_token(store=store, key=source.key)
            self.stdout.write(json.dumps({"source": source.key, "token": token}))
        else:
            claimed = source_claim(worker="cli", lease=60, source_id=source.pk, due=False)
            if claimed is None:
                raise CommandError("The source is disabled or another worker is running it right now.")
            outcome = source_session_run(source=claimed, worker="cli", seconds=30)
            source.refresh_from_db()
            self.stdout.write(json.dumps({"outcome": outcome, **source_describe(source)["health"]}, default=str))
        return None

    def _set(self, store: Store, options) -> None:
        settings = {key: option_value(value) for key, value in key_values(options["setting"], "--setting")}
        secrets = secrets_from_options(secret_env=options["secret_env"], secrets_stdin=options["secrets_stdin"])
        try:
            source = source_set(store=store, network=options["network"], key=options["key"], name=options["name"],
                                settings=settings, secrets=secrets, enabled=not options["disabled"])
        except ApiError as exc:
            raise _api_error(exc) from None
        described = source_describe(source)
        if spec_for(source.network).pushed and "token" not in described["secrets_set"]:
            _source, token = source_webhook_token(store=store, key=source.key)
            described = {**source_describe(_source), "token": token}
        self.stdout.write(json.dumps({"store": store.slug, **described}, indent=2, default=str))

    def _terms(self, store: Store, action: str, options) -> None:
        if action == "list":
            for term in TrackedTerm.objects.for_store(store).order_by("kind", "term"):
                self.stdout.write(json.dumps({"id": term.pk, "term": term.term, "kind": term.kind,
                                              "exclude": term.exclude, "product_id": term.product_id},
                                             ensure_ascii=False))
        elif action == "add":
            try:
                term = tracked_term_add(store=store, term=options["term"], kind=options["kind"],
                                        exclude=options["exclude"])
            except ValueError as exc:
                raise CommandError(str(exc)) from None
            self.stdout.write(json.dumps({"id": term.pk, "term": term.term, "kind": term.kind, "exclude": term.exclude},
                                         ensure_ascii=False))
        elif action == "remove":
            self.stdout.write(json.dumps({"removed": tracked_term_remove(store=store, term_id=options["id"])}))
        else:
            self.stdout.write(json.dumps(tracked_terms_sync_catalogue(store=store)))
