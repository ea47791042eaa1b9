"""`tertulia moderation train|policy`: train the classifiers (the shipped ones, or a store's own) and
show or change a store's moderation policy."""

import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from tertulia.core.errors import ApiError
from tertulia.core.models import Store
from tertulia.moderation.selectors import policy_get
from tertulia.moderation.services import policy_update, store_classifier_save
from tertulia.moderation.training import default_data_dir, train_models


class Command(BaseCommand):
    help = "Moderation: train the classifiers, show or change a store's policy."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        train = sub.add_parser("train", help="Train the spam and toxicity classifiers.")
        train.add_argument("--store", help="Retrain for this store (slug) from its moderators' decisions too; "
                                           "saved in the database and used for that store from then on.")
        train.add_argument("--data", type=Path, help="Training data directory (default: the repository's "
                                                     "tests/fixtures/moderation).")
        train.add_argument("--output", type=Path, help="Without --store: where to write spam.json and toxicity.json "
                                                       "(default: the package's classifiers directory).")
        train.add_argument("--epochs", type=int, default=250)
        show = sub.add_parser("policy", help="Show a store's policy, or change it with --set.")
        show.add_argument("store")
        show.add_argument("--set", dest="changes", help='JSON of the fields to change, e.g. '
                                                        '\'{"thresholds": {"rudeness": {"hold": 0.7}}}\'')
        show.add_argument("--by", default="cli")

    def handle(self, *args, action: str, **options):
        if action == "train":
            self._train(options)
        else:
            self._policy(options)

    def _store(self, slug: str) -> Store:
        store = Store.objects.filter(slug=slug).first()
        if store is None:
            raise CommandError(f"No store '{slug}'.")
        return store

    def _train(self, options) -> None:
        store = self._store(options["store"]) if options.get("store") else None
        data_dir = options.get("data") or default_data_dir()
        if options.get("data") and not data_dir.exists():
            raise CommandError(f"No training data at {data_dir}.")
        try:
            run = train_models(data_dir=data_dir if data_dir.exists() else None, store=store, epochs=options["epochs"])
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        if store is not None:
            examples = sum(run.counts.values())
            for model in (run.spam, run.toxicity):
                saved = store_classifier_save(store=store, classifier=model, examples=examples)
                self.stdout.write(f"{store.slug}: {model.name} v{saved.version} saved")
        else:
            output = options.get("output") or Path(__file__).resolve().parents[2] / "classifiers"
            output.mkdir(parents=True, exist_ok=True)
            for model in (run.spam, run.toxicity):
                (output / f"{model.name}.json").write_bytes(model.to_json())
                self.stdout.write(f"{model.name}: written to {output / (model.name + '.json')}")
        self.stdout.write("examples: " + json.dumps(run.counts))

    def _policy(self, options) -> None:
        store = self._store(options["store"])
        if options.get("changes"):
            try:
                changes = json.loads(options["changes"])
            except json.JSONDecodeError as exc:
                raise CommandError(f"--set is not JSON: {exc}") from None
            try:
                policy_update(store=store, changes=changes, changed_by=options["by"])
            except ApiError as exc:
                lines = [f"  {d.field}: {d.message} ({d.code})" for d in exc.details]
                raise CommandError("\n".join([exc.message, *lines])) from None
        self.stdout.write(json.dumps(policy_get(store=store).as_dict(), indent=2, ensure_ascii=False))
