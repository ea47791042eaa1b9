"""`tertulia import products|customers FILE.csv --store SLUG`: CSV import with a report of rejected rows."""

import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from tertulia.core.models import Store
from tertulia.ops.services import IMPORT_KINDS, ImportReport, UnusableInput, csv_import

STRICT_EXIT_CODE = 3


class Command(BaseCommand):
    help = (
        "Import products or customers from a CSV file into a store. Each row becomes a native event "
        "validated like the API; rejected rows are listed (line, field, reason) and not stored. "
        "Re-running the same file stores nothing twice. Columns: see docs/cli.md."
    )

    def add_arguments(self, parser):
        parser.add_argument("kind", choices=IMPORT_KINDS)
        parser.add_argument("file", type=Path)
        parser.add_argument("--store", required=True, help="Slug of the store to import into.")
        parser.add_argument("--report", type=Path, help="Also write the report, rejected rows included, as JSON here.")
        parser.add_argument("--strict", action="store_true",
                            help=f"Exit with status {STRICT_EXIT_CODE} when any row was rejected.")
        parser.add_argument("--batch-size", type=int, default=500, help="Events stored per transaction.")
        parser.add_argument("--encoding", default="utf-8-sig", help="Text encoding of the file (default UTF-8).")
        parser.add_argument("--no-progress", action="store_true", help="Do not draw the progress bar.")

    def handle(self, *args, kind, file, store, report, strict, batch_size, encoding, no_progress, **options):
        target = Store.objects.filter(slug=store).first()
        if target is None:
            known = ", ".join(Store.objects.values_list("slug", flat=True)[:20]) or "none yet"
            raise CommandError(f"Unknown store '{store}'. Stores: {known}.")
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1.")
        try:
            result = csv_import(store=target, kind=kind, path=file, batch_size=batch_size, encoding=encoding,
                                progress=not no_progress and options["verbosity"] > 0)
        except UnusableInput as exc:
            raise CommandError(str(exc)) from None
        self._print(result)
        if report:
            report.parent.mkdir(parents=True, exist_ok=True)
            report.write_text(json.dumps(result.as_dict(), ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
            self.stdout.write(f"Report written to {report}")
        if strict and result.rejected:
            # CommandError always exits 1 (unusable input); a distinct status tells scripts "rows were rejected".
            raise SystemExit(STRICT_EXIT_CODE)

    def _print(self, result: ImportReport) -> None:
        if result.ignored_columns:
            self.stderr.write(f"Ignored unknown column(s): {', '.join(result.ignored_columns)}")
        if result.problems:
            self.stdout.write(f"Rejected rows ({result.rejected}):")
            self.stdout.write(_table(result))
        summary = (
            f"{result.kind}: {result.rows} rows read, {result.imported} imported, {result.unchanged} unchanged "
            f"(already imported), {result.rejected} rejected; {result.events_created} events stored, "
            f"{result.events_duplicate} duplicates."
        )
        self.stdout.write(self.style.WARNING(summary) if result.rejected else self.style.SUCCESS(summary))


def _table(result: ImportReport) -> str:
    rows = [("line", "field", "code", "reason")]
    rows += [(str(p.line), p.field or "-", p.code, p.message) for p in result.problems]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = []
    for position, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:3])) + "  " + row[3])
        if position == 0:
            lines.append("  ".join("-" * width for width in widths) + "  " + "-" * 6)
    return "\n".join(lines)
