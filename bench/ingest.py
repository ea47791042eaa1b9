"""Ingestion benchmark: 200,000 cart_updated/order_placed events in batches of 500 over 4 connections.

    python bench/ingest.py                       # SQLite in a temporary TERTULIA_HOME, server started here
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench python bench/ingest.py
    python bench/ingest.py --url http://127.0.0.1:8000 --api-key tk_...   # target a running server

Starts `tertulia serve` (gunicorn) unless --url is given, posts every batch, then checks that each
event was stored exactly once (answers add up, the database holds one row per client id, and a
replayed batch is reported as duplicates) and prints events per second.
"""

import argparse
import http.client
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from datetime import UTC, datetime, timedelta

import orjson

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def make_batches(total: int, batch_size: int, run: str) -> list[bytes]:
    """Realistic traffic: carts updated a few times, a third of them ordered; 20,000 shoppers."""
    rng = random.Random(7)
    start = datetime.now(UTC) - timedelta(hours=20)
    events = []
    cart_no = 0
    open_carts: list[tuple[int, str]] = []
    while len(events) < total:
        if open_carts and rng.random() < 0.25:
            cart, email = open_carts.pop(rng.randrange(len(open_carts)))
            kind = "order_placed"
            data = {"order_id": f"o-{run}-{cart}", "cart_id": f"c-{run}-{cart}", "customer": {"email": email},
                    "items": [{"sku": f"SKU-{cart % 50}", "quantity": 1, "price": "19.90"}],
                    "total": "19.90", "currency": "EUR"}
        else:
            if open_carts and rng.random() < 0.5:
                cart, email = open_carts[rng.randrange(len(open_carts))]
            else:
                cart_no += 1
                cart, email = cart_no, f"shopper{rng.randrange(20000)}@example.com"
                open_carts.append((cart, email))
            quantity = rng.randint(1, 3)
            data = {"cart_id": f"c-{run}-{cart}", "customer": {"email": email},
                    "items": [{"sku": f"SKU-{cart % 50}", "quantity": quantity, "price": "19.90"}],
                    "total": f"{19.90 * quantity:.2f}", "currency": "EUR",
                    "recovery_url": f"https://tienda.example/cart/{cart}"}
            kind = "cart_updated"
        stamp = start + timedelta(milliseconds=len(events) * 300)
        events.append({"id": f"{run}-{len(events)}", "type": kind,
                       "occurred_at": stamp.isoformat().replace("+00:00", "Z"), "data": data})
    return [orjson.dumps({"events": events[i : i + batch_size]}) for i in range(0, total, batch_size)]


class Poster:
    def __init__(self, url: str, api_key: str):
        parsed = urllib.parse.urlparse(url)
        self.host, self.port = parsed.hostname, parsed.port or 80
        self.headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}
        self.connection: http.client.HTTPConnection | None = None

    def post(self, body: bytes) -> dict:
        for attempt in range(3):
            if self.connection is None:
                self.connection = http.client.HTTPConnection(self.host, self.port, timeout=120)
            try:
                self.connection.request("POST", "/api/v1/events", body, self.headers)
                response = self.connection.getresponse()
                payload = response.read()
                if response.getheader("Connection", "").lower() == "close":
                    self.connection.close()
                    self.connection = None
            except (ConnectionError, http.client.HTTPException):
                self.connection = None
                if attempt == 2:
                    raise
                continue
            if response.status != 200:
                raise RuntimeError(f"HTTP {response.status}: {payload[:500]!r}")
            return orjson.loads(payload)
        raise RuntimeError("unreachable")


