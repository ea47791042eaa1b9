"""What the commands that configure providers and sources share: KEY=VALUE options and secrets read safely.

Secrets never go on the command line (shell history, `ps`): they come from environment variables named on
it (`--secret-env token=MY_TOKEN`) or as a JSON object on standard input (`--secrets-stdin`).
"""

import json
import os
import sys
from typing import Any

from django.core.management.base import CommandError


def option_value(raw: str) -> Any:
    """A value from the command line: JSON when it parses (587, true, ["a", "b"]), else the string itself."""
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def key_values(items: list[str], option: str) -> list[tuple[str, str]]:
    pairs = []
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CommandError(f"{option} takes KEY=VALUE, not {item!r}.")
        pairs.append((key.strip(), value))
    return pairs


def secrets_from_options(*, secret_env: list[str], secrets_stdin: bool) -> dict[str, Any] | None:
    """The secrets given (None when none were: keep the stored ones)."""
    secrets = None
    if secrets_stdin:
        try:
            secrets = json.loads(sys.stdin.read())
        except ValueError as exc:
            raise CommandError(f"--secrets-stdin: not JSON ({exc}).") from None
        if not isinstance(secrets, dict):
            raise CommandError("--secrets-stdin: give a JSON object.")
    for key, env in key_values(secret_env, "--secret-env"):
        if env not in os.environ:
            raise CommandError(f"--secret-env {key}={env}: the environment variable {env} is not set.")
        secrets = {**(secrets or {}), key: os.environ[env]}
    return secrets
