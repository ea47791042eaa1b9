"""The worker: django.tasks enqueue, claims and leases, retries, at-least-once under kills and concurrency."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path
from urllib.parse import quote

import pytest
import tasks_for_tests as tt
from django.core.management import call_command
from django.db import connection, transaction
from django.utils import timezone
from django_tasks import TaskResultStatus
from django_tasks.exceptions import TaskResultDoesNotExist

from tertulia.core.jobs import LeaseExpired, PermanentError, job_cancel, job_schedule
from tertulia.core.models import Job, JobStatus
from tertulia.core.tasks import jobs_prune
from tertulia.core.worker import job_claim, retry_delay, run_worker

TESTS_DIR = Path(__file__).resolve().parent
REPO = TESTS_DIR.parent

postgres_only = pytest.mark.skipif(
    not os.environ.get("DATABASE_URL", "").startswith("postgres"), reason="needs PostgreSQL (DATABASE_URL)"
)


def work(**options) -> int:
    options.setdefault("housekeeping", False)
    return run_worker(once=True, name=options.pop("name", "test-worker"), **options)


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def make_due(job_id: str | int) -> None:
    """Stand-in for waiting: move a job's due time to now."""
    Job.objects.filter(pk=int(job_id)).update(due_at=timezone.now())


# --- django.tasks API ---------------------------------------------------------------------------


def test_enqueue_through_the_tasks_api_and_run(db):
    result = tt.add.enqueue(2, 3)
    assert result.status == TaskResultStatus.READY
    assert Job.objects.get(pk=result.id).task_path == "tasks_for_tests.add"

    assert work() == 1

    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.return_value == 5
    assert result.attempts == 1
    assert tt.add.get_result(result.id).return_value == 5
    assert work() == 0


def test_unknown_result_id_is_reported(db):
    with pytest.raises(TaskResultDoesNotExist):
        tt.add.get_result("999999")
    with pytest.raises(TaskResultDoesNotExist):
        tt.add.get_result("not-a-number")


def test_context_tells_the_attempt(db):
    result = tt.which_attempt.enqueue()
    work()
    result.refresh()
    assert result.return_value == 1


def test_higher_priority_runs_first(db, tmp_path):
    path = tmp_path / "order.txt"
    tt.record.enqueue(str(path), "ordinary")
    tt.urgent.enqueue(str(path), "urgent")
    tt.record.using(priority=-5).enqueue(str(path), "low")
    assert work() == 3
    assert [line.split()[0] for line in lines(path)] == ["urgent", "ordinary", "low"]


def test_future_job_is_not_run_early(db, tmp_path):
    path = tmp_path / "runs.txt"
    later = tt.record.using(run_after=timezone.now() + timedelta(hours=1)).enqueue(str(path), "later")

    assert work() == 0
    assert lines(path) == []
    assert Job.objects.get(pk=later.id).status == JobStatus.QUEUED

    make_due(later.id)
    assert work() == 1
    assert [line.split()[0] for line in lines(path)] == ["later"]


def test_queues_restrict_what_a_worker_runs(db, tmp_path):
    path = tmp_path / "runs.txt"
    tt.record.enqueue(str(path), "default-queue")
    other = job_schedule(task=tt.record, args=[str(path), "mail-queue"])
    Job.objects.filter(pk=other.pk).update(queue_name="mail")

    assert work(queues=["mail"]) == 1
    assert [line.split()[0] for line in lines(path)] == ["mail-queue"]


# --- failures ------------------------------------------------------------------------------------


def test_failures_retry_with_growing_backoff_then_fail(db, settings):
    settings.TERTULIA_JOB_RETRY_BASE_SECONDS = 10
    result = tt.always_fails.enqueue("boom")

    for attempt in (1, 2):
        assert work() == 1
        job = Job.objects.get(pk=result.id)
        assert job.status == JobStatus.QUEUED
        assert job.attempts == attempt
        assert "RuntimeError: boom" in job.last_error
        # The delay is at least half of base * 2**(attempt-1): 5 s, then 10 s.
        assert job.due_at - job.started_at >= timedelta(seconds=5 * 2 ** (attempt - 1))
        assert work() == 0  # not due yet
        make_due(result.id)

    assert work() == 1
    result.refresh()
    assert result.status == TaskResultStatus.FAILED
    assert result.attempts == 3
    assert result.errors[-1].exception_class is RuntimeError
    assert "boom" in result.errors[-1].traceback
    make_due(result.id)
    assert work() == 0


