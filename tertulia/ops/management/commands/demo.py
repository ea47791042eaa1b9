"""`tertulia demo`: a seeded demo store, the web server and the worker, on this machine, in one command."""

import logging
import os
import signal
import subprocess
import sys
import threading
import time

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import connections

from tertulia.core.models import Store
from tertulia.core.worker import run_worker
from tertulia.ops.credentials import CREDENTIALS_FILE, credentials_read, credentials_write
from tertulia.ops.demo_data import DEMO_SLUG, demo_store_seed
from tertulia.ops.demo_social import demo_social_seed, demo_social_start
from tertulia.ops.server import (
    GunicornOptions,
    base_url,
    format_bind,
    gunicorn_argv,
    port_available,
    probe_host,
    wait_healthy,
)
from tertulia.ops.services import DEMO_USERNAME, demo_access_ensure

logger = logging.getLogger("tertulia.demo")

LOOPBACK = {"127.0.0.1", "localhost", "::1"}
STARTUP_TIMEOUT = 60.0
SHUTDOWN_TIMEOUT = 30.0


def _worker_main(stop: threading.Event) -> None:
    """The in-process worker: runs scheduled work until `stop` is set."""
    try:
        run_worker(name=f"demo-{os.getpid()}", stop=stop, poll_interval=1.0)
    except Exception:
        logger.exception("the demo worker stopped with an error; the web server keeps running")
    finally:
        connections.close_all()


