"""Gunicorn settings shared by `tertulia serve` and `tertulia demo`: JSON log lines, and exit with the demo.

Loaded with `--config python:tertulia.ops.gunicorn_conf`; command-line flags and GUNICORN_CMD_ARGS
still override anything here.
"""

import os
import signal
import threading
import time

from gunicorn.glogging import Logger

from tertulia.core.logging import JsonFormatter


class JsonLogger(Logger):
    """Gunicorn's error and access logs as one JSON object per line, like the application's own logs."""

    def setup(self, cfg):
        super().setup(cfg)
        for log in (self.error_log, self.access_log):
            for handler in log.handlers:
                if getattr(handler, "_gunicorn", False):
                    handler.setFormatter(JsonFormatter())

    def access(self, resp, req, environ, request_time):
        if not self.access_log_enabled:
            return
        atoms = self.atoms(resp, req, environ, request_time)
        try:
            self.access_log.info("access", extra={
                "remote": atoms["h"], "method": atoms["m"], "path": atoms["U"], "query": atoms["q"] or "",
                "protocol": atoms["H"], "status": int(atoms["s"]), "bytes": atoms["B"] or 0,
                "ms": round(atoms["D"] / 1000, 2), "referer": atoms["f"], "user_agent": atoms["a"],
                "pid": os.getpid(),
            })
        except Exception:  # noqa: BLE001 - a log line must never break a response
            self.exception("access log failed")


logger_class = JsonLogger


def _watch_parent(expected: int) -> None:
    # When `tertulia demo` dies without cleaning up (SIGKILL), its gunicorn must not live on alone.
    while True:
        time.sleep(1.0)
        if os.getppid() != expected:
            os.kill(os.getpid(), signal.SIGTERM)
            return


def when_ready(server):
    parent = os.environ.get("TERTULIA_PARENT_PID")
    if parent and parent.isdigit():
        threading.Thread(target=_watch_parent, args=(int(parent),), name="parent-watch", daemon=True).start()


def on_starting(server):
    # With PROMETHEUS_MULTIPROC_DIR set, counters of a previous run must not be added to this one's.
    from tertulia.core.metrics import multiprocess_reset

    multiprocess_reset()


def child_exit(server, worker):
    from tertulia.core.metrics import process_exited

    process_exited(worker.pid)
