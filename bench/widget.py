"""Widget read benchmark: the public reviews endpoint of a product with 1,000 reviews, under load.

    python bench/widget.py                     # SQLite in a temporary TERTULIA_HOME, gunicorn started here
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench python bench/widget.py
    python bench/widget.py --seconds 20 --clients 6 --workers 3

Seeds one store with one product and 1,000 published reviews (written straight to the table, then the
summary is rebuilt through ugc's own `products_touch`), starts `gunicorn` like bench/ingest.py does,
and loads GET /api/v1/public/bench/products/BENCH-1/reviews from separate client processes (pure
Python, http.client, one keep-alive connection each). Three phases are measured:

  full      every request a full 200 answer (first page, sorts and rating filters in rotation)
  revalid   the browser's way after the first visit: If-None-Match, answered 304
  decision  a moderator's decision lands mid-run: the next answers carry the new aggregate

Prints requests/s and p50/p99 latency per phase. Nothing is installed; the target is 2,000
requests/s with p99 <= 50 ms.
"""

import argparse
import http.client
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import time

import orjson

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))

from ingest import _scratch_database, _wait_healthy, free_port  # noqa: E402

PATH = "/api/v1/public/bench/products/BENCH-1/reviews"
QUERIES = ["", "?sort=helpful", "?sort=highest", "?sort=lowest", "?rating=5", "?rating=1", "?sort=oldest&limit=20"]

_SETUP = """
import random
from datetime import UTC, datetime, timedelta
from tertulia.core.models import Store
from tertulia.core.services import store_create
from tertulia.events.services import events_ingest
from tertulia.catalog.models import Product
from tertulia.ugc.models import Review
from tertulia.ugc.services import products_touch
store = Store.objects.filter(slug="bench").first() or store_create(slug="bench", name="Bench")
now = datetime.now(UTC)
events_ingest(store=store, source="bench", now=now, events=[{"id": "bench-p1", "type": "product_upserted",
    "occurred_at": now.isoformat().replace("+00:00", "Z"), "data": {"sku": "BENCH-1", "title": "Aceite picual",
    "price": "12.50", "currency": "EUR", "url": "https://bench.example/p/1"}}])
product = Product.objects.get(store=store, sku="BENCH-1")
rng = random.Random(7)
words = "aceite sabor intenso llegó rápido buen precio repetiré amargo picante suave botella cosecha".split()
rows = [Review(store=store, product=product, status="published", rating=rng.choice([1, 2, 3, 4, 4, 5, 5, 5]),
               title=" ".join(rng.sample(words, 3)), text=" ".join(rng.choice(words) for _ in range(40)),
               display_name=f"Cliente {n}", language="es", verified_buyer=n % 3 == 0, helpful_count=rng.randint(0, 30),
               created_at=now - timedelta(minutes=n * 7), updated_at=now, fingerprint=f"bench-{n}")
        for n in range(1000)]
Review.objects.bulk_create(rows, batch_size=500)
products_touch(store=store, product_ids=[product.pk], reviews=True)
print(Review.objects.filter(product=product).count())
"""

_DECIDE = """
import os, sys, time
from tertulia.core.models import Store
from tertulia.catalog.models import Product
from tertulia.ugc.models import Review
from tertulia.ugc.services import content_decide
store = Store.objects.get(slug="bench")
review = Review.objects.filter(store=store, status="published").order_by("id").first()
signal = os.environ["BENCH_DECIDE_SIGNAL"]
while not os.path.exists(signal):
    time.sleep(0.01)
print(content_decide(store=store, content_type="review", ids=[review.pk], action="reject", user=None))
"""


def client(port: int, seconds: float, mode: str, start_at: float, queue) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    etags: dict[str, str] = {}
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    counts: list[int] = []
    while time.time() < start_at:
        time.sleep(0.001)
    end = time.perf_counter() + seconds
    n = os.getpid()
    while True:
        began = time.perf_counter()
        if began >= end:
            break
        query = QUERIES[n % len(QUERIES)]
        n += 1
        headers = {"Accept": "application/json"}
        if mode == "revalid" and query in etags:
            headers["If-None-Match"] = etags[query]
        try:
            connection.request("GET", PATH + query, headers=headers)
            response = connection.getresponse()
            body = response.read()
        except (OSError, http.client.HTTPException):
            connection.close()
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            statuses[0] = statuses.get(0, 0) + 1
            continue
        latencies.append(time.perf_counter() - began)
        statuses[response.status] = statuses.get(response.status, 0) + 1
        if response.status == 200:
            etags[query] = response.getheader("ETag", "")
            if mode == "decision" and query == "":
                counts.append(orjson.loads(body)["aggregate"]["count"])
        if response.getheader("Connection", "").lower() == "close":
            connection.close()
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    queue.put((latencies, statuses, counts))


