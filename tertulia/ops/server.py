"""Running the web tier: gunicorn command lines, port checks, waiting for /healthz, pending migrations."""

import os
import socket
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.migrations.executor import MigrationExecutor

WSGI_APP = "tertulia.wsgi:application"
GUNICORN_CONFIG = "python:tertulia.ops.gunicorn_conf"


@dataclass(frozen=True, slots=True)
class GunicornOptions:
    bind: str
    workers: int
    threads: int = 4
    timeout: int = 30
    graceful_timeout: int = 30
    keepalive: int = 5
    max_requests: int = 1000
    access_log: bool = True
    log_level: str = "info"


def gunicorn_argv(options: GunicornOptions) -> list[str]:
    argv = [
        sys.executable, "-m", "gunicorn", WSGI_APP,
        "--config", GUNICORN_CONFIG,
        "--bind", options.bind,
        "--workers", str(options.workers),
        "--threads", str(options.threads),
        "--worker-class", "gthread" if options.threads > 1 else "sync",
        "--timeout", str(options.timeout),
        "--graceful-timeout", str(options.graceful_timeout),
        "--keep-alive", str(options.keepalive),
        "--log-level", options.log_level,
        "--error-logfile", "-",
    ]
    if options.max_requests:
        # Recycling workers now and then bounds slow memory growth; jitter keeps them from restarting together.
        argv += ["--max-requests", str(options.max_requests), "--max-requests-jitter", str(options.max_requests // 10)]
    if options.access_log:
        argv += ["--access-logfile", "-"]
    return argv


def default_workers(threads: int) -> int:
    """Processes for this machine: gthread workers each serve several requests, so fewer are needed."""
    cores = os.cpu_count() or 1
    return min(cores + 1, 9) if threads > 1 else min(2 * cores + 1, 17)


def split_bind(bind: str) -> tuple[str, int]:
    host, _, port = bind.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"'{bind}' is not HOST:PORT.")
    return host.strip("[]"), int(port)


def format_bind(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def probe_host(host: str) -> str:
    """Where to reach a server bound to `host` from this machine."""
    if host in ("0.0.0.0", ""):  # noqa: S104 - naming the wildcard, not binding to it
        return "127.0.0.1"
    if host == "::":
        return "::1"
    return host


def base_url(host: str, port: int) -> str:
    reachable = probe_host(host)
    shown = "localhost" if reachable == "127.0.0.1" and host != "127.0.0.1" else reachable
    return f"http://{format_bind(shown, port)}"


def port_available(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def wait_healthy(url: str, *, timeout: float, alive: Callable[[], bool], stop: Callable[[], bool]) -> bool:
    """Poll `url` until it answers 200; give up when the server dies, we are told to stop, or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive() or stop():
            return False
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - our own local URL
                if response.status == 200:
                    return True
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            pass
        time.sleep(0.2)
    return False


def pending_migrations(alias: str = DEFAULT_DB_ALIAS) -> list[str]:
    """Migrations not yet applied to the database, as 'app.name'."""
    connection = connections[alias]
    executor = MigrationExecutor(connection)
    plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    return [f"{migration.app_label}.{migration.name}" for migration, backwards in plan if not backwards]


def database_label(alias: str = DEFAULT_DB_ALIAS) -> str:
    config = settings.DATABASES[alias]
    if config["ENGINE"].endswith("sqlite3"):
        return f"SQLite at {config['NAME']}"
    return f"{connections[alias].vendor} database '{config.get('NAME')}' on {config.get('HOST') or 'localhost'}"
