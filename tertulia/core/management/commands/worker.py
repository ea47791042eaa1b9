"""`tertulia worker`: run background jobs until SIGINT or SIGTERM (see docs/worker.md)."""

import logging
import signal
import threading

from django.core.management.base import BaseCommand, CommandError

from tertulia.core.worker import run_worker

log = logging.getLogger("tertulia.worker")


class Command(BaseCommand):
    help = "Run due background jobs. SIGINT/SIGTERM stop it after the job in hand; a second signal stops it at once."

    def add_arguments(self, parser):
        parser.add_argument("--name", help="Worker name recorded on claimed jobs (default host:pid:random).")
        parser.add_argument("--concurrency", type=int, default=1, help="Claim loops run side by side in threads.")
        parser.add_argument("--poll-interval", type=float, default=1.0, help="Seconds to wait when nothing is due.")
        parser.add_argument("--once", action="store_true", help="Run what is due now, then exit.")
        parser.add_argument("--lease", type=float, default=None, help="Lease length in seconds (default 60).")
        parser.add_argument("--queue", action="append", dest="queues", help="Only run this queue (repeatable).")
        parser.add_argument("--no-dispatch", action="store_false", dest="dispatch",
                            help="Do not run the message dispatcher (channels.dispatch) in this worker.")
        parser.add_argument("--no-listen", action="store_false", dest="listen",
                            help="Do not run the listening connectors and the inbox sweep (listening.runner) here.")

    def handle(self, *args, **options):
        if options["concurrency"] < 1:
            raise CommandError("--concurrency must be at least 1")
        if options["poll_interval"] <= 0 or (options["lease"] is not None and options["lease"] <= 0):
            raise CommandError("--poll-interval and --lease must be positive")
        stop = threading.Event()

        def request_stop(signum, frame):
            log.info("stop requested; finishing the job in hand", extra={"signal": signal.Signals(signum).name})
            stop.set()
            # A second signal ends the process at once; the job in hand comes back when its lease expires.
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)

        previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            processed = run_worker(
                name=options["name"],
                stop=stop,
                poll_interval=options["poll_interval"],
                once=options["once"],
                concurrency=options["concurrency"],
                lease_seconds=options["lease"],
                queues=options["queues"],
                dispatch=options["dispatch"],
                listen=options["listen"],
            )
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        log.info("worker exited", extra={"processed": processed})
