"""`tertulia serve`: the production web server (gunicorn), configured from the environment."""

import os
import sys

from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError, connections

from tertulia.ops.server import (
    GunicornOptions,
    database_label,
    default_workers,
    format_bind,
    gunicorn_argv,
    pending_migrations,
    split_bind,
)


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    if not value.isdigit() or int(value) < 1:
        raise CommandError(f"{name} must be a positive whole number, not '{value}'.")
    return int(value)


class Command(BaseCommand):
    help = (
        "Run the web server for production: gunicorn with JSON access logs. Bind from --bind or "
        "$HOST/$PORT (default 0.0.0.0:8000), processes from --workers or $WEB_CONCURRENCY. "
        "Refuses to start on a database with unapplied migrations unless --migrate is given."
    )
    requires_system_checks: list = []  # checked below, after the clearer database message

    def add_arguments(self, parser):
        parser.add_argument("--bind", help="HOST:PORT to listen on (default $HOST:$PORT, or 0.0.0.0:8000).")
        parser.add_argument("--workers", type=int, help="Worker processes (default $WEB_CONCURRENCY, or by CPU count).")
        parser.add_argument("--threads", type=int, help="Threads per worker (default $GUNICORN_THREADS or 4; 1 = sync).")
        parser.add_argument("--timeout", type=int, help="Seconds before a silent worker is restarted (default 30).")
        parser.add_argument("--graceful-timeout", type=int, help="Seconds to finish requests on shutdown (default 30).")
        parser.add_argument("--migrate", action="store_true", help="Apply pending migrations before starting.")
        parser.add_argument("--no-access-log", action="store_true", help="Do not write a line per request.")
        parser.add_argument("--dry-run", action="store_true", help="Check everything and print the gunicorn command.")

    def handle(self, *args, **options):
        threads = options["threads"] or _env_int("GUNICORN_THREADS", 4)
        bind = options["bind"] or format_bind(os.environ.get("HOST") or "0.0.0.0", _env_int("PORT", 8000))  # noqa: S104 - a server for others to reach
        try:
            split_bind(bind)
        except ValueError as exc:
            raise CommandError(f"--bind: {exc}") from None
        gunicorn = GunicornOptions(
            bind=bind,
            workers=options["workers"] or _env_int("WEB_CONCURRENCY", default_workers(threads)),
            threads=threads,
            timeout=options["timeout"] or _env_int("GUNICORN_TIMEOUT", 30),
            graceful_timeout=options["graceful_timeout"] or _env_int("GUNICORN_GRACEFUL_TIMEOUT", 30),
            access_log=not options["no_access_log"],
            log_level=os.environ.get("LOG_LEVEL", "info").lower(),
        )
        self._check_database(migrate=options["migrate"])
        self.check(display_num_errors=False)
        argv = gunicorn_argv(gunicorn)
        if options["dry_run"]:
            self.stdout.write(" ".join(argv))
            return
        self.stderr.write(f"tertulia serve: {gunicorn.workers} workers x {gunicorn.threads} threads on {bind}")
        sys.stdout.flush()
        sys.stderr.flush()
        connections.close_all()
        # Become gunicorn, so signals from the process manager reach it directly.
        os.execv(sys.executable, argv)  # noqa: S606 - our own interpreter and fixed arguments

    def _check_database(self, *, migrate: bool) -> None:
        where = database_label()
        try:
            pending = pending_migrations()
        except DatabaseError as exc:
            raise CommandError(f"Cannot reach the database ({where}): {exc}".strip()) from None
        if not pending:
            return
        if not migrate:
            raise CommandError(
                f"The database ({where}) is not migrated: {len(pending)} migration(s) pending, first {pending[0]}. "
                "Run `tertulia migrate` first, or start with `tertulia serve --migrate`."
            )
        self.stderr.write(f"Applying {len(pending)} migration(s) to {where}...")
        call_command("migrate", interactive=False, verbosity=0)