def run_load(url: str, api_key: str, batches: list[bytes], connections: int) -> tuple[float, int, int]:
    queue = list(enumerate(batches))
    lock = threading.Lock()
    totals = {"accepted": 0, "duplicates": 0}
    failures: list[BaseException] = []

    def work() -> None:
        poster = Poster(url, api_key)
        while True:
            with lock:
                if not queue or failures:
                    return
                _, body = queue.pop(0)
            try:
                answer = poster.post(body)
            except BaseException as exc:  # noqa: BLE001 - reported below
                failures.append(exc)
                return
            with lock:
                totals["accepted"] += answer["accepted"]
                totals["duplicates"] += answer["duplicates"]

    threads = [threading.Thread(target=work) for _ in range(connections)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    if failures:
        raise failures[0]
    return elapsed, totals["accepted"], totals["duplicates"]


def tertulia(*args: str, env: dict) -> str:
    return subprocess.run([sys.executable, "-m", "tertulia", *args], env=env, check=True, capture_output=True,
                          text=True, cwd=ROOT).stdout


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url")
    parser.add_argument("--api-key")
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--workers", type=int, default=3, help="gunicorn processes when the bench starts the server")
    args = parser.parse_args()

    home = tempfile.mkdtemp(prefix="tertulia-bench-")
    env = {**os.environ, "TERTULIA_HOME": home, "LOG_LEVEL": "WARNING", "SECRET_KEY": "bench-" + "x" * 50}
    server = None
    scratch = None
    database = "external"
    try:
        if args.url:
            url, api_key = args.url, args.api_key
        else:
            if env.get("DATABASE_URL"):
                database = "postgresql"
                env["DATABASE_URL"], scratch = _scratch_database(env["DATABASE_URL"])
            else:
                database = "sqlite"
            tertulia("migrate", "-v0", env=env)
            api_key = tertulia("shell", "-c", _SETUP, env=env).strip().splitlines()[-1]
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            server = subprocess.Popen(
                [sys.executable, "-m", "gunicorn", "tertulia.wsgi:application", "--bind", f"127.0.0.1:{port}",
                 "--workers", str(args.workers), "--worker-class", "sync", "--timeout", "120",
                 "--log-level", "warning"],
                env=env, cwd=ROOT,
            )
            _wait_healthy(url)
        run = f"run{int(time.time())}"
        print(f"generating {args.events:,} events...", file=sys.stderr)
        batches = make_batches(args.events, args.batch, run)
        print(f"posting {len(batches)} batches of {args.batch} over {args.connections} connections to {url}",
              file=sys.stderr)
        elapsed, accepted, duplicates = run_load(url, api_key, batches, args.connections)
        _, replay_accepted, replay_duplicates = run_load(url, api_key, batches[:4], 1)
        stored = None
        if not args.url:
            stored = tertulia("shell", "-c", _COUNT.replace("RUN", run), env=env).strip().splitlines()[-1]
        ok = accepted == args.events and duplicates == 0 and replay_accepted == 0 \
            and replay_duplicates == 4 * args.batch and (stored is None or stored == f"{args.events} {args.events}")
        print(f"database: {database}")
        print(f"events sent: {args.events:,}  accepted: {accepted:,}  duplicates: {duplicates:,}")
        print(f"replayed {4 * args.batch:,}: accepted {replay_accepted}, duplicates {replay_duplicates:,}")
        if stored is not None:
            rows, distinct = stored.split()
            print(f"rows stored for this run: {int(rows):,} ({int(distinct):,} distinct client ids)")
        print(f"elapsed: {elapsed:.2f} s")
        print(f"throughput: {args.events / elapsed:,.0f} events/s")
        print("stored exactly once: " + ("yes" if ok else "NO"))
        return 0 if ok else 1
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
        if scratch:
            scratch()
        shutil.rmtree(home, ignore_errors=True)


def _scratch_database(url: str):
    """Create an empty database beside the one DATABASE_URL names; return its URL and a function that drops it."""
    import psycopg

    parsed = urllib.parse.urlparse(url)
    name = f"tertulia_bench_{os.getpid()}"
    admin = parsed._replace(path="/postgres").geturl()
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}"')
        connection.execute(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        with psycopg.connect(admin, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    return parsed._replace(path=f"/{name}").geturl(), drop


def _wait_healthy(url: str) -> None:
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            connection = http.client.HTTPConnection(urllib.parse.urlparse(url).hostname,
                                                    urllib.parse.urlparse(url).port, timeout=2)
            connection.request("GET", "/healthz")
            if connection.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError("server did not become healthy")


_SETUP = """
from tertulia.core.models import Store
from tertulia.core.services import store_create, api_key_create
store = Store.objects.filter(slug='bench').first() or store_create(slug='bench', name='Bench')
print(api_key_create(store=store, name='bench').secret)
"""

_COUNT = """
from django.db.models import Count
from tertulia.events.models import Event
qs = Event.objects.filter(store__slug='bench', client_id__startswith='RUN-')
print(qs.count(), qs.values('client_id').distinct().count())
"""

if __name__ == "__main__":
    sys.exit(main())