class Command(BaseCommand):
    help = (
        "Run the demo: a SQLite database under $TERTULIA_HOME (default ./.tertulia) seeded with a Spanish "
        "shop, gunicorn and the worker. Prints the URL, the staff login and the API key, and saves them to "
        "$TERTULIA_HOME/demo-credentials.json. A second run reuses the data. Ctrl-C stops everything."
    )

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1", help="Address to listen on (default 127.0.0.1).")
        parser.add_argument("--port", type=int, default=8000, help="Port to listen on (default 8000).")

    def handle(self, *args, host, port, **options):
        if not 0 < port < 65536:
            raise CommandError(f"--port must be between 1 and 65535, not {port}.")
        if not port_available(host, port):
            raise CommandError(f"Cannot listen on {format_bind(host, port)}: the port is in use or the address "
                               "is not on this machine. Try another --port.")
        home = settings.TERTULIA_HOME
        home.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        call_command("migrate", interactive=False, verbosity=0)
        store = Store.objects.filter(slug=DEMO_SLUG).first()
        if store is None:
            self.stdout.write("Seeding the demo store (first run)...")
            summary = demo_store_seed()
            store = summary.store
            self.stdout.write(f"Seeded '{store.name}' with {summary.events} events "
                              f"in {time.monotonic() - started:.1f}s.")
        else:
            self.stdout.write(f"Reusing the demo store '{store.name}' in {home}.")
        url = base_url(host, port)
        path = home / CREDENTIALS_FILE
        saved = credentials_read(path)
        access = demo_access_ensure(store=store, username=saved.get("username") or DEMO_USERNAME,
                                    password=saved.get("password"), api_key=saved.get("api_key"))
        demo_social_seed(store=store, user=get_user_model().objects.get(username=access.username))
        credentials = {
            "url": url, "username": access.username, "password": access.password, "store": store.slug,
            "api_key": access.api_key, "shopify_secret": store.shopify_secret,
            "woocommerce_secret": store.woocommerce_secret,
        }
        if credentials != saved:
            credentials_write(path, credentials)
        connections.close_all()
        code = self._run(host, port, credentials, path, store)
        if code:
            raise SystemExit(code)

    def _run(self, host: str, port: int, credentials: dict[str, str], path, store: Store) -> int:
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": os.environ.get("DJANGO_SETTINGS_MODULE", "tertulia.settings"),
            "TERTULIA_HOME": str(settings.TERTULIA_HOME),
            "TERTULIA_PARENT_PID": str(os.getpid()),
        }
        if "TERTULIA_PUBLIC_URL" not in os.environ:
            # Links in the demo's messages (tracking, unsubscribe, review) must reach this server,
            # in the gunicorn processes and in the in-process worker alike.
            public_url = f"http://{format_bind(probe_host(host), port)}"
            env["TERTULIA_PUBLIC_URL"] = public_url
            settings.TERTULIA_PUBLIC_URL = public_url
        if "ALLOWED_HOSTS" not in os.environ and host not in LOOPBACK:
            # Listening beyond this machine: let any name reach the demo (it is not a production setup).
            env["ALLOWED_HOSTS"] = "*"
        argv = gunicorn_argv(GunicornOptions(bind=format_bind(host, port), workers=2, threads=4,
                                             access_log=False, log_level="warning"))
        stop = threading.Event()
        interrupts = 0

        def on_signal(signum, frame):
            nonlocal interrupts
            interrupts += 1
            stop.set()
            if interrupts > 1 and server.poll() is None:
                server.kill()  # a second Ctrl-C means "now"

        # Gunicorn gets its own process group, so Ctrl-C in the terminal reaches only us and we
        # shut it down in order (worker first, then gunicorn) instead of racing it.
        server = subprocess.Popen(argv, env=env, process_group=0)  # noqa: S603 - our interpreter, fixed arguments
        previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        # The social networks' stand-ins run in this process; the worker's connectors hear them over HTTP and
        # WebSocket, exactly as they would hear the real platforms.
        social = demo_social_start(store=store)
        connections.close_all()
        worker = threading.Thread(target=_worker_main, args=(stop,), name="demo-worker", daemon=True)
        worker.start()
        failed = False
        try:
            probe = f"http://{format_bind(probe_host(host), port)}/healthz"
            if wait_healthy(probe, timeout=STARTUP_TIMEOUT,
                            alive=lambda: server.poll() is None, stop=stop.is_set):
                self._announce(credentials, path, social.console_url)
            elif not stop.is_set():
                failed = True
                self.stderr.write("The web server did not become healthy; stopping.")
            while not failed and not stop.wait(0.5):
                if server.poll() is not None:
                    failed = True
                    self.stderr.write(f"The web server exited unexpectedly (status {server.returncode}).")
        finally:
            stop.set()
            self.stdout.write("Stopping...")
            worker.join(SHUTDOWN_TIMEOUT)
            social.stop()
            if server.poll() is None:
                server.terminate()
                try:
                    server.wait(SHUTDOWN_TIMEOUT)
                except subprocess.TimeoutExpired:
                    server.kill()
                    server.wait()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        self.stdout.write("Stopped.")
        return 1 if failed else 0

    def _announce(self, credentials: dict[str, str], path, social_url: str) -> None:
        url = credentials["url"]
        self.stdout.write(self.style.SUCCESS(f"Tertulia demo ready at {url}/"))
        self.stdout.write(f"  Dashboard    {url}/app/  (user {credentials['username']}, "
                          f"password {credentials['password']})")
        self.stdout.write(f"  Sample shop  {url}/shop/{credentials['store']}/  (reviews widget on each product)")
        self.stdout.write(f"  Outbox       {url}/app/outbox/  (messages the journeys sent)")
        self.stdout.write(f"  Listening    {url}/app/listening/  (what people say, from a replayed stream)")
        self.stdout.write(f"  Inbox        {url}/app/inbox/  (answer them; replies go back to the sandbox)")
        self.stdout.write(f"  Sandbox      {social_url}  (local Mastodon, Bluesky, X, blog and mailbox)")
        self.stdout.write(f"  Admin        {url}/admin/")
        self.stdout.write(f"  API docs     {url}/api/v1/docs  (store '{credentials['store']}')")
        self.stdout.write(f"  API key      {credentials['api_key']}")
        self.stdout.write(f"  Saved in     {path}")
        self.stdout.write("Press Ctrl-C to stop.")
        sys.stdout.flush()