def run_phase(port: int, mode: str, seconds: float, clients: int, during=None) -> dict:
    queue = multiprocessing.Queue()
    start_at = time.time() + 0.5
    processes = [multiprocessing.Process(target=client, args=(port, seconds, mode, start_at, queue))
                 for _ in range(clients)]
    for process in processes:
        process.start()
    if during is not None:
        time.sleep(0.5 + seconds / 2)
        during()
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    counts: list[int] = []
    for _ in processes:
        got, status, seen = queue.get()
        latencies += got
        counts += seen
        for code, n in status.items():
            statuses[code] = statuses.get(code, 0) + n
    for process in processes:
        process.join()
    latencies.sort()
    count = len(latencies)
    return {
        "mode": mode, "requests": count, "rps": count / seconds, "statuses": statuses, "counts": counts,
        "p50": latencies[count // 2] * 1000 if count else float("nan"),
        "p99": latencies[min(count - 1, int(count * 0.99))] * 1000 if count else float("nan"),
    }


def tertulia(*args: str, env: dict) -> str:
    return subprocess.run([sys.executable, "-m", "tertulia", *args], env=env, check=True, capture_output=True,
                          text=True, cwd=ROOT).stdout


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each phase")
    parser.add_argument("--clients", type=int, default=4, help="client processes, one keep-alive connection each")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn processes")
    parser.add_argument("--no-conn-health-checks", action="store_true",
                        help="serve with CONN_HEALTH_CHECKS off (saves Django's ping round trip per request)")
    parser.add_argument("--threads", type=int, default=4,
                        help="threads per gunicorn process, gthread with keep-alive like `tertulia serve` (1 = sync)")
    args = parser.parse_args()

    home = tempfile.mkdtemp(prefix="tertulia-widget-bench-")
    env = {**os.environ, "TERTULIA_HOME": home, "LOG_LEVEL": "WARNING", "SECRET_KEY": "bench-" + "x" * 50}
    server = scratch = None
    database = "sqlite"
    try:
        if env.get("DATABASE_URL"):
            database = "postgresql"
            env["DATABASE_URL"], scratch = _scratch_database(env["DATABASE_URL"])
        if args.no_conn_health_checks:
            with open(os.path.join(home, "bench_settings.py"), "w") as handle:
                handle.write('from tertulia.settings import *  # noqa\nDATABASES["default"]["CONN_HEALTH_CHECKS"] = False\n')
            env["PYTHONPATH"] = home + os.pathsep + env.get("PYTHONPATH", "")
            env["DJANGO_SETTINGS_MODULE"] = "bench_settings"
        tertulia("migrate", "-v0", env=env)
        seeded = tertulia("shell", "-c", _SETUP, env=env).strip().splitlines()[-1]
        port = free_port()
        worker_class = ["--worker-class", "sync"] if args.threads <= 1 else \
            ["--worker-class", "gthread", "--threads", str(args.threads), "--keep-alive", "5"]
        server = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "tertulia.wsgi:application", "--bind", f"127.0.0.1:{port}",
             "--workers", str(args.workers), *worker_class, "--timeout", "120", "--log-level", "warning"],
            env=env, cwd=ROOT,
        )
        _wait_healthy(f"http://127.0.0.1:{port}")
        run_phase(port, "full", 2.0, args.clients)  # warm every worker's cache and connection
        results = [run_phase(port, "full", args.seconds, args.clients),
                   run_phase(port, "revalid", args.seconds, args.clients)]
        # The moderator's decision runs in a process started (and settled) before the phase begins, so
        # only the decision itself happens during the load.
        signal = os.path.join(home, "decide-now")
        decider = subprocess.Popen([sys.executable, "-m", "tertulia", "shell", "-c", _DECIDE], cwd=ROOT,
                                   env={**env, "BENCH_DECIDE_SIGNAL": signal}, stdout=subprocess.PIPE, text=True)
        time.sleep(8)
        results.append(run_phase(port, "decision", args.seconds, args.clients,
                                 during=lambda: open(signal, "w").close()))
        decider.wait(timeout=60)
        print(f"database: {database}{' (CONN_HEALTH_CHECKS off)' if args.no_conn_health_checks else ''}; reviews on the product: {seeded}; gunicorn: {args.workers} workers x "
              f"{args.threads} thread(s); {args.clients} client processes; {args.seconds:.0f} s per phase; "
              f"{os.cpu_count()} CPUs shared by server and clients")
        ok = True
        for result in results:
            met = result["rps"] >= 2000 and result["p99"] <= 50
            ok = ok and (met or result["mode"] == "decision")
            print(f"{result['mode']:<9} {result['rps']:>7,.0f} req/s  p50 {result['p50']:6.2f} ms  "
                  f"p99 {result['p99']:6.2f} ms  statuses {result['statuses']}  target {'met' if met else 'MISSED'}")
        counts = results[2]["counts"]
        shown = counts and counts[0] == 1000 and counts[-1] == 999
        print("decision visible at once: " + ("yes (aggregate 1000 -> 999)" if shown else f"NO {counts[:1]}..{counts[-1:]}"))
        return 0 if ok and shown else 1
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
        if scratch:
            scratch()
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
