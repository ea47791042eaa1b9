"""`tertulia serve` and `tertulia check --deploy` with a production configuration."""

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command

TERTULIA = str(Path(sys.executable).with_name("tertulia"))


def production_env(home: Path, **overrides: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in ("DEBUG", "ALLOWED_HOSTS", "SECRET_KEY")}
    env.update({
        "TERTULIA_HOME": str(home),
        "SECRET_KEY": secrets.token_urlsafe(50),
        "ALLOWED_HOSTS": "shop.example.com",
        "TERTULIA_HTTPS": "1",
        "EMAIL_URL": "smtp://mailer:secret@smtp.example.com:587/?tls=True",
    })
    env.update(overrides)
    return env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_check_deploy_passes_with_a_production_configuration(tmp_path):
    result = subprocess.run([TERTULIA, "check", "--deploy", "--fail-level", "WARNING"], env=production_env(tmp_path),
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout
    assert "WARNING" not in result.stdout + result.stderr


def test_check_deploy_flags_debug_in_production(tmp_path):
    """The same check fails loudly when the configuration is not fit for production."""
    result = subprocess.run([TERTULIA, "check", "--deploy", "--fail-level", "WARNING"],
                            env=production_env(tmp_path, DEBUG="1"), capture_output=True, text=True, timeout=120,
                            check=False)
    assert result.returncode == 1
    assert "security.W018" in result.stdout + result.stderr


def test_serve_refuses_an_unmigrated_database(tmp_path):
    env = production_env(tmp_path)
    env.pop("DATABASE_URL", None)  # a fresh SQLite database under the temporary $TERTULIA_HOME
    port = free_port()

    result = subprocess.run([TERTULIA, "serve", "--bind", f"127.0.0.1:{port}"], env=env, capture_output=True,
                            text=True, timeout=120, check=False)

    assert result.returncode == 1
    assert "not migrated" in result.stderr
    assert "tertulia migrate" in result.stderr and "--migrate" in result.stderr
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", port)) != 0  # nothing started listening


def test_serve_takes_bind_and_workers_from_the_environment(db, monkeypatch):
    monkeypatch.setenv("HOST", "127.0.0.1")
    monkeypatch.setenv("PORT", "9123")
    monkeypatch.setenv("WEB_CONCURRENCY", "3")
    out = StringIO()

    call_command("serve", "--dry-run", stdout=out, stderr=StringIO())

    argv = out.getvalue().split()
    assert argv[argv.index("--bind") + 1] == "127.0.0.1:9123"
    assert argv[argv.index("--workers") + 1] == "3"
    assert argv[argv.index("--worker-class") + 1] == "gthread"
    assert "tertulia.wsgi:application" in argv


@pytest.mark.slow
def test_serve_with_migrate_runs_gunicorn_with_json_access_logs(tmp_path):
    env = production_env(tmp_path, TERTULIA_HTTPS="0", ALLOWED_HOSTS="127.0.0.1")
    env.pop("DATABASE_URL", None)
    port = free_port()
    out, err = (tmp_path / "out.log").open("w"), (tmp_path / "err.log").open("w")
    server = subprocess.Popen([TERTULIA, "serve", "--migrate", "--bind", f"127.0.0.1:{port}", "--workers", "1",
                               "--threads", "2"], env=env, stdout=out, stderr=err)
    try:
        status = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and server.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
                    status = response.status
                    break
            except OSError:
                time.sleep(0.2)
        assert status == 200, (tmp_path / "err.log").read_text()
    finally:
        server.send_signal(signal.SIGTERM)
        code = server.wait(timeout=60)
        out.close()
        err.close()
    assert code == 0
    access = [json.loads(line) for line in (tmp_path / "out.log").read_text().splitlines() if '"access"' in line]
    assert any(entry["path"] == "/healthz" and entry["status"] == 200 for entry in access)