def test_retry_delay_grows_with_jitter(settings):
    settings.TERTULIA_JOB_RETRY_BASE_SECONDS = 10
    settings.TERTULIA_JOB_RETRY_MAX_SECONDS = 60
    for attempt, ceiling in [(1, 10), (2, 20), (3, 40), (4, 60), (9, 60)]:
        delays = {retry_delay(attempt).total_seconds() for _ in range(50)}
        assert all(ceiling / 2 <= delay < ceiling for delay in delays)
        assert len(delays) > 1  # jittered, not fixed


def test_permanent_error_fails_at_once(db):
    result = tt.refuses.enqueue("the product was deleted")
    assert work() == 1
    result.refresh()
    assert result.status == TaskResultStatus.FAILED
    assert result.attempts == 1
    assert result.errors[0].exception_class is PermanentError


def test_something_that_is_not_a_task_fails_permanently(db):
    job = job_schedule(task=tt.add, args=[1, 2])
    Job.objects.filter(pk=job.pk).update(task_path="os.getcwd")
    work()
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED
    assert job.attempts == 1


# --- transactions, scheduling, cancelling -------------------------------------------------------


def test_rolled_back_enqueue_never_runs(transactional_db, tmp_path):
    path = tmp_path / "runs.txt"
    with pytest.raises(RuntimeError), transaction.atomic():
        tt.record.enqueue(str(path), "ghost")
        raise RuntimeError("the order failed")

    assert not Job.objects.exists()
    assert work() == 0
    assert lines(path) == []


def test_unique_key_makes_scheduling_idempotent(db, store):
    due = timezone.now() + timedelta(minutes=30)
    first = job_schedule(task=tt.add, args=[1, 1], due_at=due, unique_key="cart-recovery:c1:step-1", store=store)
    again = job_schedule(task=tt.add, args=[1, 1], due_at=due, unique_key="cart-recovery:c1:step-1", store=store)
    other = job_schedule(task=tt.add, args=[1, 1], due_at=due, unique_key="cart-recovery:c2:step-1", store=store)

    assert first.pk == again.pk != other.pk
    assert Job.objects.count() == 2
    assert first.store == store
    assert first.due_at == due


def test_cancelled_job_does_not_run(db, tmp_path):
    path = tmp_path / "runs.txt"
    job = job_schedule(task=tt.record, args=[str(path), "cancelled"], unique_key="k-1")
    assert job_cancel(unique_key="k-1") is True
    assert work() == 0
    assert lines(path) == []
    job.refresh_from_db()
    assert job.status == JobStatus.CANCELLED
    assert job_cancel(job=job) is False


# --- leases -------------------------------------------------------------------------------------


def test_expired_lease_comes_back_and_runs(db):
    result = tt.which_attempt.enqueue()
    assert job_claim(worker="killed-worker", lease=60).pk == int(result.id)
    assert work() == 0  # claimed and leased: nobody else may run it

    Job.objects.filter(pk=result.id).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    assert work(name="survivor") == 1

    job = Job.objects.get(pk=result.id)
    assert job.status == JobStatus.SUCCEEDED
    assert job.claimed_by == "survivor"
    assert job.return_value == 2
    assert "killed-worker" in job.last_error


def test_expired_lease_without_attempts_left_fails(db):
    job = job_schedule(task=tt.add, args=[1, 2], max_attempts=1)
    job_claim(worker="killed-worker", lease=60)
    Job.objects.filter(pk=job.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))

    assert work() == 0
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED
    assert job.last_error_class == f"{LeaseExpired.__module__}.LeaseExpired"


def test_long_job_keeps_renewing_its_lease(transactional_db):
    result = tt.waits_for_renewal.enqueue()
    assert work(lease_seconds=0.3) == 1
    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.return_value is True


