"""Journeys benchmark: 100,000 carts abandoned over one minute, recovered by the worker(s), dispatch lag and rate.

    python bench/journeys.py                     # SQLite in a temporary TERTULIA_HOME, one worker
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench python bench/journeys.py   # scratch database, two workers
    python bench/journeys.py --channel smtp      # only the SMTP run; --channel null only the null one
    python bench/journeys.py --mode direct       # deliveries written directly (no journeys): the dispatcher alone

For each channel (the null adapter, then a local SMTP server, aiosmtpd in a process of its own) it
creates a store whose abandoned-cart journey waits `--delay` seconds with a single e-mail step and no
holdout, bulk-inserts the customers (e-mail consent given) and their carts so that the carts fall
silent evenly over `--spread` seconds starting a little after the workers start, runs `tertulia
worker` process(es) (their trigger sweep enrolls the carts, their dispatcher sends), waits until
every step is sent and prints the dispatch lag (sent_at - due_at) p50/p99/max and messages per second.
"""

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from decimal import Decimal

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "bench"))

from ingest import _scratch_database, free_port  # noqa: E402 - the benches share their plumbing

SETTINGS = """
from tertulia.settings import *  # noqa
TERTULIA_CHANNEL_ADAPTERS = {ADAPTERS}
TERTULIA_CHANNELS_SANDBOX = False
"""


