"""A worker killed (SIGKILL) in the middle of a dispatch run, then restarted: no message lost, none sent twice
beyond the batch that was in flight, and the stuck claims come back after their lease.

The worker is a real `tertulia worker` process sending through the real SMTP adapter (EMAIL_URL) to an
aiosmtpd server in this process, which records every message it accepts.
"""

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from email import message_from_bytes
from pathlib import Path
from urllib.parse import quote

import pytest
from aiosmtpd.controller import Controller
from django.db import connection

TESTS_DIR = Path(__file__).resolve().parent
REPO = TESTS_DIR.parent
COUNT = 40
STALL_AT = 15  # the server holds this message, so the kill lands while a batch is being sent
BATCH = 10  # tests/dispatch_settings.py


class Recorder:
    """An SMTP server's handler that keeps the subject of every message and can hold one of them."""

    def __init__(self) -> None:
        self.subjects: list[str] = []
        self.lock = threading.Lock()
        self.release = threading.Event()

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook name
        subject = message_from_bytes(envelope.content)["Subject"]
        with self.lock:
            self.subjects.append(subject)
            count = len(self.subjects)
        if count == STALL_AT:
            while not self.release.is_set():
                await asyncio.sleep(0.02)
        await asyncio.sleep(0.01)  # a provider that takes its time
        return "250 OK queued"

    def received(self) -> list[str]:
        with self.lock:
            return list(self.subjects)


@pytest.fixture
def smtp():
    handler = Recorder()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield handler, port
    finally:
        handler.release.set()
        controller.stop()


def tertulia(env: dict, *args: str, timeout: float = 120) -> str:
    done = subprocess.run([sys.executable, "-m", "tertulia", *args], env=env, cwd=REPO, capture_output=True,
                          text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture(params=["sqlite", "postgresql"])
def worker_env(request, tmp_path, smtp):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS_DIR), str(REPO), env.get("PYTHONPATH")]))
    env["TERTULIA_HOME"] = str(tmp_path / "home")
    env["DJANGO_SETTINGS_MODULE"] = "dispatch_settings"
    env["EMAIL_URL"] = f"smtp://127.0.0.1:{smtp[1]}"
    env.pop("TERTULIA_CHANNEL_ADAPTERS", None)
    if request.param == "sqlite":
        env.pop("DATABASE_URL", None)
        tertulia(env, "migrate", "--verbosity", "0")
    else:
        if not os.environ.get("DATABASE_URL", "").startswith("postgres"):
            pytest.skip("needs PostgreSQL (DATABASE_URL)")
        db = connection.settings_dict
        env["DATABASE_URL"] = (
            f"postgres://{quote(db['USER'] or '')}:{quote(db['PASSWORD'] or '')}@{db['HOST'] or '127.0.0.1'}:"
            f"{db['PORT'] or 5432}/{db['NAME']}"
        )
    return env


SEED = f"""
from datetime import timedelta
from django.utils import timezone
from tertulia.channels.models import Delivery
from tertulia.core.services import store_create
from tertulia.customers.services import consent_record, customer_resolve
from tertulia.journeys.definitions import journeys_ensure_defaults
from tertulia.journeys.models import Journey
store = store_create(slug="kill", name="Kill")
# Only these messages: no journey (a welcome for the new subscribers) may add its own.
journeys_ensure_defaults(store=store)
Journey.objects.filter(store=store).update(enabled=False)
now = timezone.now()
for n in range({COUNT}):
    person = customer_resolve(store=store, identities=[("email", f"p{{n}}@example.com")])
    consent_record(store=store, customer_id=person.pk, channel="email", status="subscribed", source="test")
    # Outside journeys (no cap, no quiet hours): the test must not depend on the time of day.
    Delivery.objects.create(store=store, customer=person, channel="email", to_address=f"p{{n}}@example.com",
                            due_at=now - timedelta(seconds={COUNT} - n), subject=f"m-{{n:02d}}", body_text="hola")
"""

STATES = """
import json
from tertulia.channels.models import Delivery, DeliveryAttempt
numbers = {}
for attempt in DeliveryAttempt.objects.values("delivery__subject", "number", "outcome"):
    numbers.setdefault(attempt["delivery__subject"], []).append([attempt["number"], attempt["outcome"]])
print(json.dumps({d.subject: {"status": d.status, "attempts": d.attempts, "claimed_by": d.claimed_by,
                              "tries": sorted(numbers.get(d.subject, []))}
                  for d in Delivery.objects.filter(store__slug="kill")}))
"""


def states(env: dict) -> dict[str, dict]:
    return json.loads(tertulia(env, "shell", "-v", "0", "-c", STATES).splitlines()[-1])


def wait_for(predicate, *, timeout: float = 90.0, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)  # the PostgreSQL case shares the test database with the subprocesses
def test_killed_dispatcher_loses_nothing_and_repeats_only_the_batch_in_flight(worker_env, smtp, tmp_path):
    env = worker_env
    handler, _ = smtp
    tertulia(env, "shell", "-v", "0", "-c", SEED)
    command = [sys.executable, "-m", "tertulia", "worker", "--poll-interval", "0.1"]

    with open(tmp_path / "first.log", "w") as log:
        first = subprocess.Popen([*command, "--name", "first"], env=env, cwd=REPO, stderr=log, stdout=log)
    try:
        wait_for(lambda: len(handler.received()) >= STALL_AT, what="the first worker to be mid-batch")
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    handler.release.set()
    before = states(env)
    in_flight = {subject for subject, row in before.items() if row["status"] == "sending"}
    assert 0 < len(in_flight) <= BATCH
    assert {row["claimed_by"] for subject, row in before.items() if subject in in_flight} == {"first/dispatch"}
    received_before = handler.received()

    with open(tmp_path / "second.log", "w") as log:
        second = subprocess.Popen([*command, "--name", "second"], env=env, cwd=REPO, stderr=log, stdout=log)
    try:
        wait_for(lambda: {row["status"] for row in states(env).values()} == {"sent"}, what="every delivery sent")
    finally:
        second.send_signal(signal.SIGTERM)
        returncode = second.wait(timeout=30)
    assert returncode == 0, (tmp_path / "second.log").read_text()

    after = states(env)
    received = handler.received()
    subjects = sorted(after)
    assert len(subjects) == COUNT
    # Nothing lost: every message reached the server.
    assert set(received) == set(subjects)
    # Nothing twice, except messages of the batch the first worker had in hand when it died.
    twice = {subject for subject in subjects if received.count(subject) > 1}
    assert twice <= in_flight
    assert all(received.count(subject) <= 2 for subject in subjects)
    # What the first worker had recorded as sent was never sent again.
    assert all(received.count(s) == 1 for s, row in before.items() if row["status"] == "sent")
    # The stuck claims came back (after the lease) and went out from the second worker as a new try.
    for subject in in_flight:
        row = after[subject]
        assert row["claimed_by"] == "second/dispatch"
        assert row["tries"][-1][1] == "sent"
        assert row["attempts"] == row["tries"][-1][0] >= 1
    assert any(after[subject]["attempts"] == 2 for subject in twice)
    assert set(received[len(received_before):]) >= in_flight & set(received_before)
    assert "expired delivery leases reclaimed" in (tmp_path / "second.log").read_text()