# --- stopping, concurrency ------------------------------------------------------------------------


def wait_for(predicate, *, timeout: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_stop_event_lets_the_current_job_finish(transactional_db, tmp_path):
    path, gate = tmp_path / "runs.txt", tmp_path / "gate"
    first = tt.gated_record.enqueue(str(path), "first", str(gate))
    second = tt.gated_record.enqueue(str(path), "second")
    stop = threading.Event()
    processed = []
    thread = threading.Thread(
        target=lambda: processed.append(run_worker(stop=stop, poll_interval=0.05, housekeeping=False))
    )
    thread.start()
    try:
        wait_for(lambda: any(line.startswith("start first") for line in lines(path)), what="the first job")
        stop.set()
        gate.touch()
    finally:
        stop.set()
        gate.touch()
        thread.join(timeout=60)
    assert not thread.is_alive()
    assert processed == [1]
    assert Job.objects.get(pk=first.id).status == JobStatus.SUCCEEDED
    assert Job.objects.get(pk=second.id).status == JobStatus.QUEUED


@postgres_only
def test_two_workers_never_run_the_same_job(transactional_db, tmp_path):
    path = tmp_path / "runs.txt"
    labels = [f"job-{n}" for n in range(300)]
    for label in labels:
        tt.record.enqueue(str(path), label, 0.002)

    counts = {}

    def worker(name):
        counts[name] = work(name=name)

    threads = [threading.Thread(target=worker, args=(name,)) for name in ("worker-a", "worker-b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    ran = [line.split()[0] for line in lines(path)]
    assert sorted(ran) == sorted(labels)  # each exactly once
    assert sum(counts.values()) == 300
    assert set(Job.objects.values_list("claimed_by", flat=True)) == {"worker-a", "worker-b"}
    assert set(Job.objects.values_list("status", flat=True)) == {JobStatus.SUCCEEDED}


@postgres_only
def test_concurrency_runs_each_job_once(transactional_db, tmp_path):
    path = tmp_path / "runs.txt"
    labels = [f"job-{n}" for n in range(60)]
    for label in labels:
        tt.record.enqueue(str(path), label)
    assert work(concurrency=3) == 60
    assert sorted(line.split()[0] for line in lines(path)) == sorted(labels)


# --- housekeeping, metrics, command ---------------------------------------------------------------


def test_worker_schedules_the_daily_prune_once(db):
    run_worker(once=True, housekeeping=True)
    run_worker(once=True, housekeeping=True)
    prunes = Job.objects.filter(task_path="tertulia.core.tasks.jobs_prune")
    assert prunes.count() == 1
    assert prunes.get().status == JobStatus.QUEUED  # due at the next 03:00 UTC, not now
    assert prunes.get().due_at > timezone.now()


def test_prune_deletes_only_old_finished_jobs(db):
    old, recent, waiting = (job_schedule(task=tt.add, args=[n, n]) for n in range(3))
    Job.objects.filter(pk=old.pk).update(status=JobStatus.SUCCEEDED, finished_at=timezone.now() - timedelta(days=30))
    Job.objects.filter(pk=recent.pk).update(status=JobStatus.FAILED, finished_at=timezone.now() - timedelta(days=1))
    Job.objects.filter(pk=waiting.pk).update(due_at=timezone.now() + timedelta(days=1))

    result = jobs_prune.enqueue(days=14)
    assert work() == 1
    result.refresh()
    assert result.return_value == 1
    assert set(Job.objects.values_list("pk", flat=True)) == {recent.pk, waiting.pk, int(result.id)}


def test_metrics_report_jobs(db, client):
    tt.add.enqueue(1, 2)
    tt.refuses.enqueue("no")
    work(name="metrics-worker")
    tt.add.enqueue(3, 4)

    body = client.get("/metrics").content.decode()
    assert 'tertulia_jobs{status="queued"} 1.0' in body
    assert 'tertulia_jobs{status="failed"} 1.0' in body
    assert 'tertulia_jobs_processed_total{outcome="failed",task="tasks_for_tests.refuses"}' in body


def test_worker_command_runs_due_jobs(db, tmp_path):
    path = tmp_path / "runs.txt"
    tt.record.enqueue(str(path), "from-command")
    call_command("worker", "--once", "--name", "cli")
    assert [line.split()[0] for line in lines(path)] == ["from-command"]
    assert Job.objects.get(task_path="tasks_for_tests.record").claimed_by == "cli"


# --- a real worker process, killed mid-job --------------------------------------------------------


def tertulia(env: dict, *args: str, timeout: float = 120) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "tertulia", *args], env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture(params=["sqlite", "postgresql"])
def worker_env(request, tmp_path):
    """Environment for `tertulia` subprocesses: a file SQLite database, or the PostgreSQL test database."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS_DIR), str(REPO), env.get("PYTHONPATH")]))
    env["TERTULIA_HOME"] = str(tmp_path / "home")
    if request.param == "sqlite":
        env.pop("DATABASE_URL", None)
        tertulia(env, "migrate", "--verbosity", "0")
    else:
        if not os.environ.get("DATABASE_URL", "").startswith("postgres"):
            pytest.skip("needs PostgreSQL (DATABASE_URL)")
        request.getfixturevalue("transactional_db")
        db = connection.settings_dict
        env["DATABASE_URL"] = (
            f"postgres://{quote(db['USER'] or '')}:{quote(db['PASSWORD'] or '')}@{db['HOST'] or '127.0.0.1'}:"
            f"{db['PORT'] or 5432}/{db['NAME']}"
        )
    return env


def job_states(env: dict) -> dict[str, tuple[str, int]]:
    code = (
        "import json; from tertulia.core.models import Job; "
        "print(json.dumps({j.args[1]: [j.status, j.attempts] for j in Job.objects.filter(task_path__endswith='gated_record')}))"
    )
    return {label: tuple(state) for label, state in json.loads(tertulia(env, "shell", "-v", "0", "-c", code).splitlines()[-1]).items()}


@pytest.mark.slow
def test_killed_worker_loses_no_job_and_repeats_only_the_one_in_flight(worker_env, tmp_path):
    env = worker_env
    path, gate = tmp_path / "runs.txt", tmp_path / "gate"
    labels = [f"job-{n}" for n in range(6)]
    enqueue = (
        "from tasks_for_tests import gated_record\n"
        f"for label in {labels!r}:\n"
        f"    gated_record.enqueue({str(path)!r}, label, {str(gate)!r} if label == 'job-2' else None)\n"
    )
    tertulia(env, "shell", "-v", "0", "-c", enqueue)

    command = [sys.executable, "-m", "tertulia", "worker", "--lease", "1", "--poll-interval", "0.1"]
    with open(tmp_path / "first.log", "w") as log:
        first = subprocess.Popen([*command, "--name", "first"], env=env, cwd=REPO, stderr=log, stdout=log)
    try:
        wait_for(lambda: any(line.startswith("start job-2") for line in lines(path)), what="job-2 to start")
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    assert job_states(env)["job-2"] == (JobStatus.RUNNING, 1)

    gate.touch()
    with open(tmp_path / "second.log", "w") as log:
        second = subprocess.Popen([*command, "--name", "second"], env=env, cwd=REPO, stderr=log, stdout=log)
    try:
        wait_for(
            lambda: sum(line.startswith("end ") for line in lines(path)) >= len(labels)
            and {status for status, _ in job_states(env).values()} == {JobStatus.SUCCEEDED},
            what="every job to succeed",
        )
    finally:
        second.send_signal(signal.SIGTERM)
        returncode = second.wait(timeout=30)
    assert returncode == 0, (tmp_path / "second.log").read_text()

    runs = [line.split() for line in lines(path)]
    for label in labels:
        assert sum(1 for kind, name, _ in runs if kind == "end" and name == label) == 1, label
        starts = sum(1 for kind, name, _ in runs if kind == "start" and name == label)
        assert starts == (2 if label == "job-2" else 1), label
    states = job_states(env)
    assert states == {label: (JobStatus.SUCCEEDED, 2 if label == "job-2" else 1) for label in labels}
    assert "worker stopped" in (tmp_path / "second.log").read_text()