def seed(*, slug: str, carts: int, delay: int, spread: float, lead: float, mode: str):
    """Store, journeys, customers, identities, consents and carts, written in bulk. Returns (store, first due)."""
    from django.db import transaction
    from django.utils import timezone

    from tertulia.channels.models import Delivery, DeliveryStatus
    from tertulia.channels.rules import delivery_settings_update
    from tertulia.commerce.models import Cart
    from tertulia.core.services import store_create
    from tertulia.customers.models import Consent, ConsentChange, Customer, Identity

    store = store_create(slug=slug, name="Bench")
    # The bench must not depend on the time of day: no quiet hours. One message per person: the cap never bites.
    from datetime import time as clock

    delivery_settings_update(store=store, quiet_hours_start=clock(0), quiet_hours_end=clock(0))
    # Only the abandoned-cart journey runs (welcome would greet every new subscriber first, and the
    # frequency cap would then hold the recovery e-mails back); in direct mode no journey at all.
    from tertulia.journeys.definitions import default_definition, journeys_ensure_defaults
    from tertulia.journeys.models import Journey

    journeys_ensure_defaults(store=store)
    definition = default_definition("abandoned_cart")
    definition["trigger"]["delay_seconds"] = delay
    definition["steps"] = [{"key": "email_1", "channel": "email", "delay_seconds": delay}]
    definition["holdout_share"] = 0.0
    definition["variants"] = []
    Journey.objects.for_store(store).filter(key="abandoned_cart").update(definition=definition,
                                                                        enabled=mode == "journeys")
    Journey.objects.for_store(store).exclude(key="abandoned_cart").update(enabled=False)

    now = timezone.now()
    first_due = now + timedelta(seconds=lead)
    started = time.perf_counter()
    size = 5000
    for offset in range(0, carts, size):
        count = min(size, carts - offset)
        with transaction.atomic():
            people = Customer.objects.bulk_create([
                Customer(store=store, external_id=f"b{offset + n}", first_name=f"Cliente {offset + n}", language="es",
                         created_at=now, updated_at=now)
                for n in range(count)
            ])
            Identity.objects.bulk_create([
                Identity(store=store, customer=person, kind="email", value=f"c{person.external_id}@bench.example",
                         created_at=now) for person in people
            ])
            changes = ConsentChange.objects.bulk_create([
                ConsentChange(store=store, customer=person, channel="email", status="subscribed", source="bench",
                              occurred_at=now - timedelta(days=1), recorded_at=now) for person in people
            ])
            Consent.objects.bulk_create([
                Consent(store=store, customer_id=change.customer_id, channel="email", status="subscribed",
                        changed_at=change.occurred_at, change=change) for change in changes
            ])
            # The n-th cart falls silent so that its step is due at first_due + spread * n / carts.
            dues = [first_due + timedelta(seconds=spread * (offset + n) / carts) for n in range(count)]
            if mode == "journeys":
                Cart.objects.bulk_create([
                    Cart(store=store, external_id=f"cart-{person.external_id}", customer=person, status="open",
                         items=[{"sku": "SKU-1", "title": "Taza de cerámica", "quantity": 2, "price": "12.50"}],
                         total=Decimal("25.00"), currency="EUR",
                         recovery_url=f"https://tienda.example/cart/{person.external_id}",
                         last_event_at=due - timedelta(seconds=delay), created_at=now, updated_at=now)
                    for person, due in zip(people, dues, strict=True)
                ])
            else:
                Delivery.objects.bulk_create([
                    Delivery(store=store, customer=person, channel="email", journey_key="abandoned_cart",
                             step_key="email_1", status=DeliveryStatus.SCHEDULED, due_at=due,
                             to_address=f"c{person.external_id}@bench.example", subject="¿Se te olvidó algo?",
                             body_text="Tu carrito te espera: https://tienda.example/cart", created_at=now,
                             updated_at=now)
                    for person, due in zip(people, dues, strict=True)
                ])
    # Seeding takes a while: move every moment so the first step falls due `lead` seconds from now.
    from django.db.models import F

    shift = timezone.now() + timedelta(seconds=lead) - first_due
    if mode == "journeys":
        Cart.objects.for_store(store).update(last_event_at=F("last_event_at") + shift)
    else:
        Delivery.objects.for_store(store).update(due_at=F("due_at") + shift)
    first_due += shift
    from django.db import connection

    if connection.vendor == "postgresql":
        # Bulk-loaded tables have no statistics until autovacuum comes by; a live database has them.
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
    print(f"seeded {carts:,} customers, consents and {'carts' if mode == 'journeys' else 'deliveries'} "
          f"in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    return store, first_due


def progress(store) -> tuple[int, int]:
    from tertulia.channels.models import Delivery

    rows = Delivery.objects.for_store(store)
    return rows.count(), rows.filter(status__in=["sent", "failed", "skipped"]).count()


def figures(store) -> dict:
    import numpy

    from tertulia.channels.models import Delivery

    rows = list(Delivery.objects.for_store(store).filter(status="sent").values_list("due_at", "sent_at", "created_at"))
    sent = [(due, sent_at) for due, sent_at, _ in rows]
    # When the sweep wrote the step, relative to its due time: > 0 means it was enrolled late (the engine's part).
    written = numpy.array([(created - due).total_seconds() for due, _, created in rows]) if rows else numpy.zeros(1)
    others = dict(Delivery.objects.for_store(store).exclude(status="sent").values_list("status").annotate(
        n=__import__("django.db.models", fromlist=["Count"]).Count("id")).order_by())
    lags = numpy.array([(s - d).total_seconds() for d, s in sent])
    times = sorted(s for _, s in sent)
    span = (times[-1] - times[0]).total_seconds() if len(times) > 1 else float("nan")
    return {"sent": len(sent), "others": others, "p50": numpy.percentile(lags, 50), "p99": numpy.percentile(lags, 99),
            "max": lags.max(), "span": span, "rate": len(sent) / span if span else float("nan"),
            "early": int((lags < 0).sum()), "written_p50": numpy.percentile(written, 50),
            "written_p99": numpy.percentile(written, 99)}


def run_once(*, channel: str, args, env: dict, database: str) -> bool:
    slug = f"bench-{channel}-{int(time.time())}"
    home = env["TERTULIA_HOME"]
    smtp = None
    if channel == "smtp":
        port = free_port()
        smtp = subprocess.Popen([sys.executable, "-m", "aiosmtpd", "-n", "-l", f"127.0.0.1:{port}",
                                 "-c", "aiosmtpd.handlers.Sink"], cwd=ROOT)
        env = {**env, "EMAIL_URL": f"smtp://127.0.0.1:{port}"}
        adapters = {}
    else:
        env = {k: v for k, v in env.items() if k != "EMAIL_URL"}
        adapters = {"email": "tertulia.channels.adapters.null.NullAdapter"}
    with open(os.path.join(home, f"bench_settings_{channel}.py"), "w") as handle:
        handle.write(SETTINGS.replace("{ADAPTERS}", repr(adapters)))
    worker_env = {**env, "DJANGO_SETTINGS_MODULE": f"bench_settings_{channel}",
                  "PYTHONPATH": os.pathsep.join(filter(None, [home, ROOT, env.get("PYTHONPATH")]))}

    store, first_due = seed(slug=slug, carts=args.carts, delay=args.delay, spread=args.spread, lead=args.lead,
                            mode=args.mode)
    workers = []
    logs = []
    try:
        for index in range(args.workers):
            log = open(os.path.join(home, f"worker-{channel}-{index}.log"), "w")  # noqa: SIM115 - closed below
            logs.append(log)
            command = [sys.executable, "-m", "tertulia", "worker", "--name", f"bench-{index}", "--poll-interval", "0.2"]
            if args.profile and index == 0:
                command = ["py-spy", "record", "-o", os.path.join(ROOT, f"bench-{channel}-profile.svg"), "--",
                           *command]
            workers.append(subprocess.Popen(command, env=worker_env, cwd=ROOT, stdout=log, stderr=log))
        print(f"{args.workers} worker(s) started; first step due in {args.lead:.0f} s, the last "
              f"{args.spread:.0f} s later", file=sys.stderr)
        deadline = time.time() + args.lead + args.spread + args.timeout
        expected = args.carts
        while time.time() < deadline:
            total, done = progress(store)
            if total >= expected and done >= expected:
                break
            if any(worker.poll() is not None for worker in workers):
                raise RuntimeError(f"a worker exited; see {home}/worker-{channel}-*.log")
            time.sleep(1.0)
        else:
            total, done = progress(store)
            print(f"timed out: {done:,} of {expected:,} steps finished", file=sys.stderr)
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGINT if args.profile else signal.SIGTERM)
        for worker in workers:
            try:
                worker.wait(timeout=60)
            except subprocess.TimeoutExpired:
                worker.kill()
        for log in logs:
            log.close()
        if smtp is not None:
            smtp.terminate()
            smtp.wait(timeout=30)

    result = figures(store)
    ok = result["sent"] == args.carts and result["p99"] <= 2.0 and result["rate"] >= 1000
    print(f"--- {database}, {args.workers} worker(s), channel {channel}, mode {args.mode} ---")
    print(f"carts: {args.carts:,} abandoned over {args.spread:.0f} s, delay {args.delay} s")
    print(f"messages sent: {result['sent']:,}  not sent: {result['others'] or 0}")
    print(f"dispatch lag (sent_at - due_at): p50 {result['p50']:.3f} s  p99 {result['p99']:.3f} s  "
          f"max {result['max']:.3f} s")
    print(f"steps written by the sweep, relative to their due time: p50 {result['written_p50']:+.3f} s  "
          f"p99 {result['written_p99']:+.3f} s")
    print(f"first to last send: {result['span']:.1f} s  -> {result['rate']:,.0f} messages/s")
    print("targets (p99 <= 2 s, >= 1,000 messages/s): " + ("met" if ok else "NOT met"))
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--carts", type=int, default=100_000)
    parser.add_argument("--spread", type=float, default=60.0, help="seconds over which the carts fall due")
    parser.add_argument("--delay", type=int, default=60, help="abandoned-cart delay in seconds (at least 60)")
    parser.add_argument("--lead", type=float, default=15.0, help="seconds from the end of seeding to the first due step")
    parser.add_argument("--workers", type=int, default=None, help="worker processes (default 1 SQLite, 2 PostgreSQL)")
    parser.add_argument("--channel", choices=["null", "smtp", "both"], default="both")
    parser.add_argument("--mode", choices=["journeys", "direct"], default="journeys")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds to wait after the last step is due")
    parser.add_argument("--profile", action="store_true", help="record the first worker with py-spy")
    args = parser.parse_args()

    home = tempfile.mkdtemp(prefix="tertulia-bench-journeys-")
    env = {**os.environ, "TERTULIA_HOME": home, "LOG_LEVEL": "WARNING", "SECRET_KEY": "bench-" + "x" * 50}
    scratch = None
    try:
        if env.get("DATABASE_URL"):
            database = "postgresql"
            env["DATABASE_URL"], scratch = _scratch_database(env["DATABASE_URL"])
        else:
            database = "sqlite"
        if args.workers is None:
            args.workers = 2 if database == "postgresql" else 1
        os.environ.update({k: env[k] for k in ("TERTULIA_HOME", "LOG_LEVEL", "SECRET_KEY")})
        if database == "postgresql":
            os.environ["DATABASE_URL"] = env["DATABASE_URL"]
        else:
            os.environ.pop("DATABASE_URL", None)
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tertulia.settings")
        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        channels = ["null", "smtp"] if args.channel == "both" else [args.channel]
        results = [run_once(channel=channel, args=args, env=env, database=database) for channel in channels]
        return 0 if all(results) else 1
    finally:
        from django.db import connections

        connections.close_all()
        if scratch:
            scratch()
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
